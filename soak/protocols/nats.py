"""NATS over WebSocket, as described in docs/dialects/nats.md.

No subprotocol; every frame is binary and carries NATS's text protocol
(operations ending in CRLF)::

    <- INFO {"server_id":...,"version":"2.9.10",...}
    -> CONNECT {"verbose":false,"pedantic":false,"protocol":1,...}
    -> PING
    <- PONG                       (the server took CONNECT: handshake done)
    -> PING  every heartbeat interval
    <- PONG  no id: the oldest outstanding heartbeat (one in flight)
    <- PING  the server's, when it heard nothing for ping_interval
    -> PONG  soak answers at once
    <- -ERR 'Stale Connection'    after ping_max unanswered: a farewell,
       then a close frame with code 1006 (which RFC 6455 keeps off the wire)

``-ERR`` in the handshake is a refusal ('Authorization Violation' is
permanent). A later ``-ERR`` is the server's farewell: the close that
follows is recorded with its text. A stale close is judged by
:func:`nats_verdict` against the profile's ``[target.nats]`` ping rule.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, ClassVar

import trio

from soak.classify import (
    CATEGORY_HEARTBEAT,
    CATEGORY_SERVER,
    CLIENT,
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    CloseInfo,
    Verdict,
)
from soak.config.nats import STALE, NatsConfig
from soak.config.target import TargetConfig
from soak.errors import HandshakeError
from soak.protocols.base import OLDEST, SERVER_PING, Frame, HandshakeIO, HeartbeatProtocol
from soak.wsframe import OP_BINARY

PING: Frame = (OP_BINARY, b"PING\r\n")
PONG: Frame = (OP_BINARY, b"PONG\r\n")
STALE_CODE = 1006  # what nats-server puts in its close frame after 'Stale Connection'
# -ERR texts no retry can fix
PERMANENT = ("authorization violation", "authentication", "user authentication")
SLACK = 0.05  # seconds: timers and the network, as the client sees them


def operations(data: bytes) -> list[str]:
    """The operations in one message, by name and argument (``PING``,
    ``PONG``, ``-ERR 'Stale Connection'``, ``INFO {...}``, ``+OK``); a
    message payload (MSG) is skipped by its byte count. Pure."""
    ops: list[str] = []
    at = 0
    n = len(data)
    while at < n:
        end = data.find(b"\r\n", at)
        if end < 0:
            end = n
        line = data[at:end].decode(errors="replace").strip()
        at = end + 2
        if not line:
            continue
        ops.append(line)
        head = line.split()
        if head[0].upper() in ("MSG", "HMSG") and len(head) >= 4 and head[-1].isdigit():
            at += int(head[-1]) + 2  # the payload and its CRLF
    return ops


def info(line: str) -> dict[str, Any]:
    """INFO's JSON, or ValueError. Pure."""
    if not line.upper().startswith("INFO "):
        raise ValueError(f"expected INFO, got {_excerpt(line)}")
    try:
        doc = json.loads(line[5:])
    except ValueError:
        raise ValueError(f"INFO is not JSON: {_excerpt(line)}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"INFO is not a JSON object: {_excerpt(line)}")
    return doc


def error_text(line: str) -> str:
    """``-ERR 'Stale Connection'`` -> ``Stale Connection``."""
    return line[4:].strip().strip("'")


class NatsState:
    """Run-wide: the configuration, and what the servers said."""

    def __init__(self, target: TargetConfig) -> None:
        self.config = target.nats or NatsConfig()
        self.implied = (
            target.server_heartbeat is None or target.server_heartbeat.reason_pattern == STALE
        )
        self.connected = 0
        self.refusals: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.server_pings = 0
        self.pongs_with_ping = 0

    def connect_text(self, client_id: str) -> str:
        cfg = self.config
        doc: dict[str, Any] = {
            "verbose": False,
            "pedantic": False,
            "protocol": 1,
            "lang": "python-soak",
            "version": "1",
            "headers": False,
        }
        if cfg.name:
            doc["name"] = cfg.name.format(client_id=client_id)
        if cfg.user is not None:
            doc["user"] = cfg.user
            doc["pass"] = cfg.password or ""
        if cfg.token is not None:
            doc["auth_token"] = cfg.token
        return f"CONNECT {json.dumps(doc, separators=(',', ':'))}\r\nPING\r\n"

    def summary(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "refusals": dict(self.refusals),
            "errors": dict(self.errors),
            "server_pings": self.server_pings,
            # a PONG that came in one message with a server PING: answered
            # the PING, the PONG not counted (its heartbeat shows as missed)
            "pongs_with_ping": self.pongs_with_ping,
        }


class Nats(HeartbeatProtocol):
    name: ClassVar[str] = "nats"
    has_handshake: ClassVar[bool] = True
    __slots__ = ("state",)

    def __init__(self, client_id: str, state: Any = None) -> None:
        super().__init__(client_id, state)
        if not isinstance(state, NatsState):
            state = NatsState(TargetConfig(protocol="nats"))
        self.state: NatsState = state
        self.max_in_flight = 1  # PONG carries no id

    @classmethod
    def shared_state(cls, target: Any) -> NatsState:
        return NatsState(target)

    async def handshake(self, io: HandshakeIO) -> None:
        st = self.state
        self.farewell = None
        with trio.move_on_after(st.config.connect_timeout):
            first = await io.receive()
            data = first.encode() if isinstance(first, str) else first
            ops = operations(data)
            try:
                doc = info(ops[0] if ops else "")
            except ValueError as exc:
                raise HandshakeError(
                    "protocol", f"{io.url}: {exc} (is this a NATS server?)"
                ) from None
            version = doc.get("version")
            self.server_version = f"nats-server/{version}" if isinstance(version, str) else None
            await io.send_bytes(st.connect_text(self.client_id).encode())
            while True:
                message = await io.receive()
                data = message.encode() if isinstance(message, str) else message
                for op in operations(data):
                    word = op.split(" ", 1)[0].upper()
                    if word == "PONG":
                        st.connected += 1
                        return
                    if word == "-ERR":
                        raise self._refusal(error_text(op), io.url)
                    if word == "PING":
                        await io.send_bytes(PONG[1])
                    # +OK, INFO (an update): nothing to do
        raise HandshakeError(
            "connect_timeout",
            f"{io.url}: no PONG within {st.config.connect_timeout:g}s of CONNECT "
            "(target.nats.connect_timeout)",
        )

    def _refusal(self, text: str, url: str) -> HandshakeError:
        low = text.lower()
        cause = "auth" if "authoriz" in low or "authentic" in low else "rejected"
        self.state.refusals[cause] += 1
        hint = ""
        if cause == "auth":
            hint = " (credentials from [target.nats] user/password_env or token_env)"
        return HandshakeError(
            cause,
            f"{url}: the server refused CONNECT: -ERR '{text}'{hint}",
            permanent=any(p in low for p in PERMANENT),
        )

    def ping_frame(self, seq: int, now_ms: int) -> Frame:
        return PING

    def answer(self) -> Frame:
        return PONG

    def pong_binary(self, data: bytes) -> int | None:
        pongs = 0
        pinged = False
        for op in operations(data):
            word = op.split(" ", 1)[0].upper()
            if word == "PONG":
                pongs += 1
            elif word == "PING":
                pinged = True
            elif word == "-ERR":
                text = error_text(op)
                self.state.errors[text] += 1
                self.farewell = (STALE_CODE if text == STALE else None, text)
        if pinged:
            self.state.server_pings += 1
            self.state.pongs_with_ping += pongs
            return SERVER_PING
        if pongs:
            self.replies = pongs
            return OLDEST
        return None

    def pong_text(self, text: str) -> int | None:
        return self.pong_binary(text.encode())

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        cfg = self.state.config
        rule = (cfg.ping_interval, cfg.ping_max) if self.state.implied else None
        return nats_verdict(verdict, info, self.farewell, rule)


def nats_verdict(
    verdict: Verdict,
    info: CloseInfo,
    farewell: tuple[int | None, str] | None,
    rule: tuple[float, int] | None,
) -> Verdict:
    """A NATS server's close. ``-ERR 'Stale Connection'`` (or a close whose
    reason says it) is its heartbeat timeout: false when a PONG to soak's
    own PING came within ping_max x ping_interval (the server had heard
    soak then: its ping count starts again from there), else justified.
    Another ``-ERR`` is counted by its text. ``rule``: (ping_interval,
    ping_max), None when the profile's own [target.server_heartbeat]
    judges."""
    if info.initiator == CLIENT:
        return verdict
    said = farewell[1] if farewell is not None else ""
    stale = said == STALE or STALE.lower() in info.reason.lower()
    if not stale:
        if said:
            key = "server_nats_" + "_".join(said.lower().replace("'", "").split())[:40]
            return Verdict(key, CATEGORY_SERVER, f"-ERR '{said}'")
        return verdict
    if rule is None:
        return verdict
    interval, ping_max = rule
    window = interval * ping_max
    ev = info.evidence
    if ev is None:
        return Verdict(
            JUSTIFIED_TIMEOUT, CATEGORY_HEARTBEAT, "-ERR 'Stale Connection', no client evidence"
        )
    since = ev.last_pong_age if ev.last_pong_age is not None else ev.age
    what = "PONG" if ev.last_pong_age is not None else "PONG since CONNECT"
    if since < window - (SLACK + 0.02 * window):
        return Verdict(
            FALSE_TIMEOUT,
            CATEGORY_HEARTBEAT,
            f"-ERR 'Stale Connection', but the last {what} came {since:.3f}s ago < "
            f"ping_max x ping_interval = {window:g}s",
        )
    return Verdict(
        JUSTIFIED_TIMEOUT,
        CATEGORY_HEARTBEAT,
        f"-ERR 'Stale Connection': no {what} for {since:.3f}s >= ping_max x ping_interval = "
        f"{window:g}s; {ev.consecutive_missed} heartbeats missed",
    )


def _excerpt(text: str) -> str:
    return repr(text[:60] + ("..." if len(text) > 60 else ""))
