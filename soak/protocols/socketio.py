"""Socket.IO over Engine.IO's websocket transport (docs/dialects/socketio.md).

Engine.IO 4 (Socket.IO 3 and 4), ``eio = 4``, the default::

    GET /socket.io/?EIO=4&transport=websocket      (the upgrade)
    <- 0{"sid":"...","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}
    -> 40                    (CONNECT "/"; 40/admin, for another namespace;
                              40{"token":"..."} with an auth payload)
    <- 40{"sid":"..."}       (or 44{"message":"Not authorized"}: CONNECT_ERROR)
    <- 2   -> 3              (the server pings every pingInterval; the
                              client must answer within pingTimeout)

The server pings, the client answers (:data:`SERVER_PING`): soak never
sends ``2`` on Engine.IO 4 (the server drops a session that does). Each
connection's pingInterval and pingTimeout come from its open packet: the
server's heartbeats are expected within their sum (else the client gives
the connection up as its official client does), and the server's close
without a status (1005) is judged against them (:meth:`SocketIO.judge`).

Engine.IO 3 (Socket.IO 2), ``eio = 3``: the client sends ``2`` every
heartbeat interval and the server answers ``3`` (no id: :data:`OLDEST`, one
in flight); the server connects the default namespace by itself (an
unsolicited ``40``).

``41`` (DISCONNECT of our namespace) and ``1`` (Engine.IO close) are the
server's goodbyes: the end that follows is the server's close, counted by
what it said.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar
from urllib.parse import urlencode

import trio

from soak.classify import (
    ABRUPT_SLACK,
    CATEGORY_HEARTBEAT,
    CATEGORY_SERVER,
    JUSTIFIED_TIMEOUT,
    SERVER,
    CloseInfo,
    Verdict,
)
from soak.config.socketio import SOCKETIO_SERVER_HEARTBEAT, SocketIOConfig, resolve
from soak.config.target import TargetConfig
from soak.errors import HandshakeError
from soak.protocols.base import OLDEST, SERVER_PING, Frame, HandshakeIO, HeartbeatProtocol
from soak.wsframe import OP_TEXT

# Socket.IO packet types (the digit after Engine.IO's message type 4)
CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = "0123456"
NO_STATUS = 1005  # a close frame without a status code: how Engine.IO closes
# the goodbyes, as the reason keys of the closes that follow them
DISCONNECTED = "server_socketio_disconnect"  # 41: the server disconnected our socket
ENGINE_CLOSED = "server_engineio_close"  # 1: Engine.IO close packet
NOT_PING_TIMER = "server_1005"


class SocketIOState:
    """Run-wide: the upgrade's resource, the CONNECT packet, which refusals
    are final, and what every client's sessions saw (``summary``)."""

    def __init__(self, target: TargetConfig) -> None:
        cfg = target.socketio or SocketIOConfig()
        resolved = resolve(target.url, cfg)
        self.config = cfg
        self.eio = resolved.eio
        query = [*resolved.query, ("EIO", str(resolved.eio)), ("transport", "websocket")]
        self.resource = resolved.path + "?" + urlencode(query)
        self.namespace = cfg.namespace
        # what packets of our namespace start with, after their type
        self.prefix = "" if cfg.namespace == "/" else cfg.namespace + ","
        auth: dict[str, Any] | None = None if cfg.auth is None else json.loads(cfg.auth)
        if target.token is not None and self.eio == 4:
            auth = auth or {}
            auth.setdefault("token", target.token.value)
        payload = "" if auth is None else json.dumps(auth, separators=(",", ":"))
        self.connect_packet = "40" + self.prefix + payload
        self.permanent = re.compile(cfg.permanent_errors, re.IGNORECASE)
        # the server's close is judged with each session's own timings only
        # when the profile left [target.server_heartbeat] to the dialect
        self.implied = target.server_heartbeat in (None, SOCKETIO_SERVER_HEARTBEAT)
        self.sessions = 0  # open packets
        self.connect_errors = 0
        self.disconnects = 0  # 41 on our namespace
        self.engine_closes = 0  # 1
        self.messages = 0  # other Socket.IO packets (events, acks) while live
        self.unknown_packets = 0  # text that is no Engine.IO packet
        self.timings: set[tuple[int, int]] = set()  # (pingInterval, pingTimeout) ms

    def summary(self) -> dict[str, Any]:
        """For summary.json (strings where workers' figures must not add up)."""
        return {
            "engine_io": str(self.eio),
            "namespace": self.namespace,
            "sessions": self.sessions,
            "connect_errors": self.connect_errors,
            "disconnects": self.disconnects,
            "engine_closes": self.engine_closes,
            "messages": self.messages,
            "unknown_packets": self.unknown_packets,
            "server_timings_ms": [
                f"pingInterval {i}, pingTimeout {t}" for i, t in sorted(self.timings)
            ],
        }


