"""I/O: the load source of clients in this process (a single-process run,
and each worker process of a multi-process one).

It opens and closes :class:`~soak.client.Client` tasks as the schedule
says, churns and storm-drops connections chosen at random (from the run's
seeded generator), puts soak's impairment proxy between the clients and
the target when the profile asks for one, and at the end closes every
connection with 1001, waiting for the close handshakes a bounded time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing

from soak.classify import CHURN, SCALE_DOWN, SHUTDOWN, STORM_DROP, STORM_RESET
from soak.client import CLOSE_WAIT, Client, OpenStream, target_address, url_opener
from soak.config.impairment import Impairment
from soak.config.stages import Storm
from soak.metrics import Interval
from soak.proxy.server import Proxy
from soak.recorder import rss_bytes
from soak.run.source import RunContext


class LocalClients:
    """Clients in this process. ``real_sockets``: the clients dial the
    target (False: tests' in-memory streams, which the impairment proxy
    then serves in memory too)."""

    def __init__(self, *, real_sockets: bool = True) -> None:
        self.real_sockets = real_sockets
        self.clients: list[Client] = []
        self._churned = 0
        self._run: RunContext | None = None
        self._crowd: trio.Nursery | None = None

    @property
    def run(self) -> RunContext:
        assert self._run is not None, "LocalClients.start() first"
        return self._run

    def manifest(self) -> dict[str, Any]:
        return {}

    async def start(self, run: RunContext, nursery: trio.Nursery) -> None:
        self._run = run
        impairment = run.profile.impairment
        if impairment is not None:
            run.shared.services.open_stream = await self._impair(nursery, impairment, run.t0)

    async def drive(self, control: Callable[[], Awaitable[str]]) -> None:
        async with trio.open_nursery() as crowd:
            self._crowd = crowd
            await control()
            # the shutdown's closes are the run's, not outages
            self.run.shared.gauges.seconds.stop(trio.current_time())
            self._close_all(crowd)

    # -- following the schedule ------------------------------------------------------

    def follow(self, t: float) -> None:
        schedule = self.run.schedule
        self._apply_target(schedule.target(t))
        self._churn(schedule.churned_by(t))

    def _apply_target(self, target: int) -> None:
        assert self._crowd is not None
        clients = self.clients
        shared = self.run.shared
        while len(clients) < target:
            client = Client(shared, len(clients), self._phase(len(clients)))
            clients.append(client)
            self._crowd.start_soon(client.run)
        while len(clients) > target:
            clients.pop().request_close(1000, "scale down", SCALE_DOWN)
        shared.gauges.seconds.target(trio.current_time(), len(clients))

    def _phase(self, index: int) -> float:
        run = self.run
        hb = run.profile.heartbeat
        if hb.phase in ("aligned", "connect"):
            return 0.0  # connect: the grid starts at each connection instead
        if hb.phase == "random":
            return run.rng.random() * hb.interval
        peak = max(1, run.schedule.peak)
        return (index % peak) / peak * hb.interval

    def _churn(self, due_total: int) -> None:
        n = due_total - self._churned
        if n <= 0:
            return
        self._churned = due_total
        live = [c for c in self.clients if c.connected]
        for client in self.run.rng.sample(live, min(n, len(live))):
            client.request_close(1000, "churn", CHURN)

    def storm(self, stage: Storm) -> None:
        if not stage.drop:
            return
        live = [c for c in self.clients if c.connected]
        cause = STORM_RESET if stage.how == "abrupt" else STORM_DROP
        for client in self.run.rng.sample(live, round(stage.drop * len(live))):
            client.request_close(1001, "storm drop", cause)

    def over(self) -> str | None:
        known = self.run.shared.services.permanence.known
        if known is None or not all(c.finished for c in self.clients):
            return None
        return f"every client stopped after a permanent refusal: {known}"

    def storm_tick(self, now: float) -> None:
        self.run.shared.services.storm_tick(now)

    # -- intervals and status ----------------------------------------------------------

    async def gather(self, at: float) -> None:
        """Nothing to wait for: the clients count into the run's metrics."""

    def gauges(self, iv: Interval) -> None:
        shared = self.run.shared
        iv.connected = shared.gauges.connected
        iv.connecting = shared.gauges.connecting
        iv.target = len(self.clients)
        iv.rss_bytes = rss_bytes()

    def rotated(self) -> None:
        pass  # the clients already count into the new interval

    def status(self, elapsed: float) -> dict[str, Any]:
        run = self.run
        metrics = run.metrics
        cur = metrics.current
        rtt = cur.hist["rtt"]
        loop = cur.hist["loop_lag"]
        so_far = metrics.so_far
        return {
            "connected": run.shared.gauges.connected,
            "connecting": run.shared.gauges.connecting,
            "target": len(self.clients),
            "pongs": cur.counts["pongs"],
            "interval_elapsed": max(1e-9, elapsed - cur.start),
            "rtt_p50_ms": rtt.get_value_at_percentile(50.0) / 1000.0 if rtt.total_count else None,
            "rtt_p99_ms": rtt.get_value_at_percentile(99.0) / 1000.0 if rtt.total_count else None,
            "missed": so_far("missed"),
            "zombies": so_far("zombies"),
            "false_timeouts": so_far("false_timeouts"),
            "reconnects": so_far("reconnects"),
            "handshake_failures": so_far("handshake_failure_total"),
            "loop_lag_max_ms": loop.get_max_value() / 1000.0 if loop.total_count else 0.0,
            "gave_up": run.shared.gauges.gave_up,
        }

    # -- the end -----------------------------------------------------------------------

    def _close_all(self, crowd: trio.Nursery) -> None:
        """Close every connection with 1001. The crowd nursery then waits
        for the clients, but only for a bounded time."""
        for client in self.clients:
            client.request_close(1001, "going away", SHUTDOWN)
        crowd.cancel_scope.deadline = trio.current_time() + CLOSE_WAIT + 1.0

    def abort(self) -> None:
        pass  # the Runner's abort scope cancels the clients

    def reap(self) -> None:
        pass  # every client task has ended with the crowd nursery

    def protocol_summary(self) -> dict[str, Any] | None:
        protocol_summary = getattr(self.run.shared.services.protocol_state, "summary", None)
        if callable(protocol_summary):
            result: dict[str, Any] = protocol_summary()
            return result
        return None

    def checks(self) -> list[dict[str, Any]]:
        return []

    def summary(self) -> dict[str, Any]:
        return {}

    # -- impairment ----------------------------------------------------------------------

    async def _impair(self, nursery: trio.Nursery, settings: Impairment, t0: float) -> OpenStream:
        """Put soak's impairment proxy between the clients and the target.
        Every impairment it applies goes into events.jsonl, next to its effect."""
        run = self.run
        sink = run.sink

        def record(event: dict[str, Any]) -> None:
            sink.event({"event": "impairment", **event})

        target = run.profile.target
        config = dataclasses.replace(settings.proxy_config(), heartbeat_dialect=target.protocol)
        proxy = Proxy(config, on_event=record, start=t0)
        if self.real_sockets:
            host, port = target_address(target)
            listen = await nursery.start(proxy.serve, "127.0.0.1", 0, host, port)
            return url_opener(target, connect_to=("127.0.0.1", listen))
        inner = run.shared.services.open_stream  # tests: the proxy works on in-memory streams too

        async def through_proxy() -> trio.abc.Stream:
            client_side, proxy_side = trio.testing.memory_stream_pair()
            nursery.start_soon(proxy.handle, proxy_side, inner)
            return client_side

        return through_proxy
