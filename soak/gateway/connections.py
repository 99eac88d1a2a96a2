"""The gateway's open WebSocket connections, and the truth about each close.

:class:`Connections` numbers connections as they open, tells them to close
(:meth:`~Connections.check` on heartbeat expiry, :meth:`~Connections.restart`
for a simulated restart) and writes the ground-truth record of every close
the gateway makes (:mod:`soak.gateway.truth`). It never sends anything: each
connection is owned by one task (:mod:`soak.gateway.pump`), and other tasks
act on it only by cancelling its :class:`trio.CancelScope`; the owning task
then sends the close frame itself, so no per-connection lock is needed.
"""

from __future__ import annotations

import math

import trio
from wsproto.connection import Connection, ConnectionState

from soak.gateway.counters import Counters
from soak.gateway.faults import Faults
from soak.gateway.heartbeat import Expiry, HeartbeatManager
from soak.gateway.restart import SERVICE_RESTART, SERVICE_RESTART_CODE
from soak.gateway.truth import TruthLog


class Conn:
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
        # path tests only this (see soak.gateway.faults).
        self.tamper = False
        # no-pong: this connection's heartbeats are counted but not answered.
        self.muted = False
        # drop-heartbeat: heartbeats seen so far (counted only while tampering).
        self.beats_seen = 0
        # Set by Connections.check: (when, what) the heartbeat manager expired.
        self.expiry: tuple[float, Expiry] | None = None
        # Set by Connections.restart: close with 1012 "service restart".
        self.restarting = False


class Connections:
    """The open connections of one gateway process, by number."""

    def __init__(
        self,
        heartbeats: HeartbeatManager,
        faults: Faults,
        counters: Counters,
        truth: TruthLog,
        *,
        server_ping_interval: float | None = None,
    ) -> None:
        self.heartbeats = heartbeats
        self._faults = faults
        self._counters = counters
        self._truth = truth
        self._server_ping_interval = server_ping_interval
        self._conns: dict[int, Conn] = {}
        self._next_id = 1
        # Trio time the gateway started (the origin of the truth log's "t").
        self.started_at: float | None = None

    def __len__(self) -> int:
        return len(self._conns)

    def mark_started(self, now: float) -> None:
        """The gateway started at ``now``, unless it already had."""
        if self.started_at is None:
            self.started_at = now

    def open(self, stream: trio.abc.Stream, ws: Connection, now: float) -> Conn:
        """Number a connection that just opened at ``now``, and track it."""
        conn_id = self._next_id
        self._next_id += 1
        conn = Conn(conn_id, stream, ws, now)
        if self._server_ping_interval is not None:
            conn.next_ping = now + self._server_ping_interval
        self._faults.on_open(conn)
        self._conns[conn_id] = conn
        self.heartbeats.add(conn_id, now)
        self._counters.accepted_total += 1
        return conn

    def release(self, conn: Conn, reason: str) -> None:
        """``conn`` is closed, for ``reason`` (counted in ``closes_by_reason``)."""
        self.untrack(conn.conn_id)
        del self._conns[conn.conn_id]
        self._counters.closes_by_reason[reason] += 1

    def untrack(self, conn_id: int) -> None:
        """Stop the heartbeat manager tracking a connection (it is closing)."""
        last = self.heartbeats.remove(conn_id)
        if last is not None:
            self._faults.on_untracked(self._conns.get(conn_id), last)

    def check(self, now: float) -> int:
        """Expire connections at ``now``; returns how many were told to close."""
        count = 0
        for expiry in self.heartbeats.expired(now):
            # Remove first: the connection task may take a while to close and
            # must not be reported again at the next check.
            self.untrack(expiry.conn_id)
            conn = self._conns.get(expiry.conn_id)
            if conn is not None:
                conn.expiry = (now, expiry)
                conn.scope.cancel()
                count += 1
        return count

    def restart(self, now: float) -> int:
        """Tell every open connection to close with 1012 (a restart at
        ``now``); returns how many were told."""
        closed = 0
        for conn in list(self._conns.values()):
            if self.restart_one(conn, now):
                closed += 1
        return closed

    def restart_one(self, conn: Conn, now: float) -> bool:
        """Tell one connection's task to close with 1012; False if it is
        already closing (expired, or in a closing handshake)."""
        state = conn.ws.state
        if conn.scope.cancel_called or state is not ConnectionState.OPEN:
            return False
        # Recorded now, at the restart instant, while the heartbeat manager
        # still knows the connection's last beat.
        self.record_close(conn, SERVICE_RESTART, SERVICE_RESTART_CODE, now)
        self.untrack(conn.conn_id)
        conn.restarting = True
        conn.scope.cancel()
        return True

    def record_close(
        self,
        conn: Conn,
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
        started = now if self.started_at is None else self.started_at
        self._truth.add(
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


__all__ = ["Conn", "Connections"]
