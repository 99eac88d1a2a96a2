"""A WebSocket-aware heartbeat filter, sans I/O: it parses RFC 6455 frames
in one direction of one connection and drops chosen heartbeats, passing every
other byte through untouched.

A heartbeat is what the dialect calls one (:data:`DIALECT_HEARTBEATS`, by the
profile's protocol): by default a control ping or pong (opcodes 0x9, 0xA)
or a JSON text message whose ``type`` is ``"ping"`` or ``"pong"`` (sent in
one unfragmented frame, as every heartbeat client does). The HTTP upgrade before the frames
passes through as it is. A frame is forwarded once it is complete, so a drop
never leaves half a frame behind.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from soak.config.sockjs import sockjs_kind

HEARTBEAT_KINDS = ("ping", "pong")
MAX_JSON_HEARTBEAT = 4096  # larger text messages are data, not heartbeats


@dataclass(frozen=True)
class DropHeartbeat:
    """Drop the ``nth`` heartbeat (1 is the first; pings and pongs, both
    directions, counted together) of each connection, and/or each with
    ``probability``."""

    nth: int | None = None
    probability: float = 0.0

    def __post_init__(self) -> None:
        if self.nth is not None and self.nth < 1:
            raise ValueError(f"drop heartbeat: expected N >= 1, got {self.nth}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(
                f"drop heartbeat: expected a probability in [0, 1], got {self.probability}"
            )


def heartbeat_kind(opcode: int, fin: bool, payload: bytes) -> str | None:
    """ "ping" or "pong" if the frame is a heartbeat, else None."""
    if opcode == 0x9:
        return "ping"
    if opcode == 0xA:
        return "pong"
    if opcode != 0x1 or not fin or len(payload) > MAX_JSON_HEARTBEAT:
        return None
    try:
        msg = json.loads(payload)
    except ValueError:
        return None
    kind = msg.get("type") if isinstance(msg, dict) else None
    return kind if kind in HEARTBEAT_KINDS else None


# (opcode, fin, unmasked payload) -> "ping", "pong" or None
HeartbeatKind = Callable[[int, bool, bytes], "str | None"]

# MQTT over WebSocket: PINGREQ and PINGRESP, each alone in a binary frame
MQTT_HEARTBEATS = {b"\xc0\x00": "ping", b"\xd0\x00": "pong"}


def mqtt_heartbeat_kind(opcode: int, fin: bool, payload: bytes) -> str | None:
    return MQTT_HEARTBEATS.get(payload) if opcode == 0x2 and fin else None


def stomp_heartbeat_kind(opcode: int, fin: bool, payload: bytes) -> str | None:
    """STOMP: an EOL alone in a text frame is a heart-beat (either way)."""
    return "ping" if opcode == 0x1 and fin and payload in (b"\n", b"\r\n") else None


# NATS over WebSocket: PING and PONG, each alone in a binary frame
NATS_HEARTBEATS = {b"PING\r\n": "ping", b"PONG\r\n": "pong"}


def nats_heartbeat_kind(opcode: int, fin: bool, payload: bytes) -> str | None:
    return NATS_HEARTBEATS.get(payload) if opcode in (0x1, 0x2) and fin else None


def ka_kind(opcode: int, fin: bool, payload: bytes) -> str | None:
    """subscriptions-transport-ws: the server's one-way ``{"type":"ka"}``
    is its heartbeat (a "ping" nobody answers), besides the default's."""
    if opcode == 0x1 and fin and payload == b'{"type":"ka"}':
        return "ping"
    return heartbeat_kind(opcode, fin, payload)


def engineio_kind(opcode: int, fin: bool, payload: bytes) -> str | None:
    """Engine.IO's heartbeat (Socket.IO): a text frame ``2`` (ping) or ``3``
    (pong), whichever side sends it (Engine.IO 4: the server pings; 3: the
    client)."""
    if opcode != 0x1 or not fin:
        return None
    return "ping" if payload == b"2" else "pong" if payload == b"3" else None


_PHOENIX = re.compile(rb'\[null,"[0-9]+","phoenix","(heartbeat|phx_reply)",')


def phoenix_kind(opcode: int, fin: bool, payload: bytes) -> str | None:
    """Phoenix: the heartbeat on topic "phoenix" and its reply."""
    if opcode == 0x1 and fin and len(payload) <= MAX_JSON_HEARTBEAT:
        m = _PHOENIX.match(payload)
        if m is not None:
            return "ping" if m.group(1) == b"heartbeat" else "pong"
    return heartbeat_kind(opcode, fin, payload) if opcode in (0x9, 0xA) else None


