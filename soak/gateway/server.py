"""The reference gateway's I/O: raw wsproto on Trio streams.

Why not trio-websocket: it runs extra machinery per connection and costs
about twice the memory, and this gateway must hold ~19,000 connections in
one process. Here each connection is exactly one Trio task that owns its
stream (:mod:`soak.gateway.pump`), and no per-connection lock is needed.

:class:`Gateway` wires one process's parts together and is their public
face: the listener and the heartbeat checker (here), the accepted streams
(:mod:`soak.gateway.accept`), the HTTP routes (:mod:`soak.gateway.routes`),
the open connections (:mod:`soak.gateway.connections`), the fault modes
(:mod:`soak.gateway.faults`) and the counters (:mod:`soak.gateway.counters`).

:meth:`Gateway.restart` (also ``POST /admin/restart?outage=S`` from a
loopback peer) acts out a gateway restart: every client is closed with 1012
"service restart" and, for the outage, new requests get HTTP 503 with
``Retry-After`` (``GET /api/stats`` still answers). It costs the hot path
nothing: connections are told by cancelling their scope, as on expiry.

Every close the gateway makes leaves a ground-truth record
(:mod:`soak.gateway.truth`) in :attr:`Gateway.truth`.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from soak.gateway.accept import Acceptor
from soak.gateway.config import GatewayConfig
from soak.gateway.connections import Connections
from soak.gateway.counters import Counters, stats_document
from soak.gateway.faults import Faults
from soak.gateway.pump import Pump
from soak.gateway.restart import SERVICE_RESTART, SERVICE_RESTART_CODE, Outage
from soak.gateway.routes import Routes
from soak.gateway.truth import TruthLog, TruthRecord

if TYPE_CHECKING:
    from soak.gateway.cluster import Cluster

logger = logging.getLogger(__name__)


class Gateway:
    """One gateway process: its parts, the listener, the checker and restarts.

    ``cluster`` (``soak gateway --workers N``, see :mod:`soak.gateway.cluster`)
    is the shared memory of the other workers, ``worker`` this one's index;
    a gateway of one process has neither.
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
        self.cluster = cluster
        self.counters = Counters()
        faults = Faults(config.bugs, self.counters)
        self.heartbeats = faults.heartbeat_manager(
            config.hb_interval, config.hb_timeout, config.max_missed
        )
        # Opens config.truth_log: raises LocalError if it cannot.
        self._truth_log = TruthLog(config.truth_log, worker=worker)
        self.truth: list[TruthRecord] = self._truth_log.records
        self._conns = Connections(
            self.heartbeats,
            faults,
            self.counters,
            self._truth_log,
            server_ping_interval=config.server_ping_interval,
        )
        self._outage = Outage()
        routes = Routes(
            config,
            self.counters,
            self._outage,
            stats=self._served_stats,
            restart=self._admin_restart,
            workers=None if cluster is None else cluster.workers,
        )
        pump = Pump(
            config, self._conns, self.heartbeats, faults, self.counters, wall_clock=wall_clock
        )
        acceptor = Acceptor(config, self.counters, self._conns, self._outage, routes, pump)
        # Serve one connection (WebSocket or plain HTTP) on any Trio stream;
        # see Acceptor.handle_stream. The acceptor's own method, not a
        # wrapper: a wrapper would be one more coroutine frame per connection.
        self.handle_stream: Callable[[trio.abc.Stream], Awaitable[None]] = acceptor.handle_stream

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

    @property
    def http_requests(self) -> int:
        return self.counters.http_requests

    def gc_pause(self, seconds: float) -> None:
        """Called for every garbage collection (see soak.gcctl)."""
        self.counters.gc_pause(seconds)

    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot of this process, served at ``GET /api/stats``."""
        # The clock is read only once started (stats() works outside a Trio run).
        started = self._conns.started_at
        outage = self._outage
        return stats_document(
            self.counters,
            config=self.config,
            connections=len(self._conns),
            uptime=0.0 if started is None else trio.current_time() - started,
            truth=self._truth_log,
            refusing_for=outage.remaining(trio.current_time()) if outage.begun else None,
        )

    async def _served_stats(self) -> dict[str, Any]:
        """What ``GET /api/stats`` answers: with workers, all of them merged."""
        if self.cluster is None:
            return self.stats()
        return await self.cluster.merged_stats(self.stats)

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
        self._conns.mark_started(trio.current_time())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.run_checker)
            await nursery.start(trio.serve_listeners, self.handle_stream, listeners)
            port: int = listeners[0].socket.getsockname()[1]
            task_status.started(port)

    async def run_checker(self) -> None:
        """Every ``check_every`` seconds, close the connections that expired.

        A check that wakes late by more than a period (at most 1 s) is
        skipped: the gateway itself was stopped (SIGSTOP) or starved, what
        its clients sent meanwhile is still unread in their sockets, and
        judging them now would kill them for the gateway's own silence
        (tests/test_frozen_gateway.py). The next check judges."""
        every = self.config.check_every
        self._conns.mark_started(trio.current_time())
        while True:
            due = trio.current_time() + every
            await trio.sleep_until(due)
            now = trio.current_time()
            late = now - due
            if late > min(every, 1.0):
                logger.warning(
                    "gateway: the heartbeat check woke %.1fs late (was this process stopped?): "
                    "skipped, the next one judges once the connections are read",
                    late,
                )
                continue
            self.check(now)

    def check(self, now: float) -> int:
        """Expire connections at ``now``; returns how many were told to close."""
        return self._conns.check(now)

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
        self.counters.restarts += 1
        self._outage.begin(now, outage)
        closed = self._conns.restart(now)
        logger.info("gateway: restart: %d connections closed, outage %gs", closed, outage)
        return closed

    def _admin_restart(self, outage: float) -> int:
        """``POST /admin/restart``: this process, then every other worker."""
        closed = self.restart(outage)
        if self.cluster is not None:
            # The other workers restart as they get the word; each closes its own.
            self.cluster.broadcast_restart(outage)
        return closed

    def refusing(self, now: float) -> bool:
        """True while a restart's outage lasts at Trio time ``now``. An
        in-memory harness may also refuse its "TCP" connections then."""
        return self._outage.refusing(now)


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


async def serve(
    config: GatewayConfig, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run a fresh :class:`Gateway` for ``config`` until cancelled; see :meth:`Gateway.serve`."""
    with Gateway(config) as gateway:
        await gateway.serve(task_status=task_status)


__all__ = ["SERVICE_RESTART", "SERVICE_RESTART_CODE", "Gateway", "GatewayConfig", "serve"]
