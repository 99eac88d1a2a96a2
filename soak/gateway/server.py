"""The reference gateway's I/O: raw wsproto on Trio streams.

Why not trio-websocket: it runs extra machinery per connection and costs
about twice the memory, and this gateway must hold ~19,000 connections in
one process. Here each connection is exactly one Trio task that owns its
stream; nothing else ever sends on it, so no per-connection lock is needed.
Other tasks (the heartbeat checker) act on a connection only by cancelling
its :class:`trio.CancelScope`; the connection task then sends the close frame
itself.

After the opening handshake the task keeps only wsproto's low-level
:class:`wsproto.connection.Connection` and drops the h11 handshake state that
:class:`wsproto.WSConnection` would otherwise hold for the connection's life.

Wire protocols served on every connection:

1. JSON heartbeat (the incident's fix): text
   ``{"type":"ping","timestamp":..,"clientId":..,"seq":..}`` is answered at
   once with ``{"type":"pong",<same three>,"serverTime":<epoch ms>}``.
2. RFC 6455 ping frames, answered with a pong carrying the same payload.
   Pongs from the client (to ``server_ping_interval`` pings, or unsolicited,
   which RFC 6455 section 5.5.3 allows) also count as heartbeats.

:meth:`Gateway.restart` (also ``POST /admin/restart?outage=S`` from a
loopback peer) acts out a gateway restart: every client is closed with 1012
"service restart" and, for the outage, new requests get HTTP 503 with
``Retry-After`` (``GET /api/stats`` still answers). It costs the hot path
nothing: connections are told by cancelling their scope, as on expiry.

Fault modes (``GatewayConfig.bugs``, see :mod:`soak.gateway.bugs`) replay the
incident's bugs. With none enabled, answering a heartbeat costs what it did
before they existed: one attribute test (``conn.tamper``) decides that no bug
applies to the connection, and the per-client session table of
``stale-session`` does not exist. Every close the gateway makes leaves a
ground-truth record (:mod:`soak.gateway.truth`) in :attr:`Gateway.truth`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import socket
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from soak.gateway import http
from soak.gateway.bugs import DropHeartbeat, IgnoreMaxMissed, NoPong, StaleSession
from soak.gateway.config import MAX_OUTAGE, GatewayConfig
from soak.gateway.heartbeat import Expiry, HeartbeatManager, IncidentHeartbeatManager
from soak.gateway.truth import HEARTBEAT_TIMEOUT, TruthLog, TruthRecord

if TYPE_CHECKING:
    from soak.gateway.cluster import Cluster

logger = logging.getLogger(__name__)

# Heartbeat messages are ~100 bytes. A small receive size avoids allocating
# (and then shrinking) trio's default 64 KiB buffer on every read of the hot
# path, while still taking a burst of a hundred queued pings in one read.
RECEIVE_BYTES = 16 * 1024

# Bound on a text message reassembled from fragments. Anything longer cannot
# be a heartbeat; it is counted as "other" and its bytes are not kept.
MAX_TEXT_CHARS = 64 * 1024

GOING_AWAY = 1001

# Gateway.restart: what a real gateway restart looks like to its clients.
SERVICE_RESTART = "service_restart"
SERVICE_RESTART_CODE = 1012  # RFC 6455 / IANA: "Service Restart"
SERVICE_RESTART_REASON = "service restart"
# The admin endpoint that triggers it (outages are bounded by config.MAX_OUTAGE).
ADMIN_RESTART_PATH = b"/admin/restart"

# Compact separators; building the encoder once keeps json from constructing
# a new JSONEncoder for every pong.
_encode_json = json.JSONEncoder(separators=(",", ":")).encode


class _Conn:
    """One open WebSocket connection, owned by exactly one task."""

    __slots__ = (
        "beat_key",
        "beats_seen",
        "client_id",
        "conn_id",
        "expiry",
        "frag",
        "frag_chars",
        "last_frame",
        "muted",
        "next_ping",
        "restarting",
        "scope",
        "sending",
        "stream",
        "tamper",
        "ws",
    )

    def __init__(
        self, conn_id: int, stream: trio.abc.Stream, ws: Connection, opened_at: float
    ) -> None:
        # The connection's number: 1-based, in the order connections opened.
        self.conn_id = conn_id
        self.stream = stream
        self.ws = ws
        # Cancelled by the checker when the heartbeat manager expires us.
        self.scope = trio.CancelScope()
        # True while a send_all is in flight. If a cancel lands mid-send, an
        # unknown prefix of the bytes went out, so no close frame may follow.
        self.sending = False
        # Fragments of a text message that has not finished yet.
        self.frag: list[str] | None = None
        self.frag_chars = 0
        self.next_ping = math.inf
        # The clientId of the first JSON ping that carried one.
        self.client_id: str | int | None = None
        # The heartbeat manager's key that this connection's beats are
        # recorded against: its own id, unless stale-session attached it to
        # an older connection's session.
        self.beat_key = conn_id
        # When a frame last truly arrived (the ground truth; opening counts).
        self.last_frame = opened_at
        # True while a bug may alter this connection's heartbeats; the hot
        # path tests only this.
        self.tamper = False
        # no-pong: this connection's heartbeats are counted but not answered.
        self.muted = False
        # drop-heartbeat: heartbeats seen so far (counted only while tampering).
        self.beats_seen = 0
        # Set by Gateway.check: (when, what) the heartbeat manager expired.
        self.expiry: tuple[float, Expiry] | None = None
        # Set by Gateway.restart: close with 1012 "service restart".
        self.restarting = False


class _Session:
    """stale-session: one clientId's heartbeat state, never cleaned up.

    ``owner`` is the first connection that carried the clientId; its beats are
    the session's. ``last_beat`` is the owner's last beat, kept when the
    heartbeat manager stopped tracking the owner.
    """

    __slots__ = ("last_beat", "owner")

    def __init__(self, owner: int) -> None:
        self.owner = owner
        self.last_beat: float | None = None


class Gateway:
    """Connection state and counters for one gateway process.

    Counters are plain ints read by :meth:`stats`; only the Trio run's own
    thread touches them, so no locking.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        wall_clock: Callable[[], float] = time.time,
        cluster: Cluster | None = None,
        worker: int | None = None,
    ) -> None:
        self.config = config
        # soak gateway --workers N: the other workers (see soak.gateway.cluster);
        # None for a gateway of one process, which then behaves as it always did.
        self.cluster = cluster
        # serverTime in pongs is wall-clock epoch ms, as the incident's clients
        # expect; injectable so tests can pin it. All timing uses Trio's clock.
        self._wall_clock = wall_clock
        bugs = {type(bug): bug for bug in config.bugs}
        manager = IncidentHeartbeatManager if IgnoreMaxMissed in bugs else HeartbeatManager
        self.heartbeats = manager(config.hb_interval, config.hb_timeout, config.max_missed)
        no_pong = bugs.get(NoPong)
        self._no_pong = no_pong if isinstance(no_pong, NoPong) else None
        drop = bugs.get(DropHeartbeat)
        self._drop_nth = drop.n if isinstance(drop, DropHeartbeat) else 0
        # stale-session only: clientId -> the session it inherits.
        self._sessions: dict[str | int, _Session] | None = {} if StaleSession in bugs else None
        self._truth_log = TruthLog(config.truth_log, worker=worker)
        self.truth: list[TruthRecord] = self._truth_log.records
        self._conns: dict[int, _Conn] = {}
        self._next_id = 1
        self._started_at: float | None = None
        self.accepted_total = 0
        self.closes_by_reason: Counter[str] = Counter()
        self.pings_received = 0
        self.pongs_sent = 0
        self.ws_pings_received = 0
        self.ws_pongs_received = 0
        self.server_pings_sent = 0
        self.messages_other = 0
        self.messages_malformed = 0
        self.http_requests = 0
        self.handshake_failures = 0
        self.internal_errors = 0
        self.gc_collections = 0
        self.gc_pause_max = 0.0
        self.pongs_withheld = 0
        self.heartbeats_dropped = 0
        self.stale_sessions_inherited = 0
        # Gateway.restart: new connections are refused until this Trio time.
        self._refusing_until = -math.inf
        self.restarts = 0
        self.refused_during_restart = 0

    def close(self) -> None:
        """Close the truth log file, if any. The in-memory records stay."""
        self._truth_log.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- stats ---------------------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    def gc_pause(self, seconds: float) -> None:
        """Called for every garbage collection (see soak.gcctl): a pause here
        delays every pong, so the stats show it next to the latency."""
        self.gc_collections += 1
        self.gc_pause_max = max(self.gc_pause_max, seconds)

    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot, served at ``GET /api/stats``."""
        uptime = 0.0 if self._started_at is None else trio.current_time() - self._started_at
        cfg = self.config
        return {
            "connections": len(self._conns),
            "accepted_total": self.accepted_total,
            "closes_by_reason": dict(self.closes_by_reason),
            "pings_received": self.pings_received,
            "pongs_sent": self.pongs_sent,
            "ws_pings_received": self.ws_pings_received,
            "ws_pongs_received": self.ws_pongs_received,
            "server_pings_sent": self.server_pings_sent,
            "messages_other": self.messages_other,
            "messages_malformed": self.messages_malformed,
            "http_requests": self.http_requests,
            "handshake_failures": self.handshake_failures,
            "internal_errors": self.internal_errors,
            "gc_collections": self.gc_collections,
            "gc_pause_max_ms": round(self.gc_pause_max * 1000, 3),
            "uptime_s": round(uptime, 3),
            "heartbeat": {
                "interval": cfg.hb_interval,
                "timeout": cfg.hb_timeout,
                "max_missed": cfg.max_missed,
            },
            "bugs": cfg.bug_names,
            "false_kills": self._truth_log.false_kills,
            "truth_records": len(self.truth),
            "truth_log_write_errors": self._truth_log.write_errors,
            "pongs_withheld": self.pongs_withheld,
            "heartbeats_dropped": self.heartbeats_dropped,
            "stale_sessions_inherited": self.stale_sessions_inherited,
            "restarts": self.restarts,
            "refusing_until": self._remaining_outage(),
            "refused_during_restart": self.refused_during_restart,
        }

    def _remaining_outage(self) -> float | None:
        """Seconds the current restart outage has left, or None if there is none."""
        if self._refusing_until == -math.inf:
            return None
        remaining = self._refusing_until - trio.current_time()
        return round(remaining, 3) if remaining > 0 else None

    def _mark_started(self) -> None:
        if self._started_at is None:
            self._started_at = trio.current_time()

    # ---- serving -------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on ``config.host:config.port`` until cancelled.

        Reports the bound port with ``task_status.started(port)``. The checker
        and every connection task live in this function's nursery; cancelling
        it closes each connection with 1001 "going away".
        """
        cfg = self.config
        if self.cluster is None:
            listeners = await trio.open_tcp_listeners(cfg.port, host=cfg.host, backlog=cfg.backlog)
        else:
            listeners = [reuse_port_listener(cfg.host, cfg.port, cfg.backlog)]
        self._mark_started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.run_checker)
            await nursery.start(trio.serve_listeners, self.handle_stream, listeners)
            port: int = listeners[0].socket.getsockname()[1]
            task_status.started(port)

    async def run_checker(self) -> None:
        """Every ``check_every`` seconds, close the connections that expired."""
        self._mark_started()
        while True:
            await trio.sleep(self.config.check_every)
            self.check(trio.current_time())

    def check(self, now: float) -> int:
        """Expire connections at ``now``; returns how many were told to close."""
        count = 0
        for expiry in self.heartbeats.expired(now):
            # Remove first: the connection task may take a while to close and
            # must not be reported again at the next check.
            self._untrack(expiry.conn_id)
            conn = self._conns.get(expiry.conn_id)
            if conn is not None:
                conn.expiry = (now, expiry)
                conn.scope.cancel()
                count += 1
        return count

    # ---- restart -------------------------------------------------------

    def restart(self, outage: float) -> int:
        """Act out a gateway restart, as clients see one; returns how many
        connections it closes.

        Every open WebSocket connection is closed with 1012 "service restart"
        (close frame, bounded wait for the answer, then the socket closed,
        like the 1001 of a shutdown), and for ``outage`` seconds of Trio time
        new connections are refused: an upgrade, or any HTTP request but
        ``GET /api/stats`` and the admin endpoint, gets ``503`` with
        ``Retry-After``. A restart during an outage closes everyone again and
        extends the outage if it ends later. Synchronous: call it from any task
        of the gateway's Trio run; the connection tasks do the closing.
        """
        if not (math.isfinite(outage) and outage >= 0):
            raise ValueError(f"outage: expected seconds >= 0, got {outage!r}")
        now = trio.current_time()
        self.restarts += 1
        self._refusing_until = max(self._refusing_until, now + outage)
        closed = 0
        for conn in list(self._conns.values()):
            if self._restart_conn(conn, now):
                closed += 1
        logger.info("gateway: restart: %d connections closed, outage %gs", closed, outage)
        return closed

    def _restart_conn(self, conn: _Conn, now: float) -> bool:
        """Tell one connection's task to close with 1012; False if it is
        already closing (expired, or in a closing handshake)."""
        state = conn.ws.state
        if conn.scope.cancel_called or state is not ConnectionState.OPEN:
            return False
        # Recorded now, at the restart instant, while the heartbeat manager
        # still knows the connection's last beat.
        self._record_close(conn, SERVICE_RESTART, SERVICE_RESTART_CODE, now)
        self._untrack(conn.conn_id)
        conn.restarting = True
        conn.scope.cancel()
        return True

    def refusing(self, now: float) -> bool:
        """True while a restart's outage lasts at Trio time ``now``. An
        in-memory harness may also refuse its "TCP" connections then."""
        return now < self._refusing_until

    def _refusal(self, now: float) -> bytes:
        """The 503 that a request gets during a restart's outage."""
        self.refused_during_restart += 1
        retry_after = max(1, math.ceil(self._refusing_until - now))
        return http.response(
            503, b"service restarting\n", headers=[(b"Retry-After", b"%d" % retry_after)]
        )

    def _untrack(self, conn_id: int) -> None:
        """Stop the heartbeat manager tracking a connection (stale-session:
        keep its last beat in the session it owns, for whoever reconnects)."""
        last = self.heartbeats.remove(conn_id)
        if last is None or self._sessions is None:
            return
        conn = self._conns.get(conn_id)
        if conn is None or conn.client_id is None:
            return
        session = self._sessions.get(conn.client_id)
        if session is not None and session.owner == conn_id:
            session.last_beat = last

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one connection (WebSocket or plain HTTP) on any Trio stream.

        Never raises except :class:`trio.Cancelled`: one broken connection
        must not take the other 19,000 down with it.
        """
        self._mark_started()
        try:
            await self._dispatch(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # Lost before the WebSocket was open (after, _serve_websocket
            # accounts for it as a close).
            self.handshake_failures += 1
        except Exception:
            # Our bug, not the peer's: log it (rare, so logging is cheap) and
            # keep serving everyone else. Not silent: it is counted in stats.
            self.internal_errors += 1
            logger.exception("gateway: connection handler failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _dispatch(self, stream: trio.abc.Stream) -> None:
        # A restart kills every connection it finds, even one still in its
        # handshake: if one came meanwhile, this connection (unless refused
        # with 503) closes with 1012 as soon as it opens.
        restarts = self.restarts
        ws = await self._handshake(stream)
        if ws is not None:
            await self._serve_websocket(stream, ws, restarted=self.restarts != restarts)

    async def _handshake(self, stream: trio.abc.Stream) -> Connection | None:
        """Read the request head and answer it. Returns the open WebSocket, or
        None once a plain HTTP request has been answered or refused.

        A separate function so that the head buffer and wsproto's h11
        handshake state die when it returns, instead of living in a caller's
        frame for the connection's whole life (measured: ~1.5 KB each).
        """
        buf = await self._read_head(stream)
        if buf is None:
            self.handshake_failures += 1
            return None
        head = http.parse_request_head(buf)
        if head is None:
            self.handshake_failures += 1
            await stream.send_all(http.response(400, b"bad request\n"))
            return None
        if not head.wants_websocket:
            await self._answer_http(stream, head)
            return None
        now = trio.current_time()
        if now < self._refusing_until:
            await stream.send_all(self._refusal(now))
            return None
        # Only the head goes through wsproto's handshake: on the server side
        # wsproto 1.3 drops whatever followed the head (it hands trailing data
        # to the new Connection only on the client side). A GET upgrade has no
        # body, so every byte after the head is already WebSocket frames.
        head_len = buf.find(http.HEAD_END) + len(http.HEAD_END)
        handshake = WSConnection(ConnectionType.SERVER)
        try:
            handshake.receive_data(bytes(buf[:head_len]))
            request = next((e for e in handshake.events() if isinstance(e, Request)), None)
        except RemoteProtocolError:
            request = None
        if request is None:
            self.handshake_failures += 1
            await stream.send_all(http.response(400, b"bad websocket handshake\n"))
            return None
        reply = handshake.send(AcceptConnection())
        ws = handshake.connection  # created by wsproto when the accept was sent
        assert ws is not None
        if head_len < len(buf):
            ws.receive_data(bytes(buf[head_len:]))
        await stream.send_all(reply)
        return ws

    async def _read_head(self, stream: trio.abc.Stream) -> bytearray | None:
        """The request head plus any bytes after it; None if the client went
        away, was slower than ``handshake_timeout`` or sent too much."""
        buf = bytearray()
        with trio.move_on_after(self.config.handshake_timeout):
            while len(buf) <= http.MAX_HEAD_BYTES:
                chunk = await stream.receive_some(RECEIVE_BYTES)
                if not chunk:
                    return None
                scan_from = len(buf)
                buf += chunk
                if http.head_complete(buf, scan_from):
                    return buf
        return None

    async def _answer_http(self, stream: trio.abc.Stream, head: http.RequestHead) -> None:
        self.http_requests += 1
        if head.path == ADMIN_RESTART_PATH and self.config.admin:
            reply = self._admin_restart(stream, head)
        elif head.path == b"/api/stats":
            # Served during a restart's outage too: operators poll it.
            if head.method != b"GET":
                reply = http.response(405, b"method not allowed\n", headers=[(b"Allow", b"GET")])
            else:
                if self.cluster is None:
                    stats = self.stats()
                else:
                    stats = await self.cluster.merged_stats(self)
                body = json.dumps(stats).encode()
                reply = http.response(200, body, b"application/json")
        elif (now := trio.current_time()) < self._refusing_until:
            reply = self._refusal(now)
        else:
            reply = http.response(404, b"not found\n")
        await stream.send_all(reply)

    def _admin_restart(self, stream: trio.abc.Stream, head: http.RequestHead) -> bytes:
        """``POST /admin/restart?outage=SECONDS``: loopback peers only."""
        if not _from_loopback(stream):
            return http.response(403, b"admin endpoint: loopback clients only\n")
        if head.method != b"POST":
            return http.response(405, b"admin endpoint: use POST\n", headers=[(b"Allow", b"POST")])
        outage = _parse_outage(head.query, self.config.restart_outage)
        if isinstance(outage, str):
            return http.response(400, outage.encode() + b"\n")
        closed = self.restart(outage)
        body: dict[str, Any] = {
            "restarting": True,
            "outage_s": outage,
            "connections_closed": closed,
        }
        if self.cluster is not None:
            # The other workers restart as they get the word; each closes its own.
            self.cluster.broadcast_restart(outage)
            body["workers"] = self.cluster.workers
        return http.response(202, json.dumps(body).encode(), b"application/json")

    # ---- one WebSocket connection --------------------------------------

    async def _serve_websocket(
        self, stream: trio.abc.Stream, ws: Connection, *, restarted: bool = False
    ) -> None:
        conn = self._open(stream, ws)
        if restarted:
            self._restart_conn(conn, trio.current_time())
        reason: str | None = None
        try:
            with conn.scope:
                reason = await self._pump(conn)
            if conn.scope.cancelled_caught and conn.restarting:
                reason = SERVICE_RESTART  # recorded by _restart_conn
                await self._close(conn, SERVICE_RESTART_CODE, SERVICE_RESTART_REASON)
            elif conn.scope.cancelled_caught:
                reason = HEARTBEAT_TIMEOUT
                cfg = self.config
                if conn.expiry is not None:
                    at, expiry = conn.expiry
                    self._record_close(conn, reason, cfg.timeout_close_code, at, expiry)
                else:  # only check() and restart() cancel conn.scope; defensive
                    self._record_close(conn, reason, cfg.timeout_close_code, trio.current_time())
                await self._close(conn, cfg.timeout_close_code, cfg.timeout_close_reason)
        except trio.Cancelled:
            # A cancel from outside conn.scope means whoever owns this task
            # (serve()'s nursery) is shutting down: tell the client so.
            if reason is None:
                reason = "server_shutdown"
                self._record_close(conn, reason, GOING_AWAY, trio.current_time())
            with trio.CancelScope(shield=True):
                await self._close(conn, GOING_AWAY, "going away")
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if reason is None:
                reason = "transport_lost"
        except Exception:
            if reason is None:
                # The stream is dropped without a close frame.
                self._record_close(conn, "internal_error", None, trio.current_time())
            reason = "internal_error"
            raise
        finally:
            self._release(conn, reason or "transport_lost")

    def _open(self, stream: trio.abc.Stream, ws: Connection) -> _Conn:
        conn_id = self._next_id
        self._next_id += 1
        now = trio.current_time()
        conn = _Conn(conn_id, stream, ws, now)
        if self.config.server_ping_interval is not None:
            conn.next_ping = now + self.config.server_ping_interval
        if self._no_pong is not None and self._no_pong.affects(conn_id):
            conn.muted = True
        conn.tamper = conn.muted or self._drop_nth > 0
        self._conns[conn_id] = conn
        self.heartbeats.add(conn_id, now)
        self.accepted_total += 1
        return conn

    def _release(self, conn: _Conn, reason: str) -> None:
        self._untrack(conn.conn_id)
        del self._conns[conn.conn_id]
        self.closes_by_reason[reason] += 1

    def _record_close(
        self,
        conn: _Conn,
        reason: str,
        code: int | None,
        now: float,
        expiry: Expiry | None = None,
    ) -> None:
        """Write the ground truth about a close the gateway is making at ``now``."""
        hb = self.heartbeats
        last_beat_age: float | None
        missed: int | None
        if expiry is not None:
            last_beat_age, missed = expiry.last_beat_age, expiry.missed
        else:
            last = hb.last_beat(conn.conn_id)
            last_beat_age = None if last is None else now - last
            missed = None if last_beat_age is None else hb.missed(last_beat_age)
        frame_age = now - conn.last_frame
        started = now if self._started_at is None else self._started_at
        self._truth_log.add(
            {
                "t": round(now - started, 6),
                "conn": conn.conn_id,
                "client_id": conn.client_id,
                "reason": reason,
                "code": code,
                "last_beat_age": None if last_beat_age is None else round(last_beat_age, 6),
                "last_frame_age": round(frame_age, 6),
                "missed": missed,
                "truly_alive": not hb.fixed_rule(frame_age),
            }
        )

    def _tamper(self, conn: _Conn) -> bool | None:
        """What the bugs do to this heartbeat of ``conn`` (one with ``tamper``
        set): None to ignore it entirely (drop-heartbeat), False to count it
        without answering (no-pong), True to handle it normally."""
        drop_nth = self._drop_nth
        if drop_nth:
            conn.beats_seen += 1
            if conn.beats_seen >= drop_nth:
                conn.tamper = conn.muted  # past the N-th: only no-pong may still apply
                if conn.beats_seen == drop_nth:
                    self.heartbeats_dropped += 1
                    return None
        return not conn.muted

    def _identify(self, conn: _Conn, client_id: object) -> None:
        """The connection's first JSON ping with a clientId (a string or an
        integer). With stale-session, a clientId that an earlier connection
        carried attaches this connection to that connection's session."""
        if type(client_id) is not str and type(client_id) is not int:
            return  # absent, or nothing to key a session on: ask again next ping
        conn.client_id = client_id
        sessions = self._sessions
        if sessions is None:
            return
        session = sessions.get(client_id)
        if session is None:
            sessions[client_id] = _Session(conn.conn_id)
            return
        if session.owner == conn.conn_id or conn.conn_id not in self.heartbeats:
            return
        inherited = self.heartbeats.last_beat(session.owner)
        if inherited is None:
            inherited = session.last_beat
        if inherited is None:
            return
        # The bug: the new connection takes over the old session's heartbeat
        # state, and its beats go on being recorded against the old id.
        self.heartbeats.add(conn.conn_id, inherited)
        conn.beat_key = session.owner
        self.stale_sessions_inherited += 1

    async def _send(self, conn: _Conn, data: bytes) -> None:
        # A cancel that is already pending (shutdown, expiry) is delivered
        # here, before any byte goes out, so the close frame can still follow.
        # Without this, send_all's own first checkpoint raises it with
        # `sending` already set, and a busy client would lose its close code.
        await trio.lowlevel.checkpoint_if_cancelled()
        conn.sending = True
        await conn.stream.send_all(data)
        conn.sending = False

    async def _pump(self, conn: _Conn) -> str:
        """Answer heartbeats until the connection ends; returns the close reason.

        Always drains: a server that stops reading stops seeing pings and
        then times out live clients, which is the bug under test.
        """
        stream, ws = conn.stream, conn.ws
        ping_every = self.config.server_ping_interval
        data: bytes | bytearray | None
        # When the bytes being parsed arrived: first those that came right
        # behind the request head (at opening), then each read's.
        now = conn.last_frame
        while True:
            out = b""
            for event in ws.events():
                conn.last_frame = now
                if isinstance(event, TextMessage):
                    reply = self._on_text(conn, event, now)
                    if reply is not None:
                        out += ws.send(TextMessage(data=reply))
                elif isinstance(event, Ping):
                    self.ws_pings_received += 1
                    answer: bool | None = True
                    if conn.tamper:
                        answer = self._tamper(conn)
                        if answer is None:
                            continue
                    self.heartbeats.beat(conn.beat_key, now)
                    if answer:
                        out += ws.send(event.response())
                    else:
                        self.pongs_withheld += 1
                elif isinstance(event, Pong):
                    self.ws_pongs_received += 1
                    if conn.tamper and self._tamper(conn) is None:
                        continue
                    self.heartbeats.beat(conn.beat_key, now)
                elif isinstance(event, BytesMessage):
                    if event.message_finished:
                        self.messages_other += 1
                elif isinstance(event, CloseConnection):
                    return await self._on_close(conn, event, out, now)
            if out:
                await self._send(conn, out)

            if ping_every is None:
                data = await stream.receive_some(RECEIVE_BYTES)
            else:
                data = None
                with trio.move_on_at(conn.next_ping):
                    data = await stream.receive_some(RECEIVE_BYTES)
                if data is None:
                    await self._send_server_ping(conn, ping_every)
                    continue
            if not data:
                return "transport_lost"
            now = trio.current_time()
            # wsproto's typing says bytes, but its buffer takes any bytes-like;
            # bytes(data) would copy every read on the hot path.
            ws.receive_data(cast("bytes", data))

    async def _send_server_ping(self, conn: _Conn, ping_every: float) -> None:
        self.server_pings_sent += 1
        conn.next_ping += ping_every
        now = trio.current_time()
        if conn.next_ping <= now:
            # We fell behind (a stalled process); skip, do not burst.
            conn.next_ping = now + ping_every
        await self._send(conn, conn.ws.send(Ping(payload=b"%d" % self.server_pings_sent)))

    def _on_text(self, conn: _Conn, event: TextMessage, now: float) -> str | None:
        """Handle a text message (or fragment); returns the pong to send, if any."""
        if conn.frag is not None or not event.message_finished:
            # Fragmented (or split across reads): reassemble, within a bound.
            if conn.frag is None:
                conn.frag, conn.frag_chars = [], 0
            conn.frag_chars += len(event.data)
            if conn.frag_chars <= MAX_TEXT_CHARS:
                conn.frag.append(event.data)
            if not event.message_finished:
                return None
            too_long = conn.frag_chars > MAX_TEXT_CHARS
            text = "".join(conn.frag)
            conn.frag = None
            if too_long:
                self.messages_other += 1
                return None
        else:
            text = event.data
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            self.messages_malformed += 1
            return None
        if type(msg) is not dict or msg.get("type") != "ping":
            self.messages_other += 1
            return None
        self.pings_received += 1
        if conn.client_id is None:
            # Even from a heartbeat drop-heartbeat ignores: that is about the
            # beat; who the client is still shows in the truth log.
            self._identify(conn, msg.get("clientId"))
        answer: bool | None = True
        if conn.tamper:
            answer = self._tamper(conn)
            if answer is None:
                return None
        self.heartbeats.beat(conn.beat_key, now)
        if not answer:
            self.pongs_withheld += 1
            return None
        self.pongs_sent += 1
        return _encode_json(
            {
                "type": "pong",
                "timestamp": msg.get("timestamp"),
                "clientId": msg.get("clientId"),
                "seq": msg.get("seq"),
                "serverTime": int(self._wall_clock() * 1000),
            }
        )

    async def _on_close(
        self, conn: _Conn, event: CloseConnection, pending: bytes, now: float
    ) -> str:
        ws = conn.ws
        if ws.state is ConnectionState.REMOTE_CLOSING:
            self._untrack(conn.conn_id)
            # The client closed: answer its close frame (RFC 6455 5.5.1). It
            # meant to close even if it hangs up before our answer arrives.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._send(conn, pending + ws.send(event.response()))
            return f"client_{int(event.code)}"
        # wsproto reports a frame it could not parse as a CloseConnection
        # while still OPEN; we are the side that closes, with its code.
        self._record_close(conn, "protocol_error", int(event.code), now)
        self._untrack(conn.conn_id)
        if pending:
            await self._send(conn, pending)
        await self._close(conn, event.code, event.reason or "")
        return "protocol_error"

    async def _close(self, conn: _Conn, code: int, reason: str) -> None:
        """Send our close frame, then wait (bounded) for the peer's answer.

        The stream itself is closed by :meth:`handle_stream`, after the close
        has been counted, so stats are final once a peer sees EOF.

        Waiting matters: closing TCP while the peer's data sits unread in our
        receive buffer makes the kernel send RST, and an RST can destroy our
        close frame in the peer's buffer before the peer reads it. The soak
        client classifies closes by code, so the code must arrive.
        """
        self._untrack(conn.conn_id)
        ws = conn.ws
        try:
            with trio.move_on_after(self.config.close_wait):
                state = ws.state  # a local, so mypy does not narrow ws.state below
                if conn.sending or state is not ConnectionState.OPEN:
                    return
                await self._send(conn, ws.send(CloseConnection(code=code, reason=reason)))
                while ws.state is ConnectionState.LOCAL_CLOSING:
                    data = await conn.stream.receive_some(RECEIVE_BYTES)
                    if not data:
                        return
                    ws.receive_data(cast("bytes", data))
                    for _ in ws.events():
                        pass  # only the state change to CLOSED matters now
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # best effort: the peer is already gone


