"""I/O: a client while it is connected. One task carries out what the
connection's reactions (:mod:`soak.client.connection`) ask for.

One task per client does everything: it waits for data with a deadline (the
next ping or the next timeout) and acts when either comes. That keeps memory
and task switches per client at a minimum, and needs no send lock. It relies
on ``receive_some`` being safe to cancel: true for sockets and memory
streams, and for ``trio.SSLStream`` once its handshake is done (the opener
completes it; trio documents only a cancelled handshake or renegotiation as
breaking the stream, and TLS 1.3 has no renegotiation).

On plain TCP, where heartbeat pings can be hand-framed, the run's
:class:`~soak.client.pacer.Pacer` sends them instead (:meth:`Live._paced`),
and a client's task waits only for data and for its next timeout instead of
once more per ping for its timer. And on plain TCP the run's
:class:`~soak.client.batch.BatchReceiver` reads the socket (``[run]
batch_receive``, Linux): the client's task then sleeps until its next
timeout, a close asked for, or something the batch leaves to it
(:meth:`Live._from_batch`).

Every connection always drains incoming frames and answers the server's
pings: a client that stops reading makes the gateway time it out, and the
tester would then cause the very timeouts it is meant to measure.
"""

from __future__ import annotations

import math
from typing import Any, cast

import trio
from wsproto.connection import ConnectionState
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from soak import heartbeat
from soak.classify import CLIENT, PROTOCOL_ERROR, SCALE_DOWN, SHUTDOWN, ZOMBIE, CloseInfo
from soak.client.closing import LastClose, client_event, record_close
from soak.client.connection import Closed, CloseRequest, Closing, Reaction
from soak.client.shared import Services, Shared
from soak.client.transport import RECEIVE_SIZE, RECEIVE_SLICE, _Conn, reset
from soak.errors import ProtocolError
from soak.protocols.base import HeartbeatProtocol

# How long a client that closes waits for the server's close frame
# (RFC 6455 7.1.1: the client should wait for the server to close TCP).
CLOSE_WAIT = 2.0

# Wake this much before a ping's slot: timers fire up to 1 ms late (epoll's
# resolution), and a ping sent late would count that against the tester.
TIMER_EARLY = 0.001


