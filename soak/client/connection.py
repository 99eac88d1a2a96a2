"""Sans-IO: how one open connection reacts to each frame and each timer.

As in wsproto, nothing here touches a socket or a clock. A
:class:`Connection` holds one WebSocket's state (wsproto's frame-level
connection, the heartbeat engine, a partial message, when a frame last
came); each reaction takes ``now`` and returns what the I/O side must do:

- ``bytes``: write them (the answer to a server ping, a heartbeat);
- :class:`Closed`: the connection is over, as ``info`` says, once
  ``reply`` (the answer to the server's close frame) is sent if it can be;
- :class:`Closing`: close from our side: write ``frame`` and wait briefly
  for the server's answer (or, with ``reset``, reset the TCP connection);
  then it is over as ``info`` says;
- ``None``: nothing.

Counters and samples (pongs, RTTs, missed heartbeats) go to the
:class:`~soak.metrics.Metrics` the connection was started with, an
in-memory tally: returning them as values would allocate per heartbeat, on
the path whose CPU is the tester's budget. A heartbeat is counted when its
bytes have been written (:meth:`Connection.pinged`), not when writing failed.

The I/O side is :class:`soak.client.transport._Conn` (bytes in and out)
and :class:`soak.client.live.Live` (the task that carries out the actions).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple, Protocol

from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from soak import heartbeat
from soak.classify import CLIENT, SERVER, STORM_RESET, TRANSPORT, ZOMBIE, CloseInfo, Evidence
from soak.config.target import TargetConfig
from soak.errors import ProtocolError
from soak.metrics import Metrics
from soak.protocols.base import NO_HEARTBEAT, OLDEST, SERVER_BEAT, SERVER_PING, HeartbeatProtocol
from soak.wire import WireClock
from soak.wsframe import client_frame, single_text_frame, wsproto_idle

# the largest message a server may send by default ([target] max_message):
# a heartbeat reply is tens of bytes; application messages on the same
# connection may be larger, but not without bound
MAX_MESSAGE = TargetConfig.max_message

# a close the runner asked for: (code, reason, cause)
CloseRequest = tuple[int, str, str]


class RunClock(Protocol):
    """The run's two clocks at its start (:class:`soak.client.shared.Services`)."""

    t0: float  # trio time
    wall0: float  # epoch seconds


class Closed(NamedTuple):
    """The connection is over. ``reply``: the answer to the server's close
    frame, to write if the transport still takes it."""

    info: CloseInfo
    reply: bytes | None = None


class Closing(NamedTuple):
    """Close from our side: write ``frame`` (None: it cannot be sent) and
    wait for the server's close, or with ``reset`` reset the connection."""

    info: CloseInfo
    frame: bytes | None
    reset: bool = False


# what a received chunk or the upgrade's leftover frames ask for
Reaction = Iterator[bytes | Closed]


