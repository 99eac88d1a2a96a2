"""STOMP 1.2 (and 1.1) over WebSocket, as described in docs/dialects/stomp.md.

The upgrade offers ``v12.stomp``, ``v11.stomp`` and ``v10.stomp``; then,
in text frames::

    -> CONNECT\\naccept-version:1.2,1.1,1.0\\nhost:/\\nheart-beat:cx,cy\\n...\\n\\n\\0
    <- CONNECTED\\nversion:1.2\\nheart-beat:sx,sy\\nserver:RabbitMQ/3.10.8\\n\\n\\0
       (or ERROR: the refusal; bad credentials are permanent)
    -> \\n   every heartbeat interval (no reply: expects_reply False)
    <- \\n   every max(sx, cy): the server's beat (SERVER_BEAT)

Liveness of the server is a silence rule (tolerance x its negotiated
interval). RabbitMQ's own timeout of a silent client is close 1000 "STOMP
died", judged by :func:`stomp_verdict` against the negotiated client
interval. An ERROR on a live connection is the server's farewell.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import trio

from soak.classify import (
    CATEGORY_HEARTBEAT,
    CATEGORY_SERVER,
    CLIENT,
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    SERVER,
    CloseInfo,
    Verdict,
)
from soak.config.stomp import SERVER_FACTOR, STOMP_DIED, StompConfig
from soak.config.target import TargetConfig
from soak.errors import HandshakeError, ProtocolError
from soak.protocols.base import SERVER_BEAT, Frame, HandshakeIO, HeartbeatProtocol
from soak.wsframe import OP_TEXT

SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")
BEAT: Frame = (OP_TEXT, b"\n")
SLACK = 0.05
_UNESCAPE = {"n": "\n", "r": "\r", "c": ":", "\\": "\\"}


class StompFrame:
    """One parsed frame: its command, headers (the first of a repeated one
    wins, as STOMP 1.2 says) and body."""

    __slots__ = ("body", "command", "headers")

    def __init__(self, command: str, headers: dict[str, str], body: str) -> None:
        self.command = command
        self.headers = headers
        self.body = body


def unescape(value: str) -> str:
    """STOMP 1.1/1.2 header escapes (``\\n``, ``\\r``, ``\\c``, ``\\\\``)."""
    if "\\" not in value:
        return value
    out = []
    it = iter(value)
    for ch in it:
        if ch == "\\":
            nxt = next(it, "")
            if nxt not in _UNESCAPE:
                raise ValueError(f"undefined escape \\{nxt} in a header")
            out.append(_UNESCAPE[nxt])
        else:
            out.append(ch)
    return "".join(out)


def parse_frames(text: str) -> tuple[list[StompFrame], int]:
    """The frames in one message, and how many heart-beats (EOLs outside a
    frame) it has. ValueError for a frame without its NUL or command.
    Pure."""
    frames: list[StompFrame] = []
    beats = 0
    at = 0
    n = len(text)
    while at < n:
        if text.startswith("\r\n", at):
            beats += 1
            at += 2
            continue
        if text[at] == "\n":
            beats += 1
            at += 1
            continue
        end = text.find("\0", at)
        if end < 0:
            raise ValueError("a STOMP frame without its terminating NUL")
        frames.append(_frame(text[at:end]))
        at = end + 1
    return frames, beats


def _frame(raw: str) -> StompFrame:
    head, sep, body = raw.replace("\r\n", "\n").partition("\n\n")
    if not sep:
        head, body = raw.rstrip("\r\n"), ""
    lines = head.split("\n")
    command = lines[0].strip()
    if not command or not command.isalpha():
        raise ValueError(f"not a STOMP frame: {_excerpt(raw)}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"a header without a colon: {_excerpt(line)}")
        headers.setdefault(unescape(key), unescape(value))
    return StompFrame(command, headers, body)


def heart_beat(value: str | None) -> tuple[int, int]:
    """``"2000,2000"`` -> (2000, 2000); missing: (0, 0). ValueError else."""
    if value is None:
        return 0, 0
    parts = value.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"heart-beat {value!r}: expected two whole numbers of ms like 10000,10000")
    return int(parts[0]), int(parts[1])


def negotiate(cx: int, cy: int, sx: int, sy: int) -> tuple[int, int]:
    """(client every ms, server every ms); 0: that direction is off."""
    out = max(cx, sy) if cx and sy else 0
    inbound = max(sx, cy) if sx and cy else 0
    return out, inbound


class StompState:
    """Run-wide: the configuration, CONNECT's text, and what servers said."""

    def __init__(self, target: TargetConfig) -> None:
        cfg = target.stomp or StompConfig()
        self.config = cfg
        sh = target.server_heartbeat
        self.implied = sh is None or sh.reason_pattern == STOMP_DIED
        self.cx = round((cfg.outgoing or 30.0) * 1000)
        self.cy = round(cfg.incoming * 1000)
        self.connected = 0
        self.refusals: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.negotiated: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()

    def connect_text(self) -> str:
        cfg = self.config
        lines = [
            "CONNECT",
            f"accept-version:{cfg.accept_version}",
            f"host:{cfg.vhost}",
            f"heart-beat:{self.cx},{self.cy}",
        ]
        if cfg.login is not None:
            lines.append(f"login:{cfg.login}")
        if cfg.passcode is not None:
            lines.append(f"passcode:{cfg.passcode}")
        return "\n".join(lines) + "\n\n\0"

    def summary(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "heart_beat_offered": f"{self.cx},{self.cy}",
            # "client ms,server ms" -> connections
            "negotiated": dict(self.negotiated),
            "versions": dict(self.versions),
            "refusals": dict(self.refusals),
            "errors": dict(self.errors),
        }


