"""RFC 6455 ping frames that carry the heartbeat's ``seq``.

The payload is the seq as 8 big-endian bytes. RFC 6455 section 5.5.3 says a
pong must echo the ping's application data, so the seq comes back intact.
"""

from __future__ import annotations

from typing import ClassVar

from wsproto.events import Event, Ping

from soak.classify import CloseInfo, Verdict
from soak.errors import ProtocolError
from soak.protocols.base import HeartbeatProtocol
from soak.protocols.sniff import SNIFFED, foreign_close, sniff
from soak.wsframe import OP_PING


class WsPing(HeartbeatProtocol):
    name: ClassVar[str] = "ws-ping"
    __slots__ = ("_unplaced",)

    def __init__(self, client_id: str, state: object = None) -> None:
        super().__init__(client_id, state)
        self._unplaced = 0

    def opened(self) -> None:
        self._unplaced = SNIFFED  # the first text or binary messages are sniffed

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        # a close with another dialect's signature before any pong says so
        return foreign_close(verdict, info, self.name)

    # the heartbeat is in control frames: a message is the application's,
    # or, among the first of a connection, another dialect's greeting
    def pong_text(self, text: str) -> int | None:
        if self._unplaced:
            self._sniff(text)
        return None

    def pong_binary(self, data: bytes) -> int | None:
        if self._unplaced:
            self._sniff(data)
        return None

    def _sniff(self, message: str | bytes) -> None:
        self._unplaced -= 1
        seen = sniff(message)
        if seen is not None:
            raise ProtocolError(seen.explain(self.name))

    def ping(self, seq: int, now_ms: int) -> Event:
        return Ping(payload=seq.to_bytes(8, "big"))

    def ping_frame(self, seq: int, now_ms: int) -> tuple[int, bytes] | None:
        return OP_PING, seq.to_bytes(8, "big")

    def pong_control(self, payload: bytes) -> int | None:
        if len(payload) != 8:
            return None
        return int.from_bytes(payload, "big")
