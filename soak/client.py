"""I/O: one simulated client, raw wsproto on a Trio stream.

Raw wsproto rather than trio-websocket: docs/calibration.md measured 8 KiB per
idle connection against 18-22 KiB, and ~1,500 handshakes/s against ~1,000.
The price is that this module does the little framing bookkeeping itself.

A client owns one connection at a time and lives this loop::

    connect -> handshake -> heartbeat + receive -> close -> backoff -> ...

One task per client does everything: it waits for data with a deadline (the
next ping or the next timeout) and acts when either comes. That keeps memory
and task switches per client at a minimum, and needs no send lock. It relies
on ``receive_some`` being safe to cancel: true for sockets and memory
streams, and for ``trio.SSLStream`` once its handshake is done (the opener
completes it; trio documents only a cancelled handshake or renegotiation as
breaking the stream, and TLS 1.3 has no renegotiation).

On plain TCP, where heartbeat pings can be hand-framed, one :class:`_Pacer`
task per run sends them instead, and a client's task waits only for data
and for its next timeout instead of once more per ping for its timer.

Every connection always drains incoming frames and answers the server's
pings: a client that stops reading makes the gateway time it out, and the
tester would then cause the very timeouts it is meant to measure.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import math
import os
import random
import re
import socket
import ssl
import struct
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from soak import backoff, heartbeat
from soak.addresses import IP_BIND_ADDRESS_NO_PORT
from soak.classify import (
    CHURN,
    CLIENT,
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    PROTOCOL_ERROR,
    SCALE_DOWN,
    SERVER,
    SHUTDOWN,
    STORM_RESET,
    TRANSPORT,
    ZOMBIE,
    Classifier,
    CloseInfo,
    Evidence,
    Verdict,
)
from soak.errors import HandshakeError, LocalError, ProtocolError
from soak.limits import limit_message
from soak.metrics import Metrics
from soak.profile import Profile, TargetConfig
from soak.protocols import PROTOCOLS
from soak.protocols.base import HeartbeatProtocol
from soak.storm import StormTracker
from soak.urls import without_userinfo as display_url
from soak.wsframe import client_frame, single_text_frame, slim, wsproto_idle

# Heartbeat frames are ~100 bytes. recv(n) allocates n bytes before it
# shrinks them, so a small size is cheaper on the hot path; a larger burst
# simply takes more reads.
RECEIVE_SIZE = 16384
# How long a client that closes waits for the server's close frame
# (RFC 6455 7.1.1: the client should wait for the server to close TCP).
CLOSE_WAIT = 2.0

# Wake this much before a ping's slot: timers fire up to 1 ms late (epoll's
# resolution), and a ping sent late would count that against the tester.
TIMER_EARLY = 0.001

OpenStream = Callable[[], Awaitable[trio.abc.Stream]]


def tls_context(target: TargetConfig) -> ssl.SSLContext:
    """The client's TLS settings for a ``wss://`` target."""
    try:
        ctx = ssl.create_default_context(cafile=target.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise LocalError(f"target.ca_file: cannot load {target.ca_file}: {exc}") from exc
    if not target.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def target_address(target: TargetConfig) -> tuple[str, int]:
    parts = urlsplit(target.url)
    return parts.hostname or "", parts.port or (443 if target.secure else 80)


def url_opener(target: TargetConfig, connect_to: tuple[str, int] | None = None) -> OpenStream:
    """The default way to reach a target: TCP, plus TLS for ``wss://``.
    ``connect_to`` sends the TCP connection elsewhere (soak's impairment
    proxy) while TLS still verifies the target's own name.

    Connections spread over ``target.source_ips`` (each bound to its source
    before connecting, with IP_BIND_ADDRESS_NO_PORT so the port is chosen at
    connect time) and ``target.connect_to``, round-robin: connection ``n``
    uses source ``n % S`` and target ``(n // S) % T``, so every pair is used.
    A failure to connect carries ``source`` and ``target`` attributes, for
    :func:`soak.limits.limit_message`."""
    host, port = target_address(target)
    dials = (connect_to,) if connect_to is not None else target.connect_to or ((host, port),)
    sources = target.source_ips
    ctx = tls_context(target) if target.secure else None
    counter = itertools.count()

    async def open_tcp() -> trio.abc.Stream:
        n = next(counter)
        dial_host, dial_port = dials[(n // max(1, len(sources))) % len(dials)]
        source = sources[n % len(sources)] if sources else None
        try:
            if source is None:
                return await trio.open_tcp_stream(dial_host, dial_port)
            return await _open_from(source, dial_host, dial_port)
        except OSError as exc:
            exc.source = source  # type: ignore[attr-defined]
            exc.target = f"{dial_host}:{dial_port}"  # type: ignore[attr-defined]
            raise

    async def open_stream() -> trio.abc.Stream:
        tcp = await open_tcp()
        if ctx is None:
            return tcp
        tls = trio.SSLStream(tcp, ctx, server_hostname=host, https_compatible=True)
        try:
            await tls.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(tcp)
            raise
        return tls

    return open_stream


async def _open_from(source: str, host: str, port: int) -> trio.SocketStream:
    """A TCP connection from ``source`` (an address of this host) to ``host:port``."""
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    infos = await trio.socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform == "linux":
            with contextlib.suppress(OSError):  # an old kernel: bind() picks the port
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        await sock.bind((source, 0))
        await sock.connect(infos[0][4])
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


class _Pacer:
    """Sends the heartbeat pings of a run's plain-TCP clients from one task.

    A client's ping timer would otherwise wake its task once per ping, and
    a trio timer is a cancellation (``Cancelled`` raised into the wait, the
    descriptor unregistered from epoll, the scope unwound): a sixth of the
    client's profile at 5,000 pings/s. The pacer keeps one entry per paced
    connection in a heap ordered by the next send time, wakes when the
    earliest is due (one wakeup sends every ping due by then) and writes the
    hand-framed ping without waiting (``_Conn.write_now``). The client's
    task then waits only for data and for the first timeout. A ping the
    kernel does not take whole is finished by the client's task; while that
    task is itself writing, the pacer leaves the connection to it.

    It runs as a trio system task, started with the first paced connection.
    """

    __slots__ = ("_heap", "_n", "_scope", "_started")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Client, _Conn]] = []
        self._n = 0  # tie-breaker: clients are not comparable
        self._scope: trio.CancelScope | None = None
        self._started = False

    def add(self, when: float, client: Client, conn: _Conn) -> None:
        self._n += 1
        heapq.heappush(self._heap, (when, self._n, client, conn))
        if not self._started:
            self._started = True
            trio.lowlevel.spawn_system_task(self._run, name="soak-pacer")
        scope = self._scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when

    async def _run(self) -> None:
        heap = self._heap
        while True:
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, client, conn = heapq.heappop(heap)
                if client.conn is conn:  # else that connection is over
                    client._paced(conn, now)


class _Stopped(Exception):
    """The runner stopped the client while it was connecting."""


class _Permanent(Exception):
    """A permanent refusal became known while the client queued to connect."""


class Shared:
    """What all clients of one run share. Built by the runner."""

    def __init__(
        self,
        profile: Profile,
        metrics: Metrics,
        open_stream: OpenStream,
        emit: Callable[[dict[str, Any]], None],
        *,
        t0: float,
        wall0: float,
        rng: random.Random,
    ) -> None:
        self.profile = profile
        self.metrics = metrics
        self.open_stream = open_stream
        self.emit = emit
        self.t0 = t0  # trio time at run start
        self.wall0 = wall0  # epoch seconds at run start
        self.rng = rng
        self.limiter = trio.Semaphore(profile.clients.max_connecting)
        self.protocol = PROTOCOLS[profile.target.protocol]
        self.protocol_state = self.protocol.shared_state(profile.target)
        # the server's version from the first protocol handshake that gave
        # one (OpenClaw's hello-ok), for the run manifest
        self.server_version: str | None = None
        self.classifier = Classifier(profile.target.server_heartbeat)
        parts = urlsplit(profile.target.url)
        self.shown_url = display_url(profile.target.url)  # for messages: no credentials
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [(k.encode(), v.encode()) for k, v in profile.target.headers]
        token = profile.target.token
        if token is not None:
            value = profile.target.token_prefix + token.value
            headers.append((profile.target.token_header.encode(), value.encode()))
        self.extra_headers = headers
        self.connected = 0
        self.connecting = 0
        self.gave_up = 0
        # refusals that trying again cannot help (a wrong token): once known,
        # no client tries again
        self.permanence = backoff.Permanence()
        st = profile.storms
        self.storms = StormTracker(
            heartbeat_interval=profile.heartbeat.interval,
            origin=t0,
            min_losses=st.min_losses,
            window=st.window,
            quiet=st.quiet,
        )
        self.pacer = _Pacer()

    def storm_tick(self, now: float) -> None:
        """Close the current storm if it is over, with an event."""
        storm = self.storms.tick(now)
        if storm is not None:
            self.emit(
                {
                    "t": round(self.elapsed(now), 6),
                    "event": "storm_end",
                    **self.storms.summary_of(storm),
                }
            )

    def elapsed(self, now: float) -> float:
        return now - self.t0


class _Conn:
    """One open WebSocket: the stream, wsproto's state and a partial message.

    On a plain TCP stream (``trio.SocketStream``) the hot path reads and
    writes the socket's descriptor itself: ``wait_readable`` then one
    ``os.read``, and ``os.write`` with ``send_all`` taking over only what the
    kernel did not accept. trio's own calls add a generator context manager,
    a failed ``recv`` (EAGAIN) and a scheduler round trip to every call. The
    descriptor is only used while the connection is open; ``_live`` closes
    the stream last. TLS and in-memory streams go through the stream."""

    __slots__ = ("buffer", "busy", "fd", "opened_at", "parked", "pending", "stream", "ws")

    def __init__(self, stream: trio.abc.Stream, ws: Connection, opened_at: float) -> None:
        self.stream = stream
        self.ws = ws
        self.opened_at = opened_at
        self.buffer: list[str] = []
        self.fd = stream.socket.fileno() if type(stream) is trio.SocketStream else -1
        # the pacer's side (_Pacer): bytes of a ping the kernel did not take
        # yet, whether the client's task is in a send_all, and whether the
        # pacer left this connection to its task for that reason
        self.pending: bytes | None = None
        self.busy = False
        self.parked = False

    async def send(self, event: Event) -> None:
        await self.write(self.ws.send(event))

    async def write(self, data: bytes) -> None:
        if self.pending is not None:  # the pacer's ping goes first
            data = self.pending + data
            self.pending = None
        fd = self.fd
        if fd >= 0:
            try:
                n = os.write(fd, data)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
            if n == len(data):
                return
            data = data[n:]
        self.busy = True
        try:
            await self.stream.send_all(data)
        finally:
            self.busy = False

    def write_now(self, data: bytes) -> bool:
        """Write without waiting (the pacer's path). False when bytes are
        left over: they stay in ``pending`` for the client's task, whose
        write sends them or, on a broken socket, raises as it would have."""
        if self.pending is not None:
            self.pending += data
            return False
        try:
            n = os.write(self.fd, data)
        except OSError:  # BlockingIOError included
            n = 0
        if n == len(data):
            return True
        self.pending = data[n:]
        return False

    async def receive(self) -> bytes | bytearray | None:
        """The next chunk (b"" at the end of the stream), or None when the
        descriptor woke without data (then simply wait again)."""
        fd = self.fd
        if fd < 0:
            return await self.stream.receive_some(RECEIVE_SIZE)
        await trio.lowlevel.wait_readable(fd)
        try:
            return os.read(fd, RECEIVE_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc


class Client:
    __slots__ = (
        "_close_request",
        "_wake",
        "client_id",
        "conn",
        "finished",
        "hb",
        "last_close",
        "last_frame_at",
        "phase",
        "protocol",
        "shared",
    )

    def __init__(self, shared: Shared, index: int, phase: float) -> None:
        self.shared = shared
        self.phase = phase  # offset of this client's heartbeat grid, seconds
        self.client_id = f"{shared.profile.clients.client_id_prefix}-{index:06d}"
        self.protocol = shared.protocol(self.client_id, shared.protocol_state)
        self.conn: _Conn | None = None
        self.hb: heartbeat.HeartbeatEngine | None = None
        self.last_frame_at = 0.0
        self.last_close: tuple[float, str] | None = None  # (when, reason key)
        self._close_request: tuple[int, str, str] | None = None
        self._wake: trio.CancelScope | None = None
        self.finished = False

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

    # -- the life of a client --------------------------------------------------------

    async def run(self) -> None:
        sh = self.shared
        m = sh.metrics
        cfg = sh.profile.reconnect
        attempt = 0  # failed attempts in a row
        previous_delay = 0.0
        lost_at: float | None = None  # when the last connection was lost
        try:
            while True:
                req = self._close_request
                if req is not None and req[2] in (SHUTDOWN, SCALE_DOWN):
                    return
                if sh.permanence.known is not None:
                    self._give_up(attempt, permanent=True)
                    return
                self._close_request = None
                m.count("connect_attempts")
                if lost_at is not None:
                    m.count("reconnect_attempts")
                    sh.storms.attempt(trio.current_time(), sh.connecting + 1)
                hint: float | None = None
                try:
                    conn, began = await self._connect()
                except _Stopped:
                    return  # asked to stop while connecting: not a failure
                except _Permanent:
                    self._give_up(attempt, permanent=True)
                    return
                except HandshakeError as exc:
                    m.handshake_failure(exc.cause)
                    sh.storms.failed(trio.current_time(), exc.cause)
                    hint = exc.retry_after
                    failure = self._event(
                        "handshake_failure",
                        trio.current_time(),
                        cause=exc.cause,
                        error=str(exc),
                    )
                    if exc.permanent:
                        failure["permanent"] = True
                    sh.emit(failure)
                    if exc.permanent and self._permanent(exc):
                        self._give_up(attempt + 1, permanent=True)
                        return
                else:
                    ready = trio.current_time()
                    m.count("connects")
                    m.record("connect", ready - began)
                    if lost_at is not None:
                        m.count("reconnects")
                        m.record("reconnect", ready - lost_at)
                    sh.storms.ready(ready, ready - began, lost_at)
                    sh.storm_tick(ready)
                    sh.permanence.connected()
                    attempt = 0
                    info = await self._live(conn, ready)
                    now = trio.current_time()
                    self._record_close(info, now)
                    if info.initiator == CLIENT and info.cause in (SHUTDOWN, SCALE_DOWN):
                        return
                    lost_at = now
                    if info.cause == CHURN:
                        continue  # churn reopens at once, as a page reload does
                    hint = retry_hint(info)
                    if hint is None:
                        hint = self.protocol.close_hint()
                    storm = sh.storms.lost(now)
                    if storm is not None:
                        sh.emit(
                            {
                                "t": round(sh.elapsed(storm.start), 6),
                                "event": "storm_start",
                                "storm": storm.index,
                                "lost": storm.lost,
                            }
                        )
                if not cfg.enabled:
                    return
                attempt += 1
                if backoff.gave_up(cfg, attempt):
                    self._give_up(attempt)
                    return
                delay = backoff.next_delay(cfg, attempt, previous_delay, sh.rng, hint)
                previous_delay = delay
                with trio.CancelScope(deadline=trio.current_time() + delay) as scope:
                    self._wake = scope
                    await trio.sleep_forever()
                self._wake = None
        finally:
            self.finished = True

    def _give_up(self, attempt: int, *, permanent: bool = False) -> None:
        """Stop reconnecting: after max_attempts, or because a permanent
        refusal is known (then ``attempt`` counts this client's failures)."""
        sh = self.shared
        now = trio.current_time()
        sh.metrics.count("reconnect_failed")
        sh.gave_up += 1
        sh.storms.gave_up(now)
        ev = self._event("reconnect_failed", now, attempts=attempt if permanent else attempt - 1)
        if permanent:
            ev["permanent"] = sh.permanence.known
        sh.emit(ev)

    def _permanent(self, exc: HandshakeError) -> bool:
        """Count a permanent refusal; True once the run knows it is one."""
        sh = self.shared
        now = trio.current_time()
        if sh.permanence.refused(exc.cause, str(exc), now):
            failures = sh.permanence.count
            sh.metrics.permanent_failure = {
                "cause": exc.cause,
                "error": str(exc),
                "t": round(sh.elapsed(now), 6),
                "failures": failures,
            }
            sh.emit(
                {
                    "t": round(sh.elapsed(now), 6),
                    "event": "permanent_failure",
                    "cause": exc.cause,
                    "error": str(exc),
                    "failures": failures,
                }
            )
        return sh.permanence.known is not None

    # -- connecting ------------------------------------------------------------------

    async def _connect(self) -> tuple[_Conn, float]:
        """Wait for a handshake slot, then connect. Returns the connection and
        when its handshake began: the timeout and the ``connect`` histogram
        start there, because time spent queueing for a slot is the tester's
        own limit (``max_connecting``), not the target's slowness."""
        sh = self.shared
        timeout = sh.profile.target.connect_timeout
        sh.connecting += 1
        try:
            with trio.CancelScope() as wake:  # request_close() wakes us, even queued
                self._wake = wake
                async with sh.limiter:
                    if sh.permanence.known is not None:
                        raise _Permanent  # known while we queued: do not try
                    began = trio.current_time()
                    with trio.move_on_at(began + timeout):
                        return await self._open(), began
                    if not wake.cancel_called:
                        raise HandshakeError(
                            "timeout", f"{sh.shown_url}: no handshake within {timeout:g}s"
                        )
            raise _Stopped
        finally:
            self._wake = None
            sh.connecting -= 1

    async def _open(self) -> _Conn:
        """The upgrade, then the protocol's own handshake if it has one."""
        conn = await self._handshake()
        proto = self.protocol
        if not proto.has_handshake:
            return conn
        url = self.shared.shown_url
        try:
            await proto.handshake(_HandshakeIO(conn, url))
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(conn.stream)
            raise HandshakeError("reset", f"{url}: {exc}") from exc
        except RemoteProtocolError as exc:
            await trio.aclose_forcefully(conn.stream)
            raise HandshakeError("protocol", f"{url}: {exc}") from exc
        except BaseException:
            await trio.aclose_forcefully(conn.stream)
            raise
        if self.shared.server_version is None:
            self.shared.server_version = proto.server_version
        # the connection's age counts from here, as the server's does (its
        # heartbeat timer starts when it authenticates the client)
        conn.opened_at = trio.current_time()
        return conn

    async def _handshake(self) -> _Conn:
        sh = self.shared
        url = sh.shown_url
        try:
            stream = await sh.open_stream()
        except OSError as exc:
            raise HandshakeError(_os_cause(exc), f"{url}: {_describe_os_error(exc, sh)}") from exc
        except trio.BrokenResourceError as exc:
            cause = "tls" if isinstance(exc.__cause__, ssl.SSLError) else "reset"
            raise HandshakeError(cause, f"{url}: {exc.__cause__ or exc}") from exc
        try:
            ws = WSConnection(ConnectionType.CLIENT)
            request = Request(
                host=sh.host_header, target=sh.resource, extra_headers=sh.extra_headers
            )
            await stream.send_all(ws.send(request))
            while True:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise HandshakeError("eof", f"{url}: connection closed during the upgrade")
                ws.receive_data(cast(bytes, data))
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        # Keep only the frame-level connection: the finished
                        # HTTP handshake (h11 state, ~1.5 KB) would otherwise
                        # live as long as the connection. Frames that came
                        # with the upgrade response are already queued in it.
                        assert ws.connection is not None
                        slim(ws.connection)
                        return _Conn(stream, ws.connection, trio.current_time())
                    if isinstance(event, RejectConnection):
                        raise _rejected(url, event)
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(stream)
            raise HandshakeError("reset", f"{url}: {exc}") from exc
        except RemoteProtocolError as exc:
            await trio.aclose_forcefully(stream)
            raise HandshakeError("protocol", f"{url}: bad upgrade response: {exc}") from exc
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise

    # -- a live connection ------------------------------------------------------------

    async def _live(self, conn: _Conn, ready: float) -> CloseInfo:
        sh = self.shared
        hbc = sh.profile.heartbeat
        self.conn = conn
        self.last_frame_at = ready
        self.hb = heartbeat.HeartbeatEngine(
            interval=hbc.interval,
            timeout=hbc.timeout,
            max_missed=hbc.max_missed,
            # phase = "connect": the timer starts when the connection is ready,
            # as a browser's does, so clients that reconnect together (a
            # storm) keep heartbeating together from then on
            origin=ready if hbc.phase == "connect" else sh.t0 + self.phase,
            now=ready,
            early=TIMER_EARLY,
        )
        sh.connected += 1
        try:
            # events that arrived together with the upgrade response
            info = await self._handle_events(conn, ready)
            if info is None:
                info = await self._serve(conn)
            return info
        except trio.BrokenResourceError:
            return self._lost(conn, "reset")
        except ProtocolError as exc:
            # a malformed or oversized frame: this connection only
            now = trio.current_time()
            sh.emit(self._event("protocol_error", now, error=str(exc)))
            reason = "protocol error" if exc.close_code != 1009 else "frame too large"
            return await self._close(conn, exc.close_code, reason, PROTOCOL_ERROR, now)
        except trio.Cancelled:
            req = self._close_request
            if req is not None:
                # The runner asked for this close and then ran out of patience
                # (its shutdown deadline) before the close handshake was done:
                # still our close, and counted as one, never lost in silence.
                now = trio.current_time()
                evidence = self._evidence(conn, now)
                info = CloseInfo(CLIENT, req[0], req[1], cause=req[2], evidence=evidence)
                self._record_close(info, now, unfinished=True)
            raise
        finally:
            sh.connected -= 1
            pending = self.hb.pending
            if pending:
                sh.metrics.count("abandoned", pending)
            self.conn = None
            self.hb = None
            # shielded: a forceful close takes no time, and a Cancelled raised
            # here would throw away the connection's end (its info), uncounted
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(conn.stream)

    async def _serve(self, conn: _Conn) -> CloseInfo:
        hb = self.hb
        assert hb is not None
        receive = conn.receive
        # a protocol's silence rule (OpenClaw: no inbound frame for 2 ticks)
        silence = self.protocol.silence_timeout
        # Pings of plain-TCP connections are sent by the run's pacer, so this
        # task wakes for data and timeouts only (see _Pacer)
        pacer = self.shared.pacer if conn.fd >= 0 and self._can_pace() else None
        if pacer is not None:
            pacer.add(hb.next_send - hb.early, self, conn)
        while True:
            if conn.pending is not None:
                await conn.write(b"")  # what the pacer could not write
            if conn.parked and pacer is not None:
                conn.parked = False
                pacer.add(hb.next_send - hb.early, self, conn)
            now = trio.current_time()
            if (
                silence is not None
                and now >= self.last_frame_at + silence
                and self._close_request is None
            ):
                self.shared.metrics.count("zombies")
                return await self._close(conn, 4000, "tick timeout", ZOMBIE, now)
            info = await self._tick(conn, now)
            if info is not None:
                return info
            data = None
            deadline = hb.next_deadline() if pacer is None else hb.next_timeout()
            if silence is not None:
                deadline = min(deadline, self.last_frame_at + silence)
            with trio.move_on_at(deadline) as scope:
                self._wake = scope
                data = await receive()
            self._wake = None
            if data is not None:
                info = await self._on_data(conn, data)
                if info is not None:
                    return info

    def _can_pace(self) -> bool:
        return type(self.protocol).ping_frame is not HeartbeatProtocol.ping_frame

    def _paced(self, conn: _Conn, now: float) -> None:
        """The pacer's turn: send this client's ping if it is due (as _tick
        would), and come back for the next one."""
        hb = self.hb
        assert hb is not None
        pacer = self.shared.pacer
        if conn.busy or conn.pending is not None:
            conn.parked = True  # the task sends when its write is done, then re-adds
            return
        if self._close_request is not None or conn.ws.state is not ConnectionState.OPEN:
            return  # the connection is ending; its task does the rest
        if hb.due(now):
            sent = hb.on_send(now)
            sh = self.shared
            ms = int((sh.wall0 + now - sh.t0) * 1000)
            frame = self.protocol.ping_frame(sent.seq, ms)
            assert frame is not None
            written = conn.write_now(client_frame(frame[0], frame[1]))
            m = sh.metrics
            m.count("pings")
            m.record("lag", sent.lateness)
            if sent.skipped:
                m.count("skipped", sent.skipped)
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
        pacer.add(hb.next_send - hb.early, self, conn)

    async def _tick(self, conn: _Conn, now: float) -> CloseInfo | None:
        """Timers: a close asked for by the runner, timeouts, a due ping."""
        hb = self.hb
        assert hb is not None
        m = self.shared.metrics
        req = self._close_request
        if req is not None:
            return await self._close(conn, req[0], req[1], req[2], now)
        newly = hb.check(now)
        if newly:
            m.count("missed", newly)
            if hb.zombie:
                m.count("zombies")
                return await self._close(conn, 1001, "zombie: heartbeats unanswered", ZOMBIE, now)
        if hb.due(now):
            sent = hb.on_send(now)
            ms = int((self.shared.wall0 + now - self.shared.t0) * 1000)
            frame = None
            if conn.ws.state is ConnectionState.OPEN:
                frame = self.protocol.ping_frame(sent.seq, ms)
            if frame is not None:
                # what wsproto would send, framed here (soak.wsframe)
                await conn.write(client_frame(frame[0], frame[1]))
            else:
                await conn.send(self.protocol.ping(sent.seq, ms))
            m.count("pings")
            m.record("lag", sent.lateness)
            if sent.skipped:
                m.count("skipped", sent.skipped)
        return None

    async def _on_data(self, conn: _Conn, data: bytes | bytearray) -> CloseInfo | None:
        now = trio.current_time()
        if not data:
            return self._lost(conn, "eof")
        if wsproto_idle(conn.ws):
            # the usual chunk, one whole text frame: parsed here exactly as
            # wsproto would (soak.wsframe); anything else goes to wsproto
            text = single_text_frame(cast(bytes, data))
            if text is not None:
                seq = self.protocol.pong_text(text)
                if seq is not None:
                    self._pong(seq, now)
                self.last_frame_at = now
                return None
        try:
            conn.ws.receive_data(cast(bytes, data))
        except RemoteProtocolError as exc:
            return CloseInfo(
                TRANSPORT,
                1002,
                f"protocol error: {exc}",
                "protocol",
                evidence=self._evidence(conn, now),
            )
        info = await self._handle_events(conn, now)
        # after the events: a close frame must not count as its own proof of
        # life in the evidence that judges it
        self.last_frame_at = now
        return info

    async def _handle_events(self, conn: _Conn, now: float) -> CloseInfo | None:
        hb = self.hb
        assert hb is not None
        m = self.shared.metrics
        proto = self.protocol
        for event in conn.ws.events():
            seq: int | None = None
            if isinstance(event, TextMessage):
                if event.message_finished and not conn.buffer:
                    seq = proto.pong_text(event.data)
                else:
                    conn.buffer.append(event.data)
                    if event.message_finished:
                        seq = proto.pong_text("".join(conn.buffer))
                        conn.buffer.clear()
            elif isinstance(event, Pong):
                seq = proto.pong_control(bytes(event.payload))
            elif isinstance(event, Ping):
                m.count("server_pings")
                await conn.send(event.response())
            elif isinstance(event, CloseConnection):
                return await self._server_closed(conn, event, now)
            elif isinstance(event, BytesMessage):
                pass  # drained; binary payloads are not heartbeats here
            if seq is not None:
                self._pong(seq, now)
        return None

    def _pong(self, seq: int, now: float) -> None:
        hb = self.hb
        assert hb is not None
        m = self.shared.metrics
        pong = hb.on_pong(seq, now)
        kind = pong.kind
        if kind is heartbeat.OK:
            m.count("pongs")
            m.record("rtt", pong.rtt)
            m.record("rtt_service", pong.service)
        elif kind is heartbeat.LATE:
            m.count("late")
            m.record("rtt", pong.rtt)
            m.record("rtt_service", pong.service)
        elif kind is heartbeat.DUPLICATE:
            m.count("duplicate_pongs")
        else:
            m.count("unknown_pongs")

    # -- endings ------------------------------------------------------------------------

    def _evidence(self, conn: _Conn, now: float) -> Evidence:
        hb = self.hb
        assert hb is not None
        return Evidence(
            age=now - conn.opened_at,
            last_pong_age=None if hb.last_pong_at is None else now - hb.last_pong_at,
            last_frame_age=now - self.last_frame_at,
            consecutive_missed=hb.consecutive_missed,
            unresponsive_for=None if hb.miss_run_since is None else now - hb.miss_run_since,
            pings_pending=hb.pending,
        )

    def _lost(self, conn: _Conn, how: str) -> CloseInfo:
        return CloseInfo(
            TRANSPORT, 1006, "", how, evidence=self._evidence(conn, trio.current_time())
        )

    async def _server_closed(self, conn: _Conn, event: CloseConnection, now: float) -> CloseInfo:
        info = CloseInfo(SERVER, event.code, event.reason or "", evidence=self._evidence(conn, now))
        if event.code == 1006:  # wsproto reports a lost transport this way
            return CloseInfo(TRANSPORT, 1006, "", "eof", evidence=info.evidence)
        if conn.ws.state is ConnectionState.REMOTE_CLOSING:
            try:
                await conn.send(event.response())
            except (trio.BrokenResourceError, trio.ClosedResourceError, LocalProtocolError):
                pass  # the server may already have gone; its close frame is what counts
        return info

    async def _close(
        self, conn: _Conn, code: int, reason: str, cause: str, now: float
    ) -> CloseInfo:
        """Close from our side and wait briefly for the server's answer."""
        info = CloseInfo(CLIENT, code, reason, cause=cause, evidence=self._evidence(conn, now))
        if cause == STORM_RESET:
            _reset(conn.stream)  # no close frame: the peer sees a reset
            return CloseInfo(CLIENT, None, "", cause=cause, evidence=info.evidence)
        try:
            await conn.send(CloseConnection(code=code, reason=reason))
            with trio.move_on_after(CLOSE_WAIT):
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
        return info

    # -- events ------------------------------------------------------------------------

    def _event(self, kind: str, now: float, **fields: Any) -> dict[str, Any]:
        sh = self.shared
        return {"t": round(sh.elapsed(now), 6), "event": kind, "client": self.client_id, **fields}

    def _record_close(self, info: CloseInfo, now: float, *, unfinished: bool = False) -> None:
        """Judge and count a connection's end, with its event."""
        m = self.shared.metrics
        verdict = self.protocol.judge(self.shared.classifier.classify(info), info)
        m.close(verdict.key, verdict.category, info.code)
        if verdict.key == FALSE_TIMEOUT:
            m.count("false_timeouts")
        elif verdict.key == JUSTIFIED_TIMEOUT:
            m.count("justified_timeouts")
        self._emit_close(info, verdict, now, unfinished=unfinished)
        self.last_close = (now, verdict.key)

    def _emit_close(
        self, info: CloseInfo, verdict: Verdict, now: float, *, unfinished: bool = False
    ) -> None:
        ev = self._event(
            "close",
            now,
            reason=verdict.key,
            category=verdict.category,
            initiator=info.initiator,
            code=info.code,
            text=info.reason,
        )
        if info.transport:
            ev["transport"] = info.transport
        if unfinished:
            # cut short by the run's shutdown deadline before the server answered
            ev["unfinished"] = True
        if verdict.why:
            ev["why"] = verdict.why
        e = info.evidence
        if e is not None and info.cause == ZOMBIE and e.unresponsive_for is not None:
            # how long detection took: from sending the first of the pings
            # that went unanswered to the verdict
            hb_interval = self.shared.profile.heartbeat.interval
            ev["detected_after_s"] = round(e.unresponsive_for, 6)
            ev["detected_after_intervals"] = round(e.unresponsive_for / hb_interval, 3)
        if self.last_close is not None:
            # what came before this connection: a false timeout right after a
            # reconnect points at the reconnect (e.g. a stale server session)
            ev["previous_close"] = {
                "reason": self.last_close[1],
                "ago_s": round(now - self.last_close[0], 6),
            }
        if e is not None:
            ev["evidence"] = {
                "age_s": round(e.age, 6),
                "last_pong_age_s": None if e.last_pong_age is None else round(e.last_pong_age, 6),
                "last_frame_age_s": None
                if e.last_frame_age is None
                else round(e.last_frame_age, 6),
                "consecutive_missed": e.consecutive_missed,
                "pings_pending": e.pings_pending,
                "unresponsive_for_s": None
                if e.unresponsive_for is None
                else round(e.unresponsive_for, 6),
            }
        self.shared.emit(ev)


class _HandshakeIO:
    """A protocol handshake's view of a freshly upgraded connection
    (:class:`soak.protocols.base.HandshakeIO`)."""

    def __init__(self, conn: _Conn, url: str) -> None:
        self.conn = conn
        self.url = url

    async def send_text(self, text: str) -> None:
        await self.conn.send(TextMessage(data=text))

    async def receive_text(self) -> str:
        conn = self.conn
        while True:
            # frames already received come first (some arrive with the
            # upgrade); events() parses lazily, so frames after the one
            # returned stay queued for the live connection
            for event in conn.ws.events():
                if isinstance(event, TextMessage):
                    conn.buffer.append(event.data)
                    if event.message_finished:
                        text = "".join(conn.buffer)
                        conn.buffer.clear()
                        return text
                elif isinstance(event, Ping):
                    await conn.send(event.response())
                elif isinstance(event, CloseConnection):
                    raise self._closed(event)
            data = await conn.stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise HandshakeError("eof", f"{self.url}: connection closed during the handshake")
            conn.ws.receive_data(cast(bytes, data))

    def _closed(self, event: CloseConnection) -> HandshakeError:
        reason = event.reason or ""
        info = CloseInfo(SERVER, event.code, reason)
        shown = f' "{reason}"' if reason else ""
        return HandshakeError(
            f"close_{event.code}",
            f"{self.url}: closed with {event.code}{shown} during the handshake",
            retry_after=retry_hint(info),
        )


def _reset(stream: trio.abc.Stream) -> None:
    """Make the coming close send a TCP RST instead of a FIN (SO_LINGER 0),
    as a crashed client or a dropped NAT mapping looks to the server."""
    sock = getattr(stream, "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already gone: closing is all that is left to do


def _os_cause(exc: BaseException) -> str:
    """A short tag for why a connection could not be opened."""
    if isinstance(exc, BaseExceptionGroup):
        # trio.open_tcp_stream raises OSError("all attempts to connect ...
        # failed") from a group of the per-address errors; the first says why
        return _os_cause(exc.exceptions[0]) if exc.exceptions else "connect_error"
    if not isinstance(exc, OSError):
        return "connect_error"
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "refused"
    if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
        return "timeout"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return "fd_limit"
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EADDRINUSE):  # EADDRINUSE: bind, no NO_PORT
        return "no_ports"
    if exc.__cause__ is not None and exc.__cause__ is not exc:
        return _os_cause(exc.__cause__)
    return "connect_error"


def _describe_os_error(exc: OSError, sh: Shared) -> str:
    """The error as shown and recorded: for descriptors or ports running out,
    the limit, the number needed and the fix (never a bare OSError)."""
    t = sh.profile.target
    host, port = target_address(t)
    return limit_message(
        exc,
        needed=sh.profile.peak_clients,
        target=getattr(exc, "target", None) or f"{host}:{port}",
        sources=t.source_ips,
        targets=max(1, len(t.connect_to)),
    ) or str(exc)


_RETRY_MS = re.compile(r'"retryAfterMs"\s*:\s*(\d+(?:\.\d+)?)')
_RETRY_TEXT = re.compile(r"retry[ _-]?after\D{0,3}(\d+(?:\.\d+)?)\s*(ms|s)?", re.IGNORECASE)


def retry_hint(info: CloseInfo) -> float | None:
    """A server's "come back later" delay, in seconds: close 1013 (try again
    later) whose reason carries ``retryAfterMs`` (OpenClaw's JSON errors) or
    "retry after N[ms|s]". The backoff never retries sooner than this."""
    if info.initiator != SERVER or info.code != 1013 or not info.reason:
        return None
    m = _RETRY_MS.search(info.reason)
    if m:
        return float(m.group(1)) / 1000.0
    m = _RETRY_TEXT.search(info.reason)
    if m:
        value = float(m.group(1))
        return value / 1000.0 if (m.group(2) or "s").lower() == "ms" else value
    return None


def _rejected(url: str, event: RejectConnection) -> HandshakeError:
    retry_after: float | None = None
    for name, value in event.headers:
        if name.lower() == b"retry-after":
            try:
                retry_after = max(0.0, float(value.decode()))
            except ValueError:
                retry_after = None  # an HTTP date; not honoured yet
            if retry_after is not None and not math.isfinite(retry_after):
                retry_after = None
    return HandshakeError(
        f"http_{event.status_code}",
        f"{url}: upgrade rejected with HTTP {event.status_code}",
        retry_after=retry_after,
    )
