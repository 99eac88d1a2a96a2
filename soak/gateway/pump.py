"""One open WebSocket connection's task: answer heartbeats, then close it.

Each connection is exactly one Trio task that owns its stream; nothing else
ever sends on it. Other tasks (the checker, a restart) act on it only by
cancelling its scope (see :mod:`soak.gateway.connections`), and this task
then sends the close frame itself. It keeps only wsproto's low-level
:class:`wsproto.connection.Connection`: the h11 handshake state died with
the handshake (:mod:`soak.gateway.accept`).

Wire protocols served on every connection:

1. JSON heartbeat (the incident's fix): text
   ``{"type":"ping","timestamp":..,"clientId":..,"seq":..}`` is answered at
   once with ``{"type":"pong",<same three>,"serverTime":<epoch ms>}``.
2. RFC 6455 ping frames, answered with a pong carrying the same payload.
   Pongs from the client (to ``server_ping_interval`` pings, or unsolicited,
   which RFC 6455 section 5.5.3 allows) also count as heartbeats.

All three kinds of heartbeat take one path through :meth:`Pump._pump`, the
only place that asks the fault modes (:class:`soak.gateway.faults.Faults`)
what to do with one. This is the gateway's hot path (thousands of heartbeats
a second): everything it calls per message is bound to a local once per
connection, and with no bug enabled the faults cost one attribute test.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any, cast

import trio
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from soak.gateway.config import GatewayConfig
from soak.gateway.connections import Conn, Connections
from soak.gateway.counters import Counters
from soak.gateway.faults import ANSWER, WITHHOLD, Faults
from soak.gateway.heartbeat import HeartbeatManager
from soak.gateway.restart import SERVICE_RESTART, SERVICE_RESTART_CODE, SERVICE_RESTART_REASON
from soak.gateway.truth import HEARTBEAT_TIMEOUT

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


class Pump:
    """Serves every WebSocket connection of one gateway, one task each."""

    def __init__(
        self,
        config: GatewayConfig,
        conns: Connections,
        heartbeats: HeartbeatManager,
        faults: Faults,
        counters: Counters,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._conns = conns
        self._heartbeats = heartbeats
        self._faults = faults
        self._counters = counters
        # serverTime in pongs is wall-clock epoch ms, as the incident's clients
        # expect; injectable so tests can pin it. All timing uses Trio's clock.
        self._wall_clock = wall_clock

    async def serve(
        self, stream: trio.abc.Stream, ws: Connection, *, restarted: bool = False
    ) -> None:
        """Serve one open WebSocket until it ends, close it, and count the
        close. ``restarted``: a restart came during its handshake, so it is
        closed with 1012 at once."""
        conn = self._conns.open(stream, ws, trio.current_time())
        if restarted:
            self._conns.restart_one(conn, trio.current_time())
        reason: str | None = None
        try:
            with conn.scope:
                reason = await self._pump(conn)
            if conn.scope.cancelled_caught and conn.restarting:
                reason = SERVICE_RESTART  # recorded by Connections.restart_one
                await self._close(conn, SERVICE_RESTART_CODE, SERVICE_RESTART_REASON)
            elif conn.scope.cancelled_caught:
                reason = HEARTBEAT_TIMEOUT
                cfg = self._config
                if conn.expiry is not None:
                    at, expiry = conn.expiry
                    self._conns.record_close(conn, reason, cfg.timeout_close_code, at, expiry)
                else:  # only check() and restart() cancel conn.scope; defensive
                    self._conns.record_close(
                        conn, reason, cfg.timeout_close_code, trio.current_time()
                    )
                await self._close(conn, cfg.timeout_close_code, cfg.timeout_close_reason)
        except trio.Cancelled:
            # A cancel from outside conn.scope means whoever owns this task
            # (serve()'s nursery) is shutting down: tell the client so.
            if reason is None:
                reason = "server_shutdown"
                self._conns.record_close(conn, reason, GOING_AWAY, trio.current_time())
            with trio.CancelScope(shield=True):
                await self._close(conn, GOING_AWAY, "going away")
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if reason is None:
                reason = "transport_lost"
        except Exception:
            if reason is None:
                # The stream is dropped without a close frame.
                self._conns.record_close(conn, "internal_error", None, trio.current_time())
            reason = "internal_error"
            raise
        finally:
            self._conns.release(conn, reason or "transport_lost")

    async def _send(self, conn: Conn, data: bytes) -> None:
        # A cancel that is already pending (shutdown, expiry) is delivered
        # here, before any byte goes out, so the close frame can still follow.
        # Without this, send_all's own first checkpoint raises it with
        # `sending` already set, and a busy client would lose its close code.
        await trio.lowlevel.checkpoint_if_cancelled()
        conn.sending = True
        await conn.stream.send_all(data)
        conn.sending = False

    async def _pump(self, conn: Conn) -> str:
        """Answer heartbeats until the connection ends; returns the close reason.

        Always drains: a server that stops reading stops seeing pings and
        then times out live clients, which is the bug under test.
        """
        # Bound once per connection: the objects used per message, not their
        # methods (a bound method held for the connection's life costs memory
        # per connection; a method call on a local allocates nothing). The
        # faults are asked only on a bug's connections: not worth a local.
        stream, ws = conn.stream, conn.ws
        counters, heartbeats = self._counters, self._heartbeats
        ping_every = self._config.server_ping_interval
        data: bytes | bytearray | None
        # What a heartbeat would be answered with: a JSON ping's message, an
        # RFC 6455 ping, or None for a pong (which answers nothing).
        reply_to: dict[str, Any] | Ping | None
        # When the bytes being parsed arrived: first those that came right
        # behind the request head (at opening), then each read's.
        now = conn.last_frame
        while True:
            out = b""
            for event in ws.events():
                conn.last_frame = now
                if isinstance(event, TextMessage):
                    reply_to = self._ping_of(conn, event)
                    if reply_to is None:
                        continue  # not a heartbeat, or not a whole message yet
                elif isinstance(event, Ping):
                    counters.ws_pings_received += 1
                    reply_to = event
                elif isinstance(event, Pong):
                    counters.ws_pongs_received += 1
                    reply_to = None
                elif isinstance(event, CloseConnection):
                    return await self._on_close(conn, event, out, now)
                else:
                    if isinstance(event, BytesMessage) and event.message_finished:
                        counters.messages_other += 1
                    continue
                # A heartbeat, of any kind. Only a connection a bug applies to
                # asks the faults; WITHHOLD records the beat, DROP does not.
                if conn.tamper and (action := self._faults.on_heartbeat(conn)) != ANSWER:
                    if action == WITHHOLD:
                        heartbeats.beat(conn.beat_key, now)
                        if reply_to is not None:
                            counters.pongs_withheld += 1
                    continue
                heartbeats.beat(conn.beat_key, now)
                if reply_to is None:
                    continue
                if isinstance(reply_to, Ping):
                    out += ws.send(reply_to.response())
                else:
                    counters.pongs_sent += 1
                    reply = _encode_json(
                        {
                            "type": "pong",
                            "timestamp": reply_to.get("timestamp"),
                            "clientId": reply_to.get("clientId"),
                            "seq": reply_to.get("seq"),
                            "serverTime": int(self._wall_clock() * 1000),
                        }
                    )
                    out += ws.send(TextMessage(data=reply))
            # Not kept while the connection waits for its next read: a parsed
            # ping is about half a KiB, times every idle connection.
            reply_to = None
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

    async def _send_server_ping(self, conn: Conn, ping_every: float) -> None:
        counters = self._counters
        counters.server_pings_sent += 1
        conn.next_ping += ping_every
        now = trio.current_time()
        if conn.next_ping <= now:
            # We fell behind (a stalled process); skip, do not burst.
            conn.next_ping = now + ping_every
        await self._send(conn, conn.ws.send(Ping(payload=b"%d" % counters.server_pings_sent)))

    def _ping_of(self, conn: Conn, event: TextMessage) -> dict[str, Any] | None:
        """A text message (or fragment): the JSON ping it completes, counted,
        or None (counted as malformed or other, or a fragment kept)."""
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
                self._counters.messages_other += 1
                return None
        else:
            text = event.data
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
            self._counters.messages_malformed += 1
            return None
        if type(msg) is not dict or msg.get("type") != "ping":
            self._counters.messages_other += 1
            return None
        self._counters.pings_received += 1
        if conn.client_id is None:
            # Even from a heartbeat drop-heartbeat ignores: that is about the
            # beat; who the client is still shows in the truth log.
            self._identify(conn, msg.get("clientId"))
        return msg

    def _identify(self, conn: Conn, client_id: object) -> None:
        """The connection's first JSON ping with a clientId (a string or an
        integer) names its client (and, with stale-session, may attach it to
        an earlier connection's session)."""
        if type(client_id) is not str and type(client_id) is not int:
            return  # absent, or nothing to key a session on: ask again next ping
        conn.client_id = client_id
        self._faults.on_identified(conn, client_id, self._heartbeats)

    async def _on_close(
        self, conn: Conn, event: CloseConnection, pending: bytes, now: float
    ) -> str:
        ws = conn.ws
        if ws.state is ConnectionState.REMOTE_CLOSING:
            self._conns.untrack(conn.conn_id)
            # The client closed: answer its close frame (RFC 6455 5.5.1). It
            # meant to close even if it hangs up before our answer arrives.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._send(conn, pending + ws.send(event.response()))
            return f"client_{int(event.code)}"
        # wsproto reports a frame it could not parse as a CloseConnection
        # while still OPEN; we are the side that closes, with its code.
        self._conns.record_close(conn, "protocol_error", int(event.code), now)
        self._conns.untrack(conn.conn_id)
        if pending:
            await self._send(conn, pending)
        await self._close(conn, event.code, event.reason or "")
        return "protocol_error"

    async def _close(self, conn: Conn, code: int, reason: str) -> None:
        """Send our close frame, then wait (bounded) for the peer's answer.

        The stream itself is closed by whoever accepted it
        (:meth:`soak.gateway.accept.Acceptor.handle_stream`), after the close
        has been counted, so stats are final once a peer sees EOF.

        Waiting matters: closing TCP while the peer's data sits unread in our
        receive buffer makes the kernel send RST, and an RST can destroy our
        close frame in the peer's buffer before the peer reads it. The soak
        client classifies closes by code, so the code must arrive.
        """
        self._conns.untrack(conn.conn_id)
        ws = conn.ws
        try:
            with trio.move_on_after(self._config.close_wait):
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


__all__ = ["GOING_AWAY", "MAX_TEXT_CHARS", "RECEIVE_BYTES", "Pump"]