def exact_kind(table: dict[bytes, str]) -> HeartbeatKind:
    """A dialect whose heartbeats are fixed text messages (and RFC 6455
    control frames)."""

    def kind(opcode: int, fin: bool, payload: bytes) -> str | None:
        if opcode in (0x9, 0xA):
            return heartbeat_kind(opcode, fin, payload)
        return table.get(payload) if opcode == 0x1 and fin else None

    return kind


# each dialect's heartbeats as the proxy sees them; a dialect not listed
# here has the default (RFC 6455 control frames and JSON ping/pong)
DIALECT_HEARTBEATS: dict[str, HeartbeatKind] = {
    "json": heartbeat_kind,
    "mqtt": mqtt_heartbeat_kind,
    "graphql-ws-legacy": ka_kind,
    "socket.io": engineio_kind,
    "sockjs": sockjs_kind,
    "phoenix": phoenix_kind,
    "signalr": exact_kind({b'{"type":6}\x1e': "ping"}),  # one-way, both directions
    "pusher": exact_kind(
        {b'{"event":"pusher:ping","data":{}}': "ping", b'{"event":"pusher:pong","data":{}}': "pong"}
    ),
    "centrifugo": exact_kind({b"{}": "ping"}),  # the server's ping and our answer alike
    "stomp": stomp_heartbeat_kind,
    "nats": nats_heartbeat_kind,
}


def kinds_of(dialect: str) -> HeartbeatKind:
    return DIALECT_HEARTBEATS.get(dialect, heartbeat_kind)


def unmask(payload: bytes, key: bytes) -> bytes:
    if not key:
        return payload
    n = len(payload)
    full = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(full, "big")).to_bytes(n, "big")


class Dropper:
    """Decides which heartbeats of one connection go. Both directions count
    together: with ``nth=1`` the connection loses one heartbeat, a ping or
    the pong that answers it, whichever comes first."""

    def __init__(self, rule: DropHeartbeat, rng: random.Random) -> None:
        self.rule = rule
        self.rng = rng
        self.count = 0

    def __call__(self) -> bool:
        self.count += 1
        drop = self.count == self.rule.nth
        if self.rule.probability and self.rng.random() < self.rule.probability:
            drop = True
        return drop


class FrameFilter:
    """Feed it the bytes of one direction; it returns the bytes to forward
    and remembers the heartbeats it dropped (``dropped``: their kinds and
    their numbers in the connection, from 1)."""

    def __init__(self, dropper: Dropper, kind: HeartbeatKind = heartbeat_kind) -> None:
        self.dropper = dropper
        self.kind = kind
        self.buffer = b""
        self.in_http = True
        self.active = True  # False: heartbeats pass, uncounted (outside the window)
        self.dropped: list[tuple[str, int]] = []

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out = []
        if self.in_http:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                # headers pass through as they come; keep 3 bytes to find the end
                keep = min(3, len(self.buffer))
                out.append(self.buffer[: len(self.buffer) - keep])
                self.buffer = self.buffer[len(self.buffer) - keep :]
                return b"".join(out)
            out.append(self.buffer[: end + 4])
            self.buffer = self.buffer[end + 4 :]
            self.in_http = False
        while True:
            frame = self._next_frame()
            if frame is None:
                break
            out.append(frame)
        return b"".join(out)

    def _next_frame(self) -> bytes | None:
        """The next complete frame's bytes if it is to be forwarded, b"" if
        dropped; None if the buffer holds no complete frame."""
        buf = self.buffer
        if len(buf) < 2:
            return None
        fin, opcode = bool(buf[0] & 0x80), buf[0] & 0x0F
        masked, length = bool(buf[1] & 0x80), buf[1] & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, pos = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, pos = int.from_bytes(buf[2:10], "big"), 10
        key = b""
        if masked:  # client frames are masked (RFC 6455 section 5.3)
            if len(buf) < pos + 4:
                return None
            key, pos = buf[pos : pos + 4], pos + 4
        if len(buf) < pos + length:
            return None
        frame, self.buffer = buf[: pos + length], buf[pos + length :]
        kind = self.kind(opcode, fin, unmask(buf[pos : pos + length], key))
        if kind is None or not self.active:
            return frame
        if self.dropper():
            self.dropped.append((kind, self.dropper.count))
            return b""
        return frame