class Live:
    """One client's connected life, and the runner's requests to end it.
    :class:`soak.client.reconnect.Client` adds the loop around it."""

    __slots__ = (
        "_batched",
        "_close_request",
        "_inbox",
        "_wake",
        "client_id",
        "conn",
        "last_close",
        "phase",
        "protocol",
        "services",
        "shared",
    )

    def __init__(self, shared: Shared, index: int, phase: float) -> None:
        config = shared.config
        self.shared = shared
        self.services: Services = shared.services
        self.phase = phase  # offset of this client's heartbeat grid, seconds
        self.client_id = f"{config.profile.clients.client_id_prefix}-{index:06d}"
        self.protocol: HeartbeatProtocol = config.protocol(
            self.client_id, shared.services.protocol_state
        )
        self.conn: _Conn | None = None
        self.last_close: LastClose | None = None
        self._close_request: CloseRequest | None = None
        self._wake: trio.CancelScope | None = None
        # the batch receiver's side (soak.client.batch): whether it reads this
        # client's connection, and what it left to the task (with its time)
        self._batched = False
        self._inbox: tuple[Any, float] | None = None

    # -- control from the runner ---------------------------------------------------

    def request_close(self, code: int, reason: str, cause: str) -> None:
        """Ask the client to close its connection (and, for SHUTDOWN and
        SCALE_DOWN, to stop). Wakes it if it is waiting."""
        if self._close_request is None or cause in (SHUTDOWN, SCALE_DOWN):
            self._close_request = (code, reason, cause)
        if self._wake is not None:
            self._wake.cancel()

    @property
    def connected(self) -> bool:
        return self.conn is not None

    @property
    def hb(self) -> heartbeat.HeartbeatEngine | None:
        """The heartbeat engine of the live connection, if there is one."""
        conn = self.conn
        return None if conn is None else conn.hb

    # -- a live connection ------------------------------------------------------------

    async def _live(self, conn: _Conn, ready: float) -> CloseInfo:
        """Serve ``conn`` from ``ready`` (its handshake done) to its end."""
        sh = self.shared
        services = self.services
        hbc = sh.config.profile.heartbeat
        proto = self.protocol
        hb = heartbeat.HeartbeatEngine(
            interval=hbc.interval,
            timeout=hbc.timeout,
            max_missed=hbc.max_missed,
            # phase = "connect": the timer starts when the connection is ready,
            # as a browser's does, so clients that reconnect together (a
            # storm) keep heartbeating together from then on
            origin=ready if hbc.phase == "connect" else services.t0 + self.phase,
            now=ready,
            early=TIMER_EARLY,
            max_in_flight=proto.max_in_flight,
            expects_reply=proto.expects_reply,
            sends=proto.client_pings,
        )
        wire = services.wire
        if wire is not None and not conn.use_kernel_timestamps():
            wire = None  # TLS or an in-memory stream: rtt_wire has no sample
        if wire is not None:
            services.metrics.count("kernel_timestamped")
        conn.start(
            hb,
            self.protocol,
            services.metrics,
            services,
            ready,
            max_message=sh.config.profile.target.max_message,
            wire=wire,
        )
        self.conn = conn
        gauges = sh.gauges
        gauges.connected += 1
        gauges.seconds.connected(ready, gauges.connected)
        try:
            # events that arrived together with the upgrade response
            info = await self._carry_out(conn, conn.events(ready))
            if info is None:
                info = await self._serve(conn)
            return info
        except trio.BrokenResourceError:
            return conn.lost("reset", trio.current_time())
        except ProtocolError as exc:
            # a malformed or oversized frame: this connection only
            now = trio.current_time()
            services.emit(self._event("protocol_error", now, error=str(exc)))
            reason = "protocol error" if exc.close_code != 1009 else "frame too large"
            return await self._close(conn, conn.close(exc.close_code, reason, PROTOCOL_ERROR, now))
        except trio.Cancelled:
            req = self._close_request
            if req is not None:
                # The runner asked for this close and then ran out of patience
                # (its shutdown deadline) before the close handshake was done:
                # still our close, and counted as one, never lost in silence.
                now = trio.current_time()
                evidence = conn.evidence(now)
                info = CloseInfo(CLIENT, req[0], req[1], cause=req[2], evidence=evidence)
                self._record_close(info, now, unfinished=True)
            raise
        finally:
            self._unbatch(conn)  # before the socket is closed
            self._inbox = None
            gauges.connected -= 1
            gauges.seconds.connected(trio.current_time(), gauges.connected)
            pending = hb.pending
            if pending:
                services.metrics.count("abandoned", pending)
            if hb.held:  # slots held since the last ping went out
                services.metrics.count("held", hb.held)
            self.conn = None
            # shielded: a forceful close takes no time, and a Cancelled raised
            # here would throw away the connection's end (its info), uncounted
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(conn.stream)

    async def _serve(self, conn: _Conn) -> CloseInfo:
        hb = conn.hb
        receive = conn.receive
        silence = conn.silence
        # Pings of plain-TCP connections are sent by the run's pacer, so this
        # task wakes for data and timeouts only (see soak.client.pacer)
        pacer = self.services.pacer if conn.fd >= 0 and self._can_pace() else None
        if hb.next_send == math.inf:
            pacer = None  # the dialect's client sends no heartbeats
        if pacer is not None:
            pacer.add(hb.next_send - hb.early, self, conn)
        # plain TCP without kernel timestamps: the run's batch receiver reads
        # the socket and this task sleeps (see soak.client.batch)
        batch = self.services.batch if conn.fd >= 0 and conn.raw is None else None
        while True:
            if conn.pending is not None:
                await conn.write(b"")  # what the pacer could not write
            if conn.parked and pacer is not None:
                conn.parked = False
                pacer.add(hb.next_send - hb.early, self, conn)
            inbox = self._inbox
            if inbox is not None:
                self._inbox = None
                info = await self._handed(conn, inbox[0], inbox[1])
                if info is not None:
                    return info
            action = conn.tick(trio.current_time(), self._close_request)
            if action is not None:
                if isinstance(action, bytes):
                    # the wire RTT's send time: as the send call starts (on
                    # loopback the pong can be in before the call returns)
                    at = None if conn.wire is None else trio.current_time()
                    await conn.write(action)
                    conn.pinged(at)
                else:
                    return await self._close(conn, action)
            data = None
            deadline = hb.next_deadline() if pacer is None else hb.next_timeout()
            if silence is not None:
                deadline = min(deadline, conn.last_frame_at + silence)
            if conn.beat_deadline < deadline:
                deadline = conn.beat_deadline
            if batch is not None:
                if self._inbox is not None:
                    continue  # the batch left something while this task wrote
                if not self._batched:
                    self._batched = True
                    batch.enroll(self, conn)
                # asleep until a timeout, a close asked for, the pacer's
                # unfinished write or the batch's hand-off
                with trio.move_on_at(deadline) as scope:
                    self._wake = scope
                    await trio.sleep_forever()
                self._wake = None
                continue
            with trio.move_on_at(deadline) as scope:
                self._wake = scope
                data = await receive()
            self._wake = None
            if data is not None:
                now = trio.current_time()
                if not data:
                    return conn.lost("eof", now)
                info = await self._received(conn, cast(bytes, data), now)
                if info is not None:
                    return info

    async def _received(self, conn: _Conn, data: bytes, now: float) -> CloseInfo | None:
        """Hand what arrived at ``now`` to the connection a slice at a time,
        with a checkpoint between slices: a burst (a server's ping flood, a
        huge frame) must not hold the event loop, and every other
        connection's heartbeat with it, for the whole burst
        (tests/test_hostile.py). Every slice keeps ``now``: that is when
        its bytes arrived."""
        for start in range(0, len(data), RECEIVE_SLICE):
            if start:
                await trio.lowlevel.checkpoint()
            reaction = conn.on_data(data[start : start + RECEIVE_SLICE], now)
            if reaction is not None:
                info = await self._carry_out(conn, reaction)
                if info is not None:
                    return info
        return None

    def _from_batch(self, conn: _Conn, item: Any, now: float) -> None:
        """The batch receiver leaves ``item`` (read at ``now``) to this
        task, and no longer reads the connection (soak.client.batch)."""
        self._batched = False
        if conn is not self.conn:
            return  # that connection is over (it leaves the batch first: not expected)
        self._inbox = (item, now)
        wake = self._wake
        if wake is not None:
            wake.cancel()

    def _unbatch(self, conn: _Conn) -> None:
        """The task reads the socket from now on (it closes it, say)."""
        if self._batched:
            self._batched = False
            batch = self.services.batch
            if batch is not None:
                batch.remove(conn.fd, conn)

    async def _handed(self, conn: _Conn, item: Any, now: float) -> CloseInfo | None:
        """Do what the batch receiver left to this task: bytes it read (the
        end of the stream, or a chunk to hand over a slice at a time), a
        reaction of the connection to carry out, or an error to raise here."""
        if type(item) is bytes:
            if not item:
                return conn.lost("eof", now)
            return await self._received(conn, item, now)
        if isinstance(item, OSError):
            raise trio.BrokenResourceError(f"socket connection broken: {item}") from item
        if isinstance(item, BaseException):
            raise item
        return await self._carry_out(conn, cast(Reaction, item))

    def _can_pace(self) -> bool:
        return type(self.protocol).ping_frame is not HeartbeatProtocol.ping_frame

    def _paced(self, conn: _Conn, now: float) -> None:
        """The pacer's turn: send this client's ping if it is due (as the
        task's own tick would), and come back for the next one."""
        if conn.busy or conn.pending is not None or self._inbox is not None:
            # the task sends when its write is done, then re-adds; and when the
            # batch receiver left it something (the end of the stream, say), that
            # comes first: a ping sent after it would postdate the connection's end
            conn.parked = True
            return
        if self._close_request is not None or conn.ws.state is not ConnectionState.OPEN:
            return  # the connection is ending; its task does the rest
        hb = conn.hb
        if hb.due(now):
            data = conn.ping(now)
            at = None if conn.wire is None else trio.current_time()
            written = conn.write_now(data)
            conn.pinged(at, whole=written)
            wake = self._wake
            if wake is not None:
                if not written:
                    wake.cancel()  # the task writes the rest
                else:
                    # the task waits for data until the first timeout, which
                    # may now be this ping's
                    timeout_at = hb.next_timeout()
                    if timeout_at < wake.deadline:
                        wake.deadline = timeout_at
        when = hb.next_send - hb.early
        if when <= now:
            # not sent in its early window (a dialect's in-flight cap): come
            # back at the slot itself, never at a time already past
            when = hb.next_send
        self.services.pacer.add(when, self, conn)

    async def _carry_out(self, conn: _Conn, reaction: Reaction) -> CloseInfo | None:
        """Do what a reaction asks, in order; the bytes it asks to send
        (answers to the server's pings, say) go out in one write, not one
        write each: a ping flood's thousands of pongs cost one write per
        slice (tests/test_hostile.py)."""
        out = b""
        for action in reaction:
            if isinstance(action, Closed):
                if out:
                    await conn.write(out)
                return await self._closed(conn, action)
            out += action
        if out:
            await conn.write(out)
        return None

    async def _closed(self, conn: _Conn, closed: Closed) -> CloseInfo:
        """The server closed: answer its close frame if we still can."""
        if closed.reply is not None:
            try:
                await conn.write(closed.reply)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the server may already have gone; its close frame is what counts
        return closed.info

    async def _close(self, conn: _Conn, closing: Closing) -> CloseInfo:
        """Close from our side and wait briefly for the server's answer."""
        self._unbatch(conn)  # this task reads the server's answer
        if closing.reset:
            reset(conn.stream)  # no close frame: the peer sees a reset
            return closing.info
        if closing.frame is not None:
            # a zombie's server has not answered for max_missed heartbeats:
            # waiting for its close frame would only keep a dead connection
            # counted as connected and delay the reconnect (a frozen gateway,
            # tests/test_frozen_gateway.py); and a full send buffer must not
            # hold the close forever
            wait = 0.0 if closing.info.cause == ZOMBIE else CLOSE_WAIT
            try:
                with trio.move_on_after(CLOSE_WAIT):
                    await conn.write(closing.frame)
                with trio.move_on_after(wait):
                    while conn.ws.state is not ConnectionState.CLOSED:
                        data = await conn.stream.receive_some(RECEIVE_SIZE)
                        if not data:
                            break
                        conn.ws.receive_data(cast(bytes, data))
                        for _ in conn.ws.events():
                            pass
            except (
                trio.BrokenResourceError,
                trio.ClosedResourceError,
                LocalProtocolError,
                RemoteProtocolError,
            ):
                pass  # we are closing anyway; the close reason is ours
        return closing.info

    # -- bookkeeping ---------------------------------------------------------------------

    def _event(self, kind: str, now: float, **fields: Any) -> dict[str, Any]:
        return client_event(self.shared, self.client_id, kind, now, **fields)

    def _record_close(self, info: CloseInfo, now: float, *, unfinished: bool = False) -> None:
        """Judge and count a connection's end, with its event."""
        self.last_close = record_close(
            self.shared,
            self.protocol,
            self.client_id,
            self.last_close,
            info,
            now,
            unfinished=unfinished,
        )