class SocketIO(HeartbeatProtocol):
    name: ClassVar[str] = "socket.io"
    has_handshake: ClassVar[bool] = True
    __slots__ = (
        "eio",
        "goodbye",
        "last_gap",
        "last_ping_at",
        "ping_interval",
        "ping_timeout",
        "state",
    )

    def __init__(self, client_id: str, state: Any = None) -> None:
        super().__init__(client_id, state)
        if not isinstance(state, SocketIOState):
            state = SocketIOState(TargetConfig())
        self.state: SocketIOState = state
        self.eio = state.eio
        if self.eio == 4:
            self.client_pings = False  # a client's 2 is a protocol error on Engine.IO 4
        else:
            self.max_in_flight = 1  # the server's 3 carries no id
        # this session's timings from its open packet, seconds
        self.ping_interval: float | None = None
        self.ping_timeout: float | None = None
        self.goodbye: str | None = None  # the reason key of the goodbye seen
        # this session's server pings (Engine.IO 4): when the last came, and
        # the gap before it (None: fewer than two came)
        self.last_ping_at: float | None = None
        self.last_gap: float | None = None

    @classmethod
    def shared_state(cls, target: Any) -> SocketIOState:
        return SocketIOState(target)

    def resource(self, resource: str) -> str:
        return self.state.resource

    # -- the handshake ---------------------------------------------------------------

    async def handshake(self, io: HandshakeIO) -> None:
        state = self.state
        self.farewell = self.goodbye = None
        self.last_ping_at = self.last_gap = None
        self.ping_interval = self.ping_timeout = None
        opened = open_packet(await io.receive_text(), io.url)
        state.sessions += 1
        interval, timeout, max_payload = opened
        state.timings.add((round(interval * 1000), round(timeout * 1000)))
        self.ping_interval, self.ping_timeout = interval, timeout
        if self.eio == 4:
            self.server_interval, self.server_timeout = interval, timeout
        packet = state.connect_packet
        if max_payload is not None and len(packet.encode()) > max_payload:
            raise HandshakeError(
                "protocol",
                f"{io.url}: the CONNECT packet is {len(packet.encode())} bytes, more than the "
                f"server's maxPayload {max_payload} (shorten [target.socketio] auth)",
                permanent=True,
            )
        sent = False
        if self.eio == 4:
            await io.send_text(packet)
            sent = True
        while True:
            text = await io.receive_text()
            if text == "2":  # a ping before the CONNECT's answer
                if self.eio == 4:
                    await io.send_text("3")
                continue
            if text in ("3", "6"):
                continue
            if text.startswith("1"):
                raise HandshakeError(
                    "eof", f"{io.url}: Engine.IO close packet during the handshake"
                )
            if not text.startswith("4") or len(text) < 2:
                raise HandshakeError(
                    "protocol",
                    f"{io.url}: expected a Socket.IO packet (4...) after the open packet, "
                    f"got {excerpt(text)}",
                )
            kind, nsp, data = sio_packet(text[1:])
            ours = nsp == state.namespace or (self.eio == 3 and nsp == "/")
            if kind == CONNECT and nsp == state.namespace:
                return
            if kind == CONNECT and self.eio == 3 and nsp == "/" and not sent:
                await io.send_text(packet)  # the server joined "/" by itself
                sent = True
            elif kind == CONNECT_ERROR and ours:
                state.connect_errors += 1
                raise self.refusal(data, nsp, io.url)
            elif kind == DISCONNECT and ours:
                raise HandshakeError(
                    "rejected", f"{io.url}: the server disconnected namespace {nsp} at once"
                )

    def refusal(self, data: str, nsp: str, url: str) -> HandshakeError:
        """The HandshakeError for a CONNECT_ERROR (``data``: its payload)."""
        message = error_message(data)
        text = f"{url}: CONNECT to namespace {nsp} refused: {message}"
        permanent = bool(self.state.permanent.search(message))
        if permanent:
            text += " (permanent: it matches [target.socketio] permanent_errors)"
        return HandshakeError("connect_error", text, permanent=permanent)

    # -- the heartbeat -----------------------------------------------------------------

    def ping_frame(self, seq: int, now_ms: int) -> Frame | None:
        return (OP_TEXT, b"2") if self.eio == 3 else None

    def answer(self) -> Frame:
        return OP_TEXT, b"3"

    def pong_text(self, text: str) -> int | None:
        if text == "2":
            if self.eio != 4:
                return None
            now = trio.current_time()
            if self.last_ping_at is not None:
                self.last_gap = now - self.last_ping_at
            self.last_ping_at = now
            return SERVER_PING
        if text == "3":
            return OLDEST if self.eio == 3 else None
        if not text or text == "6":
            return None
        first = text[0]
        state = self.state
        if first == "4" and len(text) > 1:
            kind = text[1]
            if kind == DISCONNECT and _namespace(text[2:]) == state.namespace:
                state.disconnects += 1
                self.goodbye = DISCONNECTED
                self.farewell = (None, "Socket.IO DISCONNECT")
            else:
                state.messages += 1
        elif first == "1":
            state.engine_closes += 1
            self.goodbye = ENGINE_CLOSED
            self.farewell = (None, "Engine.IO close")
        elif first not in "0245":
            state.unknown_packets += 1
        return None

    # -- the server's closes ---------------------------------------------------------

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        if info.initiator != SERVER:
            return verdict
        if self.goodbye is not None:
            said = "DISCONNECT (41)" if self.goodbye == DISCONNECTED else "Engine.IO close (1)"
            return Verdict(self.goodbye, CATEGORY_SERVER, f"after the server's {said}")
        if info.code != NO_STATUS or not self.state.implied:
            return verdict
        return self.judge_no_status(info)

    def judge_no_status(self, info: CloseInfo) -> Verdict:
        """A close without a status code: Engine.IO's ping timer, if it
        comes no sooner than that timer can fire; else some other end (a
        shutdown, ``io.close()``, a transport error), never a timeout.

        Engine.IO 4's timer fires pingTimeout after a ping, and a ping goes
        out pingInterval after the answer before it reached the server (the
        first, pingInterval after the open). Either measure shows the
        timer: a ping we read late (the tester was busy) shortens the first
        but not the second. Engine.IO 3's timer fires pingInterval +
        pingTimeout after the last ping of ours it received."""
        ev = info.evidence
        interval, timeout = self.ping_interval, self.ping_timeout
        if ev is None or interval is None or timeout is None:
            return Verdict(JUSTIFIED_TIMEOUT, CATEGORY_HEARTBEAT, "no client evidence")
        cycle = interval + timeout
        timings = f"open packet: pingInterval {interval:g}s, pingTimeout {timeout:g}s"
        if self.eio == 4:
            since = ev.server_beat_age
            if since is None:  # no ping yet: the first comes pingInterval after the open
                anchor, shown = ev.age, f"{ev.age:.3f}s after the open, before any ping"
            elif self.last_gap is None:
                anchor = ev.age
                shown = f"{since:.3f}s after the server's first ping, {anchor:.3f}s after the open"
            else:
                anchor = self.last_gap + since
                shown = (
                    f"{since:.3f}s after the server's last ping, "
                    f"{anchor:.3f}s after the ping before it"
                )
            timer = (since is not None and since >= timeout - _slack(timeout)) or (
                anchor >= cycle - _slack(cycle)
            )
        else:
            since = ev.last_pong_age
            if since is None:
                shown = f"{ev.age:.3f}s after the open, with no answered ping"
            else:
                shown = f"{since:.3f}s after our last answered ping"
            timer = (ev.age if since is None else since) >= cycle - _slack(cycle)
        if not timer:
            return Verdict(
                NOT_PING_TIMER,
                CATEGORY_SERVER,
                f"closed without a status {shown}: sooner than the server's ping timer "
                f"can fire ({timings})",
            )
        sent = "never" if ev.last_sent_age is None else f"{ev.last_sent_age:.3f}s ago"
        if self.eio == 4:
            # an answer lost on the way looks the same to us as one not sent
            ours = f"our last answer sent {sent}"
        else:
            ours = f"{ev.consecutive_missed} of our pings missed, the last sent {sent}"
        return Verdict(
            JUSTIFIED_TIMEOUT,
            CATEGORY_HEARTBEAT,
            f"the server's ping timeout: closed without a status {shown} ({timings}); {ours}",
        )