class Stomp(HeartbeatProtocol):
    name: ClassVar[str] = "stomp"
    has_handshake: ClassVar[bool] = True
    __slots__ = ("client_ms", "server_ms", "state")

    def __init__(self, client_id: str, state: Any = None) -> None:
        super().__init__(client_id, state)
        if not isinstance(state, StompState):
            state = StompState(TargetConfig(protocol="stomp"))
        self.state: StompState = state
        self.expects_reply = False  # a heart-beat has no answer
        self.client_ms = 0
        self.server_ms = 0

    @classmethod
    def shared_state(cls, target: Any) -> StompState:
        return StompState(target)

    def subprotocols(self) -> tuple[str, ...]:
        return SUBPROTOCOLS

    async def handshake(self, io: HandshakeIO) -> None:
        st = self.state
        self.farewell = None
        await io.send_text(st.connect_text())
        with trio.move_on_after(st.config.connect_timeout):
            while True:
                message = await io.receive()
                text = message if isinstance(message, str) else message.decode(errors="replace")
                try:
                    frames, _beats = parse_frames(text)
                except ValueError as exc:
                    raise HandshakeError(
                        "protocol", f"{io.url}: {exc} (is this a STOMP server?)"
                    ) from None
                if frames:
                    self._answer(frames[0], io.url)
                    return
        raise HandshakeError(
            "connect_timeout",
            f"{io.url}: no CONNECTED within {st.config.connect_timeout:g}s of CONNECT "
            "(target.stomp.connect_timeout)",
        )

    def _answer(self, frame: StompFrame, url: str) -> None:
        st = self.state
        if frame.command == "ERROR":
            raise self._refusal(frame, url)
        if frame.command != "CONNECTED":
            raise HandshakeError("protocol", f"{url}: expected CONNECTED, got {frame.command}")
        try:
            sx, sy = heart_beat(frame.headers.get("heart-beat"))
        except ValueError as exc:
            raise HandshakeError("protocol", f"{url}: CONNECTED's {exc}") from None
        out, inbound = negotiate(st.cx, st.cy, sx, sy)
        self.client_ms, self.server_ms = out, inbound
        st.connected += 1
        st.negotiated[f"{out},{inbound}"] += 1
        st.versions[frame.headers.get("version", "1.0")] += 1
        server = frame.headers.get("server")
        self.server_version = server or None
        self.client_pings = out > 0
        self.silence_timeout = inbound / 1000 * st.config.tolerance if inbound else None

    def _refusal(self, frame: StompFrame, url: str) -> HandshakeError:
        message = frame.headers.get("message", "")
        said = " ".join(p for p in (message, frame.body.strip()) if p)
        low = said.lower()
        if "access refused" in low or "login" in low or "passcode" in low or "credential" in low:
            cause, hint = "auth", " (login from [target.stomp] login, passcode from passcode_env)"
        elif "virtual host" in low or "vhost" in low:
            cause, hint = "vhost", " (the host header from [target.stomp] vhost)"
        elif "version" in low:
            cause, hint = "protocol", " ([target.stomp] accept_version)"
        else:
            cause, hint = "rejected", ""
        self.state.refusals[cause] += 1
        return HandshakeError(
            cause,
            f"{url}: the server refused CONNECT: ERROR {said!r}{hint}",
            permanent=cause in ("auth", "vhost", "protocol"),
        )

    def ping_frame(self, seq: int, now_ms: int) -> Frame:
        return BEAT

    def pong_text(self, text: str) -> int | None:
        if text == "\n" or text == "\r\n":
            return SERVER_BEAT
        try:
            frames, _beats = parse_frames(text)
        except ValueError as exc:
            raise ProtocolError(f"malformed STOMP frame: {exc}") from None
        for frame in frames:
            if frame.command == "ERROR":
                message = frame.headers.get("message", "") or frame.body.strip()
                self.state.errors[message[:80]] += 1
                self.farewell = (None, f"ERROR {message}")
        return SERVER_BEAT  # any frame from the server is proof of life

    def pong_binary(self, data: bytes) -> int | None:
        return self.pong_text(data.decode(errors="replace"))

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        interval = self.client_ms / 1000 if self.state.implied else 0.0
        return stomp_verdict(verdict, info, interval, self.farewell)


