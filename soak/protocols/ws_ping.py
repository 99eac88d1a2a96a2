"""RFC 6455 ping frames that carry the heartbeat's ``seq``.

The payload is the seq as 8 big-endian bytes. RFC 6455 section 5.5.3 says a
pong must echo the ping's application data, so the seq comes back intact.
"""

from __future__ import annotations

from typing import ClassVar

from wsproto.events import Event, Ping

from soak.protocols.base import HeartbeatProtocol
from soak.wsframe import OP_PING


class WsPing(HeartbeatProtocol):
    name: ClassVar[str] = "ws-ping"
    __slots__ = ()

    def ping(self, seq: int, now_ms: int) -> Event:
        return Ping(payload=seq.to_bytes(8, "big"))

    def ping_frame(self, seq: int, now_ms: int) -> tuple[int, bytes] | None:
        return OP_PING, seq.to_bytes(8, "big")

    def pong_control(self, payload: bytes) -> int | None:
        if len(payload) != 8:
            return None
        return int.from_bytes(payload, "big")