def _slack(limit: float) -> float:
    """How much sooner than ``limit`` a server's timer may seem to fire, as
    the client sees it (timer granularity, the network's jitter)."""
    return ABRUPT_SLACK + 0.02 * limit


# -- packets, pure ---------------------------------------------------------------------


def open_packet(text: str, url: str) -> tuple[float, float, int | None]:
    """The open packet's pingInterval and pingTimeout (seconds) and
    maxPayload (bytes, None when not given), or HandshakeError saying what
    came instead."""
    if not text.startswith("0"):
        raise HandshakeError(
            "protocol",
            f"{url}: expected an Engine.IO open packet (0{{...}}), got {excerpt(text)}: "
            "is this a Socket.IO server?",
            permanent=True,
        )
    try:
        obj = json.loads(text[1:])
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or not isinstance(obj.get("sid"), str):
        raise HandshakeError(
            "protocol", f"{url}: malformed Engine.IO open packet {excerpt(text)}", permanent=True
        )
    interval, timeout = obj.get("pingInterval"), obj.get("pingTimeout")
    for name, value in (("pingInterval", interval), ("pingTimeout", timeout)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise HandshakeError(
                "protocol",
                f"{url}: the open packet's {name} is {value!r}, expected milliseconds > 0",
                permanent=True,
            )
    assert isinstance(interval, int | float)
    assert isinstance(timeout, int | float)
    cap = obj.get("maxPayload")
    max_payload = cap if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else None
    return float(interval) / 1000.0, float(timeout) / 1000.0, max_payload


def sio_packet(text: str) -> tuple[str, str, str]:
    """A Socket.IO packet (the text after Engine.IO's ``4``) as its type,
    namespace and data (the rest: an ack id and JSON, or nothing)."""
    kind, rest = text[:1], text[1:]
    if kind in (BINARY_EVENT, BINARY_ACK):
        count, dash, after = rest.partition("-")
        if dash and count.isdigit():
            rest = after
    nsp = "/"
    if rest.startswith("/"):
        nsp, comma, after = rest.partition(",")
        rest = after if comma else ""
    return kind, nsp, rest


def _namespace(rest: str) -> str:
    """The namespace of a packet whose text after its type is ``rest``."""
    if not rest.startswith("/"):
        return "/"
    return rest.partition(",")[0]


def error_message(data: str) -> str:
    """What a CONNECT_ERROR's payload says: Socket.IO 3/4 send
    ``{"message": ..., "data": ...}``, Socket.IO 2 a string or the error's data."""
    try:
        obj = json.loads(data) if data else None
    except ValueError:
        return data or "(no message)"
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        message = obj.get("message")
        extra = obj.get("data")
        if isinstance(message, str):
            return message + (f" ({json.dumps(extra)})" if extra is not None else "")
        return json.dumps(obj)
    return "(no message)" if obj is None else json.dumps(obj)


def excerpt(text: str) -> str:
    return repr(text[:60] + ("..." if len(text) > 60 else ""))