def reuse_port_listener(host: str, port: int, backlog: int) -> trio.SocketListener:
    """A listener on ``host:port`` (its first address) with SO_REUSEPORT, so
    that several worker processes share the port (see soak.gateway.cluster)."""
    family, kind, proto, _name, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


def _parse_outage(query: bytes, default: float) -> float | str:
    """The admin endpoint's ``outage`` (seconds), or an error message."""
    try:
        params = urllib.parse.parse_qs(
            query.decode("ascii"), keep_blank_values=True, strict_parsing=bool(query)
        )
    except (UnicodeDecodeError, ValueError):
        return f"admin endpoint: cannot parse the query string {query!r}"
    unknown = sorted(set(params) - {"outage"})
    if unknown:
        return f"admin endpoint: unknown parameter(s) {', '.join(unknown)}; expected outage"
    values = params.get("outage", [])
    if len(values) > 1:
        return "admin endpoint: outage: given more than once"
    if not values:
        return default
    text = values[0]
    try:
        outage = float(text)
    except ValueError:
        outage = math.nan
    if not (math.isfinite(outage) and 0 <= outage <= MAX_OUTAGE):
        return f"admin endpoint: outage: expected seconds in 0..{MAX_OUTAGE:g}, got {text!r}"
    return outage


def _from_loopback(stream: trio.abc.Stream) -> bool:
    """True unless ``stream`` is a socket whose peer is not on loopback
    (127.0.0.0/8, ::1, or either as an IPv4-mapped IPv6 address). Streams
    with no socket (in-memory, in tests) and Unix sockets count as local."""
    inner: object = stream
    while not isinstance(inner, trio.SocketStream):
        inner = getattr(inner, "transport_stream", None)  # e.g. trio.SSLStream
        if inner is None:
            return True
    sock = inner.socket
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return True
    try:
        host = sock.getpeername()[0]
    except OSError:
        return False  # peer gone: not provably local
    return is_loopback_address(host)


def is_loopback_address(host: str) -> bool:
    """127.0.0.0/8, ::1, or either as an IPv4-mapped IPv6 address."""
    try:
        addr = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False  # unparsable: not provably local
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


async def serve(
    config: GatewayConfig, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run a fresh :class:`Gateway` for ``config`` until cancelled; see :meth:`Gateway.serve`."""
    with Gateway(config) as gateway:
        await gateway.serve(task_status=task_status)


__all__ = ["SERVICE_RESTART", "SERVICE_RESTART_CODE", "Gateway", "GatewayConfig", "serve"]
