"""I/O: one run of a profile: a load source driven by the schedule, its
results written to a sink (soak.run.source describes both).

The controller wakes when something is due (a ramp step, a churn step, an
interval boundary, a status refresh, the end of a stage) and otherwise
sleeps, so a simulated 24-hour hold under ``MockClock`` costs a few thousand
wake-ups, not millions.

The tester measures itself: a probe task records how late the event loop
wakes it (``loop_lag``), each heartbeat records its own send lateness
(``lag``), and the garbage collector's pauses are timed. The collector was
found to be the main source of false latency, so the runner takes control
of it (see soak.gcctl): freeze at start and each time another 1,000 clients
have connected, and raise the young-generation threshold so collections are
rare and short.
"""

from __future__ import annotations

import dataclasses
import math
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from soak.availability import share
from soak.chain import ChainCloses
from soak.client import OpenStream, Shared, url_opener
from soak.config.profile import Profile
from soak.config.stages import Churn, Ramp, Storm
from soak.facts import Facts, Finding, Settings
from soak.findings import findings, settle
from soak.gcctl import GcControl, GrowthFreezer
from soak.metrics import Interval, Metrics
from soak.reconcile import Drift, Poller
from soak.recorder import iso
from soak.run import finish
from soak.run.local import LocalClients
from soak.run.observe import ObservedSink
from soak.run.source import LoadSource, RunContext, Sink
from soak.run.stages import ask_restart, run_command
from soak.schedule import Schedule
from soak.storm import StormInputs, StormTracker
from soak.urls import without_userinfo

RAMP_STEP = 0.1  # seconds between controller wake-ups while the count moves


@dataclass
class Outcome:
    status: str  # completed, interrupted, terminated, aborted
    exit_code: int
    summary: dict[str, Any]