def stomp_verdict(
    verdict: Verdict,
    info: CloseInfo,
    interval: float,
    farewell: tuple[int | None, str] | None,
) -> Verdict:
    """A STOMP server's close. RabbitMQ's 1000 "STOMP died" is its timeout
    of a silent client: false when the connection had not lived one
    negotiated client ``interval`` (the server looks once an interval, so
    it cannot have missed soak's beats yet); else justified. What the
    client cannot see: a beat written but lost on the way looks the same as
    one the server ignored; both count as justified, with the last write's
    age. ``interval`` 0: no client beats negotiated, or the profile's own
    [target.server_heartbeat] judges. An ERROR farewell is the server's
    close with its message."""
    if info.initiator == CLIENT:
        return verdict
    died = info.initiator == SERVER and STOMP_DIED.lower() in info.reason.lower()
    if not died:
        if farewell is not None:
            return Verdict("server_stomp_error", CATEGORY_SERVER, farewell[1])
        return verdict
    ev = info.evidence
    if interval <= 0 or ev is None:
        return verdict
    window = SERVER_FACTOR * interval
    if ev.age < window - (SLACK + 0.02 * window):
        return Verdict(
            FALSE_TIMEOUT,
            CATEGORY_HEARTBEAT,
            f'close {info.code} "{info.reason}" after {ev.age:.3f}s, < the negotiated '
            f"client heart-beat {interval:g}s: too soon to have missed soak's beats",
        )
    sent = "never" if ev.last_sent_age is None else f"{ev.last_sent_age:.3f}s ago"
    late = ""
    if ev.last_sent_age is not None and ev.last_sent_age > interval + SLACK:
        late = " (later than the interval: soak fell behind)"
    return Verdict(
        JUSTIFIED_TIMEOUT,
        CATEGORY_HEARTBEAT,
        f'close {info.code} "{info.reason}": no beat from soak reached the server within '
        f"its check period (the negotiated {interval:g}s); soak's last beat went {sent}{late}",
    )


def _excerpt(text: str) -> str:
    return repr(text[:40] + ("..." if len(text) > 40 else ""))
