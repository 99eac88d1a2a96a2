"""What a heartbeat protocol has to say, independent of any I/O.

A protocol turns a heartbeat (``seq``, a timestamp) into a wsproto event
to send, and recognises the reply among the events that come back. The
client does the I/O, answers the server's RFC 6455 pings and drains every
frame whatever the protocol says.
"""

from __future__ import annotations

from typing import ClassVar

from wsproto.events import Event


class HeartbeatProtocol:
    name: ClassVar[str]

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id

    def ping(self, seq: int, now_ms: int) -> Event:
        """The event that carries heartbeat ``seq``."""
        raise NotImplementedError

    def pong_text(self, text: str) -> int | None:
        """The seq of the heartbeat answered by a complete text message, or
        None if the message is not a heartbeat reply."""
        return None

    def pong_control(self, payload: bytes) -> int | None:
        """The seq answered by an RFC 6455 pong frame, or None."""
        return None