class Runner:
    """One run. ``source``: where the load comes from (default: clients in
    this process, opened with ``open_stream``); ``recorder``: where the
    results go (the files, or a worker's pipe to its parent).
    ``storm_inputs``: makes, from the run's start (trio time), where the
    clients' storm inputs go (default: the
    :class:`~soak.storm.StormTracker` that detects storms here)."""

    def __init__(
        self,
        profile: Profile,
        recorder: Sink,
        *,
        source: LoadSource | None = None,
        open_stream: OpenStream | None = None,
        storm_inputs: Callable[[float], StormInputs] | None = None,
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
        # the closes without a close frame, judged against the profile's
        # hops and by silence length: summary.json's intermediaries
        # (soak.chain); and what the run's findings are made of
        # (soak.findings), whose idle timeouts are the closes no hop explains
        self.closes = ChainCloses(profile.target.hops)
        self.facts = Facts(
            Settings.from_profile_record(profile.redacted()),
            closes=self.closes.silences,
            feed_closes=False,
        )
        self.sink: Sink = ObservedSink(recorder, self._observe)
        self.source: LoadSource = source or LocalClients(real_sockets=open_stream is None)
        self.open_stream = open_stream or url_opener(profile.target)
        self.storm_inputs = storm_inputs
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
        self.status = "running"
        self._wake: trio.CancelScope | None = None
        self._abort: trio.CancelScope | None = None
        self._stormed: set[float] = set()  # start times of storm stages already fired
        self._outer: trio.Nursery | None = None
        self._t0 = 0.0
        self._gc: GcControl | None = None
        self._storms: StormTracker | None = None  # the tracker, when storms are detected here
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

    def _observe(self, ev: dict[str, Any]) -> None:
        """Every event, as it goes to events.jsonl: the chain's closes, then
        the findings' facts."""
        self.closes.observe(ev)
        self.facts.observe(ev)

    def findings_so_far(self) -> list[Finding]:
        """The run's findings on what it has seen so far (soak.findings):
        what a live view asks every interval."""
        return findings(self.facts)

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
        self.source.abort()
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
        """The clients' shared services and the run's gauges (soak.client).
        The one place the Runner builds it."""
        shared = Shared(
            self.profile,
            self.metrics,
            self.open_stream,
            self.sink.event,
            t0=t0,
            wall0=self.sink.wall0,
            rng=self.rng,
            storms=None if self.storm_inputs is None else self.storm_inputs(t0),
        )
        self._storms = shared.services.tracker
        self.shared = shared
        return shared

    async def run(self) -> Outcome:
        self._t0 = t0 = self._origin()
        shared = self._make_shared(t0)
        context = RunContext(
            self.profile, self.schedule, self.metrics, self.sink, shared, self.rng, t0
        )
        self.manifest = finish.manifest(self.profile, self.argv, self.sink.wall0)
        self.manifest.update(self.source.manifest())
        self.sink.write_json("run.json", self.manifest)
        gc_ctl = GcControl(self.metrics.gc_pause) if self.manage_gc else None
        try:
            if gc_ctl is not None:
                gc_ctl.__enter__()
                self._gc = gc_ctl
            with trio.CancelScope() as abort_scope:
                self._abort = abort_scope
                async with trio.open_nursery() as outer:
                    self._outer = outer
                    await self.source.start(context, outer)
                    if self.signals:
                        outer.start_soon(self._watch_signals)
                    if self.lag_probe:
                        outer.start_soon(self._probe_loop_lag, self.lag_probe)
                    await self.source.drive(self._control)
                    outer.cancel_scope.cancel()
        finally:
            if gc_ctl is not None:
                gc_ctl.__exit__()
            self.source.reap()
            outcome = self._finish(trio.current_time())
        return outcome

    async def _control(self) -> str:
        """Follow the schedule until its end or a stop; returns the status
        it stopped in (see LoadSource.drive)."""
        p = self.profile
        source = self.source
        t0 = self._t0
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
            why = source.over()
            if why is not None:
                self.sink.event({"t": round(t, 6), "event": "run_ended_early", "why": why})
                break
            source.follow(t)
            seg = self.schedule.segment_at(t)
            if seg is not None and isinstance(seg.stage, Storm) and seg.start not in self._stormed:
                self._stormed.add(seg.start)
                self._storm(seg.stage)
            if freezer is not None:
                freezer.observe(self.shared.gauges.connected)
            source.storm_tick(now)
            while now >= next_interval:
                # close the interval at its boundary, then poll the server's
                # count (if any): samples that arrive meanwhile belong to the
                # next interval
                await source.gather(next_interval)
                iv = self._close_interval(next_interval)
                stats = await self._reconcile() if self.poller is not None else None
                self._write_interval(iv, stats)
                # written (encoded, in the sink or on its way to the parent):
                # its histograms serve the next interval (Metrics.recycle)
                self.metrics.recycle(iv)
                next_interval += every
            if now >= next_status:
                self._status(now)
                next_status = now + self.status_every
            wake = min(end, next_interval, next_status)
            if now < t0:
                wake = min(wake, t0)  # a worker process started before the run's origin
            if seg is not None:
                if isinstance(seg.stage, Ramp | Churn):
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
        if self._gc is not None:
            self._gc.quiet()  # the shutdown follows: see GcControl.quiet
        return self.status

    async def _reconcile(self) -> dict[str, Any]:
        """The server's count next to ours, for one interval record. Takes
        at most the stats timeout and never raises for remote problems."""
        assert self.poller is not None
        server, warning = await self.poller.poll()
        client = self.shared.gauges.connected  # read when the answer came, next to the server's
        gap = self.drift.observe(trio.current_time() - self._t0, client, server)
        return {
            "server_connections": server,
            "client_connections": client,
            "connection_gap": gap,
            "stats_warning": warning,
        }

    def _storm(self, stage: Storm) -> None:
        """A storm stage begins: drop clients, run the command, ask the
        gateway to restart; whatever the stage says, all at once."""
        now = trio.current_time()
        self.sink.event(
            {
                "t": round(now - self._t0, 6),
                "event": "storm_stage",
                "drop": stage.drop,
                "how": stage.how,
                "command": stage.command,
                "restart_url": None
                if stage.restart_url is None
                else without_userinfo(stage.restart_url),
            }
        )
        self.source.storm(stage)
        assert self._outer is not None
        if stage.command is not None:
            self._outer.start_soon(run_command, stage, self._t0, self.sink.event)
        if stage.restart_url is not None:
            self._outer.start_soon(ask_restart, stage.restart_url, self._t0, self.sink.event)

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

    def _close_interval(self, at: float) -> Interval:
        cur = self.metrics.current
        self.source.gauges(cur)
        # the client-seconds of this process's clients (none in a parent of
        # workers: theirs come with their intervals)
        connected_s, target_s = self.shared.gauges.seconds.take(at)
        cur.connected_s += connected_s
        cur.target_s += target_s
        done = self.metrics.rotate(at - self._t0)
        self.source.rotated()
        return done

    def _write_interval(self, iv: Interval, stats: dict[str, Any] | None) -> None:
        extra: dict[str, Any] = {"gave_up": self.shared.gauges.gave_up}
        if stats is not None:
            extra.update(stats)
        record = self.sink.write_interval(iv, extra)
        self.facts.interval(record)
        if self.on_interval is not None:
            self.on_interval(record)

    def _status(self, now: float) -> None:
        assert self.on_status is not None
        elapsed = now - self._t0
        # the run's availability so far: finished intervals (a parent's
        # include its workers'), then this process's clients since
        total, cur = self.metrics.total, self.metrics.current
        connected_s, target_s = self.shared.gauges.seconds.peek(now)
        so_far = share(
            total.connected_s + cur.connected_s + connected_s,
            total.target_s + cur.target_s + target_s,
        )
        self.on_status(
            {
                "elapsed": elapsed,
                "remaining": max(0.0, self.profile.duration - elapsed),
                **self.source.status(elapsed),
                "availability": so_far,
            }
        )

    def _finish(self, now: float) -> Outcome:
        """Write the last (partial) interval, the summary and the manifest.
        Runs in ``finally``: it must not await, and it must work after an
        abort."""
        if self.status == "running":
            self.status = "completed"
        metrics = self.metrics
        self.source.gauges(metrics.current)
        if now - self._t0 > metrics.current.start or metrics.intervals_done == 0:
            last = self._last_stats()
            self._write_interval(self._close_interval(now), last)
        self.sink.close()
        storms = self._storms
        summary = finish.summary(
            self.profile,
            metrics,
            status=self.status,
            duration=now - self._t0,
            peak=self.schedule.peak,
            extra_checks=self.source.checks(),
            storms=storms.summaries() if storms is not None else [],
            closes=self.closes,
        )
        protocol = self.source.protocol_summary()
        if protocol is not None:
            summary["protocol"] = {"name": self.profile.target.protocol, **protocol}
        summary.update(self.source.summary())
        series = storms.series() if storms is not None else []
        if series:
            self.sink.write_lines("storms.jsonl", series)
        if self.poller is not None:
            stats = self.poller.config
            summary["reconcile"] = {
                "url": without_userinfo(stats.url),
                "field": stats.field,
                **self.drift.summary(),
            }
        p = self.profile
        settle(summary, self.facts, thresholds_set=bool(p.thresholds), strict=p.strict)
        self.sink.write_json("summary.json", summary)
        self.manifest.update(
            {
                # the gateway's own version, when its protocol says (OpenClaw's
                # hello-ok): compare labels runs by it
                "server_version": self.shared.gauges.server_version,
                "end": iso(self.sink.wall0 + (now - self._t0)),
                "status": self.status,
                "exit_code": summary["exit_code"],
            }
        )
        self.sink.write_json("run.json", self.manifest)
        return Outcome(self.status, summary["exit_code"], summary)

    def _last_stats(self) -> dict[str, Any] | None:
        """The stats fields for the record _finish writes: the poll made as
        the controller stopped, or a warning when there was none (an abort)."""
        if self.poller is None:
            return None
        stats, self._final_stats = self._final_stats, None
        if stats is None:
            stats = {
                "server_connections": None,
                "client_connections": self.shared.gauges.connected,
                "connection_gap": None,
                "stats_warning": "not polled: the run was aborted",
            }
        return stats
