"""I/O: one run of a profile. A nursery of clients driven by the schedule.

The controller wakes when something is due (a ramp step, a churn step, an
interval boundary, a status refresh, the end of a stage) and otherwise
sleeps, so a simulated 24-hour hold under ``MockClock`` costs a few thousand
wake-ups, not millions.

The tester measures itself: a probe task records how late the event loop
wakes it (``loop_lag``), each heartbeat records its own send lateness
(``lag``), and the garbage collector's pauses are timed. CALIBRATION.md found
the collector to be the main source of false latency, so the runner takes
control of it (see soak.gcctl): freeze at start and each time another
1,000 clients have connected, and raise the young-generation threshold so
collections are rare and short.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import random
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
import trio.testing

from soak import __version__
from soak.classify import CHURN, SCALE_DOWN, SHUTDOWN, STORM_DROP, STORM_RESET
from soak.client import CLOSE_WAIT, Client, OpenStream, Shared, target_address, url_opener
from soak.gcctl import GcControl, GrowthFreezer
from soak.metrics import Interval, Metrics
from soak.profile import Impairment, Profile, Stage
from soak.proxy.config import build_config
from soak.proxy.server import Proxy
from soak.reconcile import Drift, Poller, StatsError, display_url, fetch_json
from soak.recorder import Recorder, iso, rss_bytes
from soak.schedule import Schedule
from soak.summary import (
    EXIT_OK,
    exit_code,
    latencies,
    totals,
    verdicts,
)

RAMP_STEP = 0.1  # seconds between controller wake-ups while the count moves


@dataclass
class Outcome:
    status: str  # completed, interrupted, terminated, aborted
    exit_code: int
    summary: dict[str, Any]


class Runner:
    def __init__(
        self,
        profile: Profile,
        recorder: Recorder,
        *,
        open_stream: OpenStream | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
        on_interval: Callable[[dict[str, Any]], None] | None = None,
        status_every: float = 1.0,
        lag_probe: float | None = 0.02,
        manage_gc: bool = True,
        signals: bool = False,
        argv: list[str] | None = None,
        origin_monotonic: float | None = None,
    ) -> None:
        self.profile = profile
        self.recorder = recorder
        self.open_stream = open_stream or url_opener(profile.target)
        self._real_sockets = open_stream is None
        self.on_status = on_status
        self.on_interval = on_interval
        self.status_every = status_every
        self.lag_probe = lag_probe
        self.manage_gc = manage_gc
        self.signals = signals
        self.argv = argv  # the command line, for the manifest (None: library use)
        # the run's start as a time.monotonic() instant (worker processes:
        # CLOCK_MONOTONIC is system-wide, so all of a run's processes share
        # interval boundaries); None: now
        self.origin_monotonic = origin_monotonic
        self.schedule = Schedule(profile.clients.stages)
        self.metrics = Metrics()
        self.rng = random.Random(profile.run.seed)
        self.clients: list[Client] = []
        self.status = "running"
        self._wake: trio.CancelScope | None = None
        self._abort: trio.CancelScope | None = None
        self._churned = 0
        self._stormed: set[float] = set()  # start times of storm stages already fired
        self._outer: trio.Nursery | None = None
        self._t0 = 0.0
        self._gc: GcControl | None = None
        self.manifest: dict[str, Any] = {}
        stats = profile.target.stats
        if stats is not None:
            # at most half an interval per poll: a hung stats endpoint can
            # delay an interval's line, but never push the controller behind
            # its boundaries
            every = profile.run.report_interval
            stats = dataclasses.replace(stats, timeout=min(stats.timeout, every / 2))
        self.poller = Poller(stats) if stats is not None else None
        self.drift = Drift()
        self._final_stats: dict[str, Any] | None = None

    # -- control from outside ------------------------------------------------------

    def stop(self, status: str) -> None:
        """End the run early but cleanly: close every client with 1001 and
        write everything. A second call aborts at once."""
        if self.status != "running":
            self.abort()
            return
        self.status = status
        if self._wake is not None:
            self._wake.cancel()

    def abort(self) -> None:
        self.status = "aborted"
        if self._abort is not None:
            self._abort.cancel()

    # -- the run -----------------------------------------------------------------------

    def _origin(self) -> float:
        """The run's start in trio time."""
        now = trio.current_time()
        if self.origin_monotonic is None:
            return now
        return now + (self.origin_monotonic - time.monotonic())

    def _make_shared(self, t0: float) -> Shared:
        shared = Shared(
            self.profile,
            self.metrics,
            self.open_stream,
            self.recorder.event,
            t0=t0,
            wall0=self.recorder.wall0,
            rng=self.rng,
        )
        self.shared = shared
        return shared

    async def run(self) -> Outcome:
        p = self.profile
        self._t0 = t0 = self._origin()
        wall0 = self.recorder.wall0
        shared = self._make_shared(t0)
        self.manifest = self._manifest(wall0)
        self.recorder.write_json("run.json", self.manifest)
        gc_ctl = GcControl(self.metrics.gc_pause) if self.manage_gc else None
        try:
            if gc_ctl is not None:
                gc_ctl.__enter__()
                self._gc = gc_ctl
            with trio.CancelScope() as abort_scope:
                self._abort = abort_scope
                async with trio.open_nursery() as outer:
                    self._outer = outer
                    if p.impairment is not None:
                        shared.open_stream = await self._impair(outer, p.impairment, t0)
                    if self.signals:
                        outer.start_soon(self._watch_signals)
                    if self.lag_probe:
                        outer.start_soon(self._probe_loop_lag, self.lag_probe)
                    async with trio.open_nursery() as crowd:
                        await self._control(crowd, t0)
                        self._close_all(crowd)
                    outer.cancel_scope.cancel()
        finally:
            if gc_ctl is not None:
                gc_ctl.__exit__()
            outcome = self._finish(trio.current_time())
        return outcome

    async def _control(self, crowd: trio.Nursery, t0: float) -> None:
        p = self.profile
        every = p.run.report_interval
        end = t0 + p.duration
        next_interval = t0 + every
        next_status = t0 + self.status_every if self.on_status else math.inf
        freezer = GrowthFreezer(self._gc) if self._gc is not None else None
        while self.status == "running":
            now = trio.current_time()
            t = now - t0
            if now >= end:
                break
            why = self._over()
            if why is not None:
                self.recorder.event({"t": round(t, 6), "event": "run_ended_early", "why": why})
                break
            self._apply_target(crowd, self.schedule.target(t))
            self._churn(self.schedule.churned_by(t))
            seg = self.schedule.segment_at(t)
            if seg is not None and seg.stage.kind == "storm" and seg.start not in self._stormed:
                self._stormed.add(seg.start)
                self._storm(seg.stage)
            if freezer is not None:
                freezer.observe(self.shared.connected)
            self._storm_tick(now)
            while now >= next_interval:
                # close the interval at its boundary, then poll the server's
                # count (if any): samples that arrive meanwhile belong to the
                # next interval
                await self._gather(next_interval)
                iv = self._close_interval(next_interval)
                stats = await self._reconcile() if self.poller is not None else None
                self._write_interval(iv, stats)
                next_interval += every
            if now >= next_status:
                self._status(now)
                next_status = now + self.status_every
            wake = min(end, next_interval, next_status)
            if now < t0:
                wake = min(wake, t0)  # a worker process started before the run's origin
            if seg is not None:
                if seg.stage.kind in ("ramp", "churn"):
                    wake = min(wake, now + RAMP_STEP)
                wake = min(wake, t0 + seg.end)
            with trio.move_on_at(wake) as scope:
                self._wake = scope
                await trio.sleep_forever()
            self._wake = None
        if self.poller is not None:
            # the last (partial) interval is written by _finish, which must
            # not await: poll for it now, before the clients are closed
            self._final_stats = await self._reconcile()

    def _over(self) -> str | None:
        """Why the run cannot go on, or None: once a refusal is known to be
        permanent (a wrong token) and every client has stopped, the rest of
        the schedule would measure nothing."""
        known = self.shared.permanence.known
        if known is None or not all(c.finished for c in self.clients):
            return None
        return f"every client stopped after a permanent refusal: {known}"

    def _storm_tick(self, now: float) -> None:
        self.shared.storm_tick(now)

    async def _gather(self, at: float) -> None:
        """Before the interval ending ``at`` is closed: nothing to wait for
        here (worker processes: their reports of it, see soak.workers)."""

    async def _reconcile(self) -> dict[str, Any]:
        """The server's count next to ours, for one interval record. Takes
        at most the stats timeout and never raises for remote problems."""
        assert self.poller is not None
        server, warning = await self.poller.poll()
        client = self.shared.connected  # read when the answer came, next to the server's
        gap = self.drift.observe(trio.current_time() - self._t0, client, server)
        return {
            "server_connections": server,
            "client_connections": client,
            "connection_gap": gap,
            "stats_warning": warning,
        }

    def _apply_target(self, crowd: trio.Nursery, target: int) -> None:
        clients = self.clients
        while len(clients) < target:
            client = Client(self.shared, len(clients), self._phase(len(clients)))
            clients.append(client)
            crowd.start_soon(client.run)
        while len(clients) > target:
            clients.pop().request_close(1000, "scale down", SCALE_DOWN)

    def _phase(self, index: int) -> float:
        hb = self.profile.heartbeat
        if hb.phase in ("aligned", "connect"):
            return 0.0  # connect: the grid starts at each connection instead
        if hb.phase == "random":
            return self.rng.random() * hb.interval
        peak = max(1, self.schedule.peak)
        return (index % peak) / peak * hb.interval

    def _churn(self, due_total: int) -> None:
        n = due_total - self._churned
        if n <= 0:
            return
        self._churned = due_total
        live = [c for c in self.clients if c.connected]
        for client in self.rng.sample(live, min(n, len(live))):
            client.request_close(1000, "churn", CHURN)

    async def _impair(self, nursery: trio.Nursery, settings: Impairment, t0: float) -> OpenStream:
        """Put soak's impairment proxy between the clients and the target.
        Every impairment it applies goes into events.jsonl, next to its effect."""

        def record(event: dict[str, Any]) -> None:
            self.recorder.event({"event": "impairment", **event})

        proxy = Proxy(build_config(**dataclasses.asdict(settings)), on_event=record, start=t0)
        if self._real_sockets:
            host, port = target_address(self.profile.target)
            listen = await nursery.start(proxy.serve, "127.0.0.1", 0, host, port)
            return url_opener(self.profile.target, connect_to=("127.0.0.1", listen))
        inner = self.open_stream  # tests: the proxy works on in-memory streams too

        async def through_proxy() -> trio.abc.Stream:
            client_side, proxy_side = trio.testing.memory_stream_pair()
            nursery.start_soon(proxy.handle, proxy_side, inner)
            return client_side

        return through_proxy

    def _storm(self, stage: Stage) -> None:
        """A storm stage begins: drop clients, run the command, ask the
        gateway to restart; whatever the stage says, all at once."""
        now = trio.current_time()
        self.recorder.event(
            {
                "t": round(now - self._t0, 6),
                "event": "storm_stage",
                "drop": stage.drop,
                "how": stage.how,
                "command": stage.command,
                "restart_url": None
                if stage.restart_url is None
                else display_url(stage.restart_url),
            }
        )
        if stage.drop:
            live = [c for c in self.clients if c.connected]
            cause = STORM_RESET if stage.how == "abrupt" else STORM_DROP
            for client in self.rng.sample(live, round(stage.drop * len(live))):
                client.request_close(1001, "storm drop", cause)
        assert self._outer is not None
        if stage.command is not None:
            self._outer.start_soon(self._storm_command, stage)
        if stage.restart_url is not None:
            self._outer.start_soon(self._storm_restart, stage.restart_url)

    async def _storm_command(self, stage: Stage) -> None:
        """Run a storm's command; its outcome and output go to events.jsonl.
        A command that fails or hangs (past the stage's command_timeout) is
        recorded, never fatal to the run."""
        command = stage.command or ""
        limit = stage.command_timeout
        started = trio.current_time()
        ev: dict[str, Any] = {
            "t": round(started - self._t0, 6),
            "event": "storm_command",
            "command": command,
        }
        with trio.move_on_after(limit) as scope:
            try:
                proc = await trio.run_process(
                    ["/bin/sh", "-c", command],
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
            except OSError as exc:
                ev["error"] = str(exc)
            else:
                ev["exit_code"] = proc.returncode
                ev["stdout"] = proc.stdout.decode(errors="replace")[-4096:]
                ev["stderr"] = proc.stderr.decode(errors="replace")[-4096:]
        if scope.cancelled_caught:
            ev["error"] = f"timed out after {limit:g}s and was killed"
        ev["duration_s"] = round(trio.current_time() - started, 6)
        self.recorder.event(ev)

    async def _storm_restart(self, url: str) -> None:
        ev: dict[str, Any] = {
            "t": round(trio.current_time() - self._t0, 6),
            "event": "storm_restart",
            "url": display_url(url),
        }
        try:
            with trio.fail_after(10):
                ev["response"] = await fetch_json(url, method="POST")
        except trio.TooSlowError:
            ev["error"] = "no answer within 10s"
        except StatsError as exc:
            ev["error"] = str(exc)
        self.recorder.event(ev)

    def _close_all(self, crowd: trio.Nursery) -> None:
        """Close every connection with 1001. The crowd nursery then waits
        for the clients, but only for a bounded time."""
        if self._gc is not None:
            self._gc.quiet()
        for client in self.clients:
            client.request_close(1001, "going away", SHUTDOWN)
        crowd.cancel_scope.deadline = trio.current_time() + CLOSE_WAIT + 1.0

    async def _probe_loop_lag(self, period: float) -> None:
        record = self.metrics.record
        while True:
            expected = trio.current_time() + period
            await trio.sleep_until(expected)
            record("loop_lag", trio.current_time() - expected)

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                self.stop("interrupted" if signum == signal.SIGINT else "terminated")

    # -- recording -----------------------------------------------------------------------

    def _gauges(self, iv: Interval) -> None:
        iv.connected = self.shared.connected
        iv.connecting = self.shared.connecting
        iv.target = len(self.clients)
        iv.rss_bytes = rss_bytes()

    def _rotate(self, at: float, stats: dict[str, Any] | None = None) -> None:
        self._write_interval(self._close_interval(at), stats)

    def _close_interval(self, at: float) -> Interval:
        self._gauges(self.metrics.current)
        return self.metrics.rotate(at - self._t0)

    def _write_interval(self, iv: Interval, stats: dict[str, Any] | None) -> None:
        extra: dict[str, Any] = {"gave_up": self.shared.gave_up}
        if stats is not None:
            extra.update(stats)
        record = self.recorder.write_interval(iv, extra)
        if self.on_interval is not None:
            self.on_interval(record)

    def _status(self, now: float) -> None:
        assert self.on_status is not None
        cur = self.metrics.current
        rtt = cur.hist["rtt"]
        loop = cur.hist["loop_lag"]
        elapsed = now - self._t0
        so_far = self.metrics.so_far
        self.on_status(
            {
                "elapsed": elapsed,
                "remaining": max(0.0, self.profile.duration - elapsed),
                "connected": self.shared.connected,
                "connecting": self.shared.connecting,
                "target": len(self.clients),
                "pongs": cur.counts["pongs"],
                "interval_elapsed": max(1e-9, elapsed - cur.start),
                "rtt_p50_ms": rtt.get_value_at_percentile(50.0) / 1000.0
                if rtt.total_count
                else None,
                "rtt_p99_ms": rtt.get_value_at_percentile(99.0) / 1000.0
                if rtt.total_count
                else None,
                "missed": so_far("missed"),
                "zombies": so_far("zombies"),
                "false_timeouts": so_far("false_timeouts"),
                "reconnects": so_far("reconnects"),
                "handshake_failures": so_far("handshake_failure_total"),
                "loop_lag_max_ms": loop.get_max_value() / 1000.0 if loop.total_count else 0.0,
                "gave_up": self.shared.gave_up,
            }
        )

    def _finish(self, now: float) -> Outcome:
        """Write the last (partial) interval, the summary and the manifest.
        Runs in ``finally``: it must not await, and it must work after an
        abort."""
        if self.status == "running":
            self.status = "completed"
        self._gauges(self.metrics.current)
        if now - self._t0 > self.metrics.current.start or self.metrics.intervals_done == 0:
            self._rotate(now, self._last_stats())
        self.recorder.close()
        tot = totals(self.metrics)
        checks = verdicts(self.profile, self.metrics, tot) + self._extra_checks()
        code, verdict = exit_code(self.status, tot, checks, self.profile)
        summary = {
            "label": self.profile.run.label,
            "target": display_url(self.profile.target.url),
            "status": self.status,
            "partial": self.status != "completed",
            "exit_code": code,
            "verdict": verdict,
            "duration_s": round(now - self._t0, 3),
            "intervals": self.metrics.intervals_done,
            "clients_planned_peak": self.schedule.peak,
            "totals": tot,
            "latency_ms": latencies(self.metrics),
            "tester": {
                "gc_pause_max_ms": round(self.metrics.total.gc_pause_max * 1000, 3),
                "gc_pause_total_ms": round(self.metrics.total.gc_pause_total * 1000, 3),
                "skipped_sends": tot["skipped"],
            },
            "thresholds": checks,
            "passed": all(v["ok"] for v in checks) and code == EXIT_OK,
            "storms": self.shared.storms.summaries(),
        }
        protocol = self._protocol_summary()
        if protocol is not None:
            summary["protocol"] = {"name": self.profile.target.protocol, **protocol}
        summary.update(self._extra_summary())
        storms = self.shared.storms.series()
        if storms:
            self.recorder.write_lines("storms.jsonl", storms)
        if self.poller is not None:
            stats = self.poller.config
            summary["reconcile"] = {
                "url": display_url(stats.url),
                "field": stats.field,
                **self.drift.summary(),
            }
        self.recorder.write_json("summary.json", summary)
        self.manifest.update(
            {
                # the gateway's own version, when its protocol says (OpenClaw's
                # hello-ok): compare labels runs by it
                "server_version": self.shared.server_version,
                "end": iso(self.recorder.wall0 + (now - self._t0)),
                "status": self.status,
                "exit_code": code,
            }
        )
        self.recorder.write_json("run.json", self.manifest)
        return Outcome(self.status, code, summary)

    def _protocol_summary(self) -> dict[str, Any] | None:
        """Protocol-specific numbers for summary.json, e.g. OpenClaw's ticks."""
        protocol_summary = getattr(self.shared.protocol_state, "summary", None)
        if callable(protocol_summary):
            result: dict[str, Any] = protocol_summary()
            return result
        return None

    def _extra_checks(self) -> list[dict[str, Any]]:
        return []

    def _extra_summary(self) -> dict[str, Any]:
        return {}

    def _last_stats(self) -> dict[str, Any] | None:
        """The stats fields for the record _finish writes: the poll made as
        the controller stopped, or a warning when there was none (an abort)."""
        if self.poller is None:
            return None
        stats, self._final_stats = self._final_stats, None
        if stats is None:
            stats = {
                "server_connections": None,
                "client_connections": self.shared.connected,
                "connection_gap": None,
                "stats_warning": "not polled: the run was aborted",
            }
        return stats

    def _manifest(self, wall0: float) -> dict[str, Any]:
        p = self.profile
        return {
            "results_format": 1,
            "tool": "soak",
            "tool_version": __version__,
            "label": p.run.label,
            "target": display_url(p.target.url),
            "protocol": p.target.protocol,
            "profile_path": p.path,
            "profile": p.redacted(),
            "host": socket.gethostname(),
            "python": platform.python_version(),
            "trio": trio.__version__,
            "argv": self.argv,
            "start": iso(wall0),
            "end": None,
            "status": "running",
            "exit_code": None,
        }
