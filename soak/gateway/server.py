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
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

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
from soak.gateway.config import GatewayConfig
from soak.gateway.heartbeat import HeartbeatManager

logger = logging.getLogger(__name__)

# Heartbeat messages are ~100 bytes. A small receive size avoids allocating
# (and then shrinking) trio's default 64 KiB buffer on every read of the hot
# path, while still taking a burst of a hundred queued pings in one read.
RECEIVE_BYTES = 16 * 1024

# Bound on a text message reassembled from fragments. Anything longer cannot
# be a heartbeat; it is counted as "other" and its bytes are not kept.
MAX_TEXT_CHARS = 64 * 1024

GOING_AWAY = 1001

# Compact separators; building the encoder once keeps json from constructing
# a new JSONEncoder for every pong.
_encode_json = json.JSONEncoder(separators=(",", ":")).encode


class _Conn:
    """One open WebSocket connection, owned by exactly one task."""

    __slots__ = ("conn_id", "frag", "frag_chars", "next_ping", "scope", "sending", "stream", "ws")

    def __init__(self, conn_id: int, stream: trio.abc.Stream, ws: Connection) -> None:
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


class Gateway:
    """Connection state and counters for one gateway process.

    Counters are plain ints read by :meth:`stats`; only the Trio run's own
    thread touches them, so no locking.
    """

    def __init__(
        self, config: GatewayConfig, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        # serverTime in pongs is wall-clock epoch ms, as the incident's clients
        # expect; injectable so tests can pin it. All timing uses Trio's clock.
        self._wall_clock = wall_clock
        self.heartbeats = HeartbeatManager(config.hb_interval, config.hb_timeout, config.max_missed)
        self._conns: dict[int, _Conn] = {}
        self._next_id = 0
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
        }

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
        listeners = await trio.open_tcp_listeners(cfg.port, host=cfg.host, backlog=cfg.backlog)
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
            self.heartbeats.remove(expiry.conn_id)
            conn = self._conns.get(expiry.conn_id)
            if conn is not None:
                conn.scope.cancel()
                count += 1
        return count

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
        ws = await self._handshake(stream)
        if ws is not None:
            await self._serve_websocket(stream, ws)

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
        if head.path != b"/api/stats":
            reply = http.response(404, b"not found\n")
        elif head.method != b"GET":
            reply = http.response(405, b"method not allowed\n")
        else:
            body = json.dumps(self.stats()).encode()
            reply = http.response(200, body, b"application/json")
        await stream.send_all(reply)

    # ---- one WebSocket connection --------------------------------------

    async def _serve_websocket(self, stream: trio.abc.Stream, ws: Connection) -> None:
        conn = self._open(stream, ws)
        reason: str | None = None
        try:
            with conn.scope:
                reason = await self._pump(conn)
            if conn.scope.cancelled_caught:
                reason = "heartbeat_timeout"
                cfg = self.config
                await self._close(conn, cfg.timeout_close_code, cfg.timeout_close_reason)
        except trio.Cancelled:
            # A cancel from outside conn.scope means whoever owns this task
            # (serve()'s nursery) is shutting down: tell the client so.
            if reason is None:
                reason = "server_shutdown"
            with trio.CancelScope(shield=True):
                await self._close(conn, GOING_AWAY, "going away")
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if reason is None:
                reason = "transport_lost"
        except Exception:
            reason = "internal_error"
            raise
        finally:
            self._release(conn, reason or "transport_lost")

    def _open(self, stream: trio.abc.Stream, ws: Connection) -> _Conn:
        conn_id = self._next_id
        self._next_id += 1
        conn = _Conn(conn_id, stream, ws)
        now = trio.current_time()
        if self.config.server_ping_interval is not None:
            conn.next_ping = now + self.config.server_ping_interval
        self._conns[conn_id] = conn
        self.heartbeats.add(conn_id, now)
        self.accepted_total += 1
        return conn

    def _release(self, conn: _Conn, reason: str) -> None:
        del self._conns[conn.conn_id]
        self.heartbeats.remove(conn.conn_id)
        self.closes_by_reason[reason] += 1

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
        while True:
            out = b""
            for event in ws.events():
                if isinstance(event, TextMessage):
                    reply = self._on_text(conn, event)
                    if reply is not None:
                        out += ws.send(TextMessage(data=reply))
                elif isinstance(event, Ping):
                    self.ws_pings_received += 1
                    self.heartbeats.beat(conn.conn_id, trio.current_time())
                    out += ws.send(event.response())
                elif isinstance(event, Pong):
                    self.ws_pongs_received += 1
                    self.heartbeats.beat(conn.conn_id, trio.current_time())
                elif isinstance(event, BytesMessage):
                    if event.message_finished:
                        self.messages_other += 1
                elif isinstance(event, CloseConnection):
                    return await self._on_close(conn, event, out)
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

    def _on_text(self, conn: _Conn, event: TextMessage) -> str | None:
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
        self.heartbeats.beat(conn.conn_id, trio.current_time())
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

    async def _on_close(self, conn: _Conn, event: CloseConnection, pending: bytes) -> str:
        ws = conn.ws
        self.heartbeats.remove(conn.conn_id)
        if ws.state is ConnectionState.REMOTE_CLOSING:
            # The client closed: answer its close frame (RFC 6455 5.5.1). It
            # meant to close even if it hangs up before our answer arrives.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._send(conn, pending + ws.send(event.response()))
            return f"client_{int(event.code)}"
        # wsproto reports a frame it could not parse as a CloseConnection
        # while still OPEN; we are the side that closes, with its code.
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
        self.heartbeats.remove(conn.conn_id)
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


async def serve(
    config: GatewayConfig, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run a fresh :class:`Gateway` for ``config`` until cancelled; see :meth:`Gateway.serve`."""
    await Gateway(config).serve(task_status=task_status)


__all__ = ["Gateway", "GatewayConfig", "serve"]
