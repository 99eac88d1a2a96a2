"""What a heartbeat dialect has to say, independent of any I/O.

A dialect turns a heartbeat (``seq``, a timestamp) into the frame to send,
and recognises, among the messages that come back, what concerns the
heartbeat. The client does the I/O, answers the server's RFC 6455 pings,
drains every frame whatever the dialect says, and applies the truth rules
(scheduled slots, missed versus late, zombies, evidence on every close).

Real dialects come in four shapes (docs/protocols.md, "The dialect model"),
all carried by the same engine:

1. **The client pings, the reply echoes an id** (the incident's JSON,
   graphql-ws, RFC 6455 pings): a recogniser returns the seq it answers.
2. **The client pings, the reply has no id** (MQTT PINGRESP, NATS PONG,
   Engine.IO 3): the recogniser returns :data:`OLDEST`; the reply answers
   the oldest heartbeat still outstanding (FIFO). ``max_in_flight`` says how
   many may be outstanding (1 for these dialects: a slot that comes while
   one is pending waits, counted as ``held``, never sent early or twice).
3. **The server pings and the client must answer** (Engine.IO 4 ``2`` ->
   ``3``): the recogniser returns :data:`SERVER_PING`; the client writes
   :meth:`HeartbeatProtocol.answer` at once. ``client_pings`` is False:
   soak never sends a ping the dialect forbids. With ``server_interval``
   and ``server_timeout`` known (the dialect reads them from its handshake,
   or the profile's ``[target.server_heartbeat]``), the gaps between server
   heartbeats are recorded and one longer than interval + timeout is a
   missed server heartbeat; the client then closes the connection as a
   zombie, as the dialect's official client does.
4. **One-way beats, no reply** (SignalR, STOMP, ActionCable): the client's
   beats are sent on schedule with ``expects_reply`` False (nothing is
   missed, nothing is RTT), the server's are :data:`SERVER_BEAT`, and
   liveness is judged by silence (``silence_timeout``).

A recogniser may also raise :class:`~soak.errors.ProtocolError` (a frame
the dialect forbids: the client closes with its code) and may set
``farewell`` (the dialect's own goodbye, e.g. MQTT 5 DISCONNECT with a
reason code, Socket.IO's ``41``): the end of the connection that follows is
then the server's close with that code and reason, not a bare transport
loss.

A dialect may speak first: :meth:`HeartbeatProtocol.handshake` runs right
after the WebSocket upgrade (inside the connect timeout and the ``connect``
histogram) when ``has_handshake`` is true. It talks through a
:class:`HandshakeIO` (text and binary) and raises
:class:`~soak.errors.HandshakeError` when the server refuses.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from wsproto.events import BytesMessage, Event, Ping, TextMessage

from soak.classify import CloseInfo, Verdict
from soak.wsframe import OP_BINARY, OP_PING, OP_TEXT

# What a recogniser returns besides a seq (seqs are >= 1) and None (the
# message is not about the heartbeat):
NO_HEARTBEAT = 0  # a reply whose seq no heartbeat can have (< 1): counted unknown
OLDEST = -1  # a reply without an id: it answers the oldest outstanding heartbeat
SERVER_PING = -2  # the server's heartbeat: write answer() now
SERVER_BEAT = -3  # the server's one-way beat: proof of life, nothing to answer

# an answer or a heartbeat as one final frame: (opcode, payload)
Frame = tuple[int, bytes]


class HandshakeIO(Protocol):
    """What a dialect's handshake may do with a freshly upgraded connection."""

    url: str  # the target as shown in messages (no credentials)
    subprotocol: str | None  # what the server chose (Sec-WebSocket-Protocol)

    async def send_text(self, text: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def receive_text(self) -> str:
        """The next complete text message. Server pings are answered and
        other frames skipped meanwhile; a close frame or the end of the
        stream raises :class:`~soak.errors.HandshakeError`."""
        ...

    async def receive(self) -> str | bytes:
        """The next complete message, text (str) or binary (bytes)."""
        ...


class HeartbeatProtocol:
    name: ClassVar[str]
    # True when the dialect has a post-upgrade handshake (see handshake())
    has_handshake: ClassVar[bool] = False
    # one instance per client: no per-instance dict (a subclass that adds
    # attributes lists them in its own __slots__, or gets a dict)
    __slots__ = (
        "client_id",
        "client_pings",
        "expects_reply",
        "farewell",
        "max_in_flight",
        "replies",
        "server_interval",
        "server_timeout",
        "server_version",
        "silence_timeout",
    )

    def __init__(self, client_id: str, state: Any = None) -> None:
        """``state`` is what :meth:`shared_state` made for the run: one
        object shared by every client (configuration, run-wide counters)."""
        self.client_id = client_id
        # set by a handshake: the server's version, and how long a
        # connection may stay silent (no inbound frame) before the client
        # closes it as a zombie; None means no such rule
        self.server_version: str | None = None
        self.silence_timeout: float | None = None
        # the shape (see the module): does the client send heartbeats, is a
        # reply expected, how many may be outstanding (None: no limit)
        self.client_pings = True
        self.expects_reply = True
        self.max_in_flight: int | None = None
        # how many replies the last OLDEST stands for: one message may hold
        # several (MQTT packets); a recogniser that returns OLDEST for more
        # than one sets it each time
        self.replies = 1
        # the server's own heartbeat, when the dialect knows it (shape 3):
        # seconds between its pings and how long it waits for the answer
        self.server_interval: float | None = None
        self.server_timeout: float | None = None
        # the dialect's own goodbye seen on this connection: (code, reason)
        self.farewell: tuple[int | None, str] | None = None

    @classmethod
    def shared_state(cls, target: Any) -> Any:
        """Run-wide state for this dialect, built once from the
        ``TargetConfig``; passed to every client's instance."""
        return None

    def subprotocols(self) -> tuple[str, ...]:
        """What the upgrade offers in Sec-WebSocket-Protocol; the server must
        pick one of them (else a handshake failure, cause ``subprotocol``)."""
        return ()

    def resource(self, resource: str) -> str:
        """The request target of the upgrade, from the URL's (a dialect may
        add what its server needs, e.g. Engine.IO's ``?EIO=4``)."""
        return resource

    def close_hint(self) -> float | None:
        """Seconds the server asked us to wait before reconnecting, learnt
        on the connection that just ended (OpenClaw's ``shutdown`` event
        with ``restartExpectedMs``), or None. A floor for the backoff."""
        return None

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        """The dialect's refinement of a close's verdict (OpenClaw tells an
        announced restart, a slow consumer, an auth decision apart)."""
        return verdict

    def opened(self) -> None:
        """A new connection was upgraded and is about to be used (before
        the handshake): reset what is per connection (e.g. how many first
        messages are still sniffed for another dialect's greeting)."""

    async def handshake(self, io: HandshakeIO) -> None:
        """Speak the dialect's own handshake after the upgrade. Called
        only when ``has_handshake`` is true."""

    # -- the heartbeat, out ------------------------------------------------------------

    def ping(self, seq: int, now_ms: int) -> Event:
        """The event that carries heartbeat ``seq`` (by default the frame of
        :meth:`ping_frame`)."""
        frame = self.ping_frame(seq, now_ms)
        if frame is None:
            raise NotImplementedError
        return frame_event(frame)

    def ping_frame(self, seq: int, now_ms: int) -> Frame | None:
        """The same heartbeat as :meth:`ping`, as (opcode, payload) of one
        final frame, for the client's hand-framed send path; None when the
        dialect has no such shortcut (then :meth:`ping` is sent through
        wsproto)."""
        return None

    def answer(self) -> Frame:
        """What answers a :data:`SERVER_PING` (Engine.IO 4: text ``3``)."""
        raise NotImplementedError(f"{self.name} has no answer to a server ping")

    # -- what comes back ---------------------------------------------------------------

    def pong_text(self, text: str) -> int | None:
        """A complete text message: the seq it answers, :data:`OLDEST`,
        :data:`SERVER_PING`, :data:`SERVER_BEAT`, or None."""
        return None

    def pong_binary(self, data: bytes) -> int | None:
        """A complete binary message, as :meth:`pong_text`."""
        return None

    def pong_control(self, payload: bytes) -> int | None:
        """An RFC 6455 pong frame: the seq it answers, or None."""
        return None


def frame_event(frame: Frame) -> Event:
    """The wsproto event of one (opcode, payload) frame."""
    opcode, payload = frame
    if opcode == OP_TEXT:
        return TextMessage(data=payload.decode())
    if opcode == OP_BINARY:
        return BytesMessage(data=payload)
    if opcode == OP_PING:
        return Ping(payload=payload)
    raise ValueError(f"opcode {opcode:#x} is not a heartbeat frame")