class Connection:
    """One open WebSocket's state and its reactions (see the module).

    Built at the upgrade (the protocol's handshake, if any, then talks
    through it); :meth:`start` makes it live: from then on it heartbeats."""

    __slots__ = (
        "answered",
        "beat_deadline",
        "buffer",
        "buffered",
        "clock",
        "hb",
        "last_beat_at",
        "last_frame_at",
        "last_sent_at",
        "max_message",
        "metrics",
        "opened_at",
        "protocol",
        "rx_at",
        "rx_step",
        "sent",
        "silence",
        "wire",
        "ws",
    )

    def __init__(self, ws: WsConnection, opened_at: float) -> None:
        self.ws = ws
        self.opened_at = opened_at
        # the parts of a fragmented message (text: str, binary: bytes)
        self.buffer: list[str | bytes] = []
        self.buffered = 0  # its size so far (characters or bytes)
        # the largest message the server may send ([target] max_message)
        self.max_message = MAX_MESSAGE
        # wire-true RTT (soak.wire): the run's clock map when kernel
        # timestamps are on, and the kernel's receive time of the chunk
        # being read (monotonic; None: unknown), or rx_step when the wall
        # clock stepped during that read
        self.wire: WireClock | None = None
        self.rx_at: float | None = None
        self.rx_step = False
        # set by start()
        self.hb: heartbeat.HeartbeatEngine
        self.protocol: HeartbeatProtocol
        self.metrics: Metrics
        self.clock: RunClock
        self.silence: float | None
        self.last_frame_at: float
        self.last_sent_at: float
        self.sent: heartbeat.Sent | None
        # the server's heartbeats: the last one, when the next is overdue
        # (its interval + timeout, when the dialect knows them; else inf),
        # and whether every dialect-level server ping was answered (None:
        # the dialect's server sends none)
        self.last_beat_at: float | None
        self.beat_deadline: float
        self.answered: bool | None

    def start(
        self,
        hb: heartbeat.HeartbeatEngine,
        protocol: HeartbeatProtocol,
        metrics: Metrics,
        clock: RunClock,
        now: float,
        max_message: int = 0,
        wire: WireClock | None = None,
    ) -> None:
        """The connection is ready at ``now``: what its reactions need,
        bound once for its whole life (``max_message`` 0: the default)."""
        if max_message:
            self.max_message = max_message
        self.wire = wire
        self.hb = hb
        self.protocol = protocol
        self.metrics = metrics
        self.clock = clock
        # a protocol's silence rule (OpenClaw: no inbound frame for 2 ticks)
        self.silence = protocol.silence_timeout
        self.last_frame_at = now
        self.last_sent_at = now
        self.sent = None
        self.last_beat_at = None
        self.answered = None if protocol.client_pings else True
        self.beat_deadline = self._beat_deadline(now)

    def _beat_deadline(self, since: float) -> float:
        p = self.protocol
        if p.server_interval is None or p.server_timeout is None:
            return math.inf
        return since + p.server_interval + p.server_timeout

    # -- frames in -----------------------------------------------------------------

    def on_data(self, data: bytes, now: float) -> Reaction | None:
        """React to a received chunk (never empty: the end of the stream is
        :meth:`lost`). None when nothing is left to do, which is the usual
        case: one whole text frame, parsed here as wsproto would
        (soak.wsframe); anything else goes through wsproto."""
        if wsproto_idle(self.ws):
            text = single_text_frame(data)
            if text is not None and len(text) <= self.max_message:
                seq = self.protocol.pong_text(text)
                self.last_frame_at = now
                if seq is None:
                    return None
                if seq > 0:
                    self.pong(seq, now)
                    return None
                answer = self.heard(seq, now)
                return None if answer is None else iter((answer,))
        return self._through_wsproto(data, now)

    def _through_wsproto(self, data: bytes, now: float) -> Reaction:
        try:
            self.ws.receive_data(data)
        except RemoteProtocolError as exc:
            info = CloseInfo(
                TRANSPORT, 1002, f"protocol error: {exc}", "protocol", evidence=self.evidence(now)
            )
            yield Closed(info)
            return
        yield from self.events(now)

    def events(self, now: float) -> Reaction:
        """React to the frames wsproto holds (those that came with the
        upgrade response, or with the last chunk). Lazy: each action is
        carried out before the next frame is looked at."""
        proto = self.protocol
        buffer = self.buffer
        for event in self.ws.events():
            seq: int | None = None
            if isinstance(event, TextMessage):
                if event.message_finished and not buffer:
                    if len(event.data) > self.max_message:
                        self._too_big(len(event.data), "text")
                    seq = proto.pong_text(event.data)
                else:
                    self._gather(event.data, "text")
                    if event.message_finished:
                        seq = proto.pong_text("".join(buffer))  # type: ignore[arg-type]
                        buffer.clear()
                        self.buffered = 0
            elif isinstance(event, BytesMessage):
                if event.message_finished and not buffer:
                    if len(event.data) > self.max_message:
                        self._too_big(len(event.data), "binary")
                    seq = proto.pong_binary(bytes(event.data))
                else:
                    self._gather(bytes(event.data), "binary")
                    if event.message_finished:
                        seq = proto.pong_binary(b"".join(buffer))  # type: ignore[arg-type]
                        buffer.clear()
                        self.buffered = 0
            elif isinstance(event, Pong):
                seq = proto.pong_control(bytes(event.payload))
            elif isinstance(event, Ping):
                # RFC 6455 pings: a server heartbeat too (graphql-ws, SockJS)
                self.server_beat(now)
                self.last_sent_at = now
                yield self.ws.send(event.response())
            elif isinstance(event, CloseConnection):
                closed = self._server_closed(event, now)
                self.last_frame_at = now
                yield closed
                return
            if seq is not None:
                if seq > 0:
                    self.pong(seq, now)
                else:
                    answer = self.heard(seq, now)
                    if answer is not None:
                        yield answer
        # after the events: a close frame must not count as its own proof of
        # life in the evidence that judges it
        self.last_frame_at = now

    def pong(self, seq: int, now: float, *, oldest: bool = False) -> None:
        """The answer to heartbeat ``seq`` (``oldest``: to the oldest still
        outstanding) came at ``now``."""
        m = self.metrics
        pong = self.hb.on_oldest(now) if oldest else self.hb.on_pong(seq, now)
        kind = pong.kind
        if kind is heartbeat.OK:
            m.count("pongs")
        elif kind is heartbeat.LATE:
            m.count("late")
        elif kind is heartbeat.DUPLICATE:
            m.count("duplicate_pongs")
            return
        else:
            m.count("unknown_pongs")
            return
        m.record("rtt", pong.rtt)
        m.record("rtt_service", pong.service)
        if self.wire is not None:
            rx = self.rx_at
            if rx is not None:
                m.record("rtt_wire", rx - self.hb.last_written)
                m.record("rx_delay", now - rx)
            elif self.rx_step:
                m.unrecorded("rtt_wire")

    def _gather(self, part: str | bytes, kind: str) -> None:
        """Keep a part of a message that is not complete yet, within
        ``max_message``: checked as it arrives, so a server cannot make the
        tester hold more than that for one connection."""
        size = self.buffered + len(part)
        if size > self.max_message:
            self.buffer.clear()
            self.buffered = 0
            self._too_big(size, kind)
        self.buffer.append(part)
        self.buffered = size

    def _too_big(self, size: int, kind: str) -> None:
        unit = "characters" if kind == "text" else "bytes"
        raise ProtocolError(
            f"a {kind} message of at least {size} {unit} exceeds max_message "
            f"({self.max_message}): the server broke the limit",
            close_code=1009,
        )

    def heard(self, what: int, now: float) -> bytes | None:
        """A recogniser's answer other than a seq (see soak.protocols.base):
        a reply without an id, or the server's heartbeat; the bytes of the
        answer to write, if it asks for one."""
        if what == OLDEST:
            for _ in range(self.protocol.replies):  # one message, several replies
                self.pong(0, now, oldest=True)
            return None
        if what == SERVER_PING:
            self.server_beat(now)
            self.last_sent_at = now
            opcode, payload = self.protocol.answer()
            return client_frame(opcode, payload)
        if what == SERVER_BEAT:
            self.server_beat(now)
        elif what == NO_HEARTBEAT:
            self.metrics.count("unknown_pongs")
        return None

    def server_beat(self, now: float) -> None:
        """A heartbeat of the server came at ``now``: its gap recorded, the
        next one due within the server's interval + timeout."""
        m = self.metrics
        m.count("server_pings")
        last = self.last_beat_at
        if last is not None:
            m.record("server_gap", now - last)
        self.last_beat_at = now
        self.beat_deadline = self._beat_deadline(now)

    def _server_closed(self, event: CloseConnection, now: float) -> Closed:
        info = CloseInfo(SERVER, event.code, event.reason or "", evidence=self.evidence(now))
        # wsproto reports a lost transport this way (a server's close frame
        # with 1006, read by soak.wsframe.tolerate_reserved_close, has a reason)
        if event.code == 1006 and event.reason is None:
            return Closed(CloseInfo(TRANSPORT, 1006, "", "eof", evidence=info.evidence))
        reply = None
        if self.ws.state is ConnectionState.REMOTE_CLOSING:
            try:
                reply = self.ws.send(event.response())
            except LocalProtocolError:
                pass  # the server's close frame is what counts
        return Closed(info, reply)

    # -- timers --------------------------------------------------------------------

    def tick(self, now: float, request: CloseRequest | None) -> bytes | Closing | None:
        """Timers: a close asked for by the runner (``request``), the
        protocol's silence rule, heartbeat timeouts, a heartbeat due (its
        bytes: write them, then call :meth:`pinged`)."""
        if request is not None:
            return self.close(request[0], request[1], request[2], now)
        silence = self.silence
        if silence is not None and now >= self.last_frame_at + silence:
            self.metrics.count("zombies")
            return self.close(4000, "tick timeout", ZOMBIE, now)
        if now >= self.beat_deadline:
            # the server's heartbeats stopped: as its dialect's own client
            # does, give the connection up
            m = self.metrics
            m.count("server_missed")
            m.count("zombies")
            return self.close(1001, "zombie: server heartbeats stopped", ZOMBIE, now)
        hb = self.hb
        newly = hb.check(now)
        if newly:
            m = self.metrics
            m.count("missed", newly)
            if hb.zombie:
                m.count("zombies")
                return self.close(1001, "zombie: heartbeats unanswered", ZOMBIE, now)
        if hb.due(now):
            return self.ping(now, framed=self.ws.state is ConnectionState.OPEN)
        return None

    def ping(self, now: float, *, framed: bool = True) -> bytes:
        """The heartbeat due now, as bytes to write; call :meth:`pinged`
        once they are written. Hand-framed (soak.wsframe) when ``framed``
        (the caller knows the connection is open) and the protocol can say
        it as one frame, else through wsproto."""
        sent = self.hb.on_send(now)
        self.sent = sent
        self.last_sent_at = now
        clock = self.clock
        ms = int((clock.wall0 + now - clock.t0) * 1000)
        proto = self.protocol
        frame = proto.ping_frame(sent.seq, ms) if framed else None
        if frame is not None:
            return client_frame(frame[0], frame[1])
        return self.ws.send(proto.ping(sent.seq, ms))

    def pinged(self, at: float | None = None, *, whole: bool = True) -> None:
        """The heartbeat from :meth:`ping` went out (its send call started
        at ``at``, when kernel timestamps are on; ``whole``: all its bytes
        were written): count it."""
        sent = self.sent
        assert sent is not None
        if at is not None:
            self.hb.written(sent.seq, at)
            if whole:
                self.tx_sent(sent.seq)
        self.sent = None  # not kept for the connection's idle life (memory)
        m = self.metrics
        m.count("pings")
        m.record("lag", sent.lateness)
        if sent.skipped:
            m.count("skipped", sent.skipped)
        held = self.hb.held
        if held:
            self.hb.held = 0
            m.count("held", held)

    def tx_sent(self, seq: int) -> None:
        """Heartbeat ``seq`` was written whole (the transport may then learn
        the kernel's transmit time of it; soak.client.transport)."""

    # -- endings -------------------------------------------------------------------

    def close(self, code: int, reason: str, cause: str, now: float) -> Closing:
        """Close from our side (a ``STORM_RESET`` resets the connection
        instead: no close frame, as a crashed client looks to the server)."""
        evidence = self.evidence(now)
        if cause == STORM_RESET:
            return Closing(CloseInfo(CLIENT, None, "", cause=cause, evidence=evidence), None, True)
        info = CloseInfo(CLIENT, code, reason, cause=cause, evidence=evidence)
        try:
            frame = self.ws.send(CloseConnection(code=code, reason=reason))
        except LocalProtocolError:
            frame = None  # we are closing anyway; the close reason is ours
        return Closing(info, frame)

    def lost(self, how: str, now: float) -> CloseInfo:
        """The transport ended (``how``: "eof" or "reset"). After the
        dialect's own goodbye (its ``farewell``: MQTT 5's DISCONNECT) that
        is the server's close, with the goodbye's code and reason."""
        farewell = self.protocol.farewell
        if farewell is not None:
            code, reason = farewell
            return CloseInfo(SERVER, code, reason, how, evidence=self.evidence(now))
        return CloseInfo(TRANSPORT, 1006, "", how, evidence=self.evidence(now))

    def evidence(self, now: float) -> Evidence:
        """What this connection knew at ``now``, for the close's verdict."""
        hb = self.hb
        return Evidence(
            age=now - self.opened_at,
            last_pong_age=None if hb.last_pong_at is None else now - hb.last_pong_at,
            last_frame_age=now - self.last_frame_at,
            last_sent_age=now - self.last_sent_at,
            consecutive_missed=hb.consecutive_missed,
            unresponsive_for=None if hb.miss_run_since is None else now - hb.miss_run_since,
            pings_pending=hb.pending,
            server_beat_age=None if self.last_beat_at is None else now - self.last_beat_at,
            answered=self.answered,
        )
