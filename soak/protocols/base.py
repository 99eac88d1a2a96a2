"""What a heartbeat protocol has to say, independent of any I/O.

A protocol turns a heartbeat (``seq``, a timestamp) into a wsproto event
to send, and recognises the reply among the events that come back. The
client does the I/O, answers the server's RFC 6455 pings and drains every
frame whatever the protocol says.

A protocol may also speak first: :meth:`HeartbeatProtocol.handshake` runs
right after the WebSocket upgrade (inside the connect timeout and the
``connect`` histogram) when ``has_handshake`` is true. It talks through a
:class:`HandshakeIO` and raises :class:`~soak.errors.HandshakeError` when
the server refuses.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from wsproto.events import Event

from soak.classify import CloseInfo, Verdict


class HandshakeIO(Protocol):
    """What a protocol handshake may do with a freshly upgraded connection."""

    url: str  # the target as shown in messages (no credentials)

    async def send_text(self, text: str) -> None: ...

    async def receive_text(self) -> str:
        """The next complete text message. Server pings are answered and
        other frames skipped meanwhile; a close frame or the end of the
        stream raises :class:`~soak.errors.HandshakeError`."""
        ...


class HeartbeatProtocol:
    name: ClassVar[str]
    # True when the protocol has a post-upgrade handshake (see handshake())
    has_handshake: ClassVar[bool] = False
    # one instance per client: no per-instance dict (a subclass that adds
    # attributes lists them in its own __slots__, or gets a dict)
    __slots__ = ("client_id", "server_version", "silence_timeout")

    def __init__(self, client_id: str, state: Any = None) -> None:
        """``state`` is what :meth:`shared_state` made for the run: one
        object shared by every client (configuration, run-wide counters)."""
        self.client_id = client_id
        # set by a handshake: the server's version, and how long a
        # connection may stay silent (no inbound frame) before the client
        # closes it as a zombie; None means no such rule
        self.server_version: str | None = None
        self.silence_timeout: float | None = None

    @classmethod
    def shared_state(cls, target: Any) -> Any:
        """Run-wide state for this protocol, built once from the
        ``TargetConfig``; passed to every client's instance."""
        return None

    def close_hint(self) -> float | None:
        """Seconds the server asked us to wait before reconnecting, learnt
        on the connection that just ended (OpenClaw's ``shutdown`` event
        with ``restartExpectedMs``), or None. A floor for the backoff."""
        return None

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        """The protocol's refinement of a close's verdict (OpenClaw tells an
        announced restart, a slow consumer, an auth decision apart)."""
        return verdict

    async def handshake(self, io: HandshakeIO) -> None:
        """Speak the protocol's own handshake after the upgrade. Called
        only when ``has_handshake`` is true."""

    def ping(self, seq: int, now_ms: int) -> Event:
        """The event that carries heartbeat ``seq``."""
        raise NotImplementedError

    def ping_frame(self, seq: int, now_ms: int) -> tuple[int, bytes] | None:
        """The same heartbeat as :meth:`ping`, as (opcode, payload) of one
        final frame, for the client's hand-framed send path; None when the
        protocol has no such shortcut (then :meth:`ping` is sent through
        wsproto)."""
        return None

    def pong_text(self, text: str) -> int | None:
        """The seq of the heartbeat answered by a complete text message, or
        None if the message is not a heartbeat reply."""
        return None

    def pong_control(self, payload: bytes) -> int | None:
        """The seq answered by an RFC 6455 pong frame, or None."""
        return None
