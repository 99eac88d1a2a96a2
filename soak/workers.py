"""One run spread over worker processes (``soak run --workers N``).

One process holds at most ~19,900 sockets (CALIBRATION.md) and one core's
worth of heartbeats, so more clients need more processes. The parent (the
:class:`Coordinator`) starts N workers (``python -m soak.worker``), each an
ordinary :class:`~soak.runner.Runner` on a slice of the load, and merges what
they measure into ONE results directory, the same files a single process
writes:

- at each interval boundary every worker ships its interval: counters,
  closes and its HdrHistograms, encoded. The parent waits (at most
  ``GATHER_WAIT``) for every live worker's report, adds them up
  (HdrHistograms merge losslessly) and writes the interval. A report that
  comes later still counts, in the next interval (``late_reports``).
- once a second every worker ships its live status; the live view shows the
  sums, and the worst worker's RTT percentiles and loop lag.
- storms: a worker does not detect storms, it records the storm tracker's
  inputs (losses, attempts, recoveries) with their times; the parent replays
  all workers' inputs in time order into one tracker, up to the time every
  live worker has reported to, so a storm is detected and measured across
  the whole run.
- events go to events.jsonl tagged with the worker's number.

All processes share one time origin: CLOCK_MONOTONIC is system-wide, so the
parent hands the workers the ``time.monotonic()`` instant the run starts at,
and interval boundaries line up to the microsecond.

A worker that dies is reported (an event, ``workers`` in summary.json, a
failed check) and its clients are counted as lost (``worker_lost`` closes);
the run goes on, and everything measured until then stays.

Wire format, worker to parent (its stdout): one JSON document per line.
Parent to worker (its stdin): a pickled :class:`WorkerSetup`, then one line
``<origin monotonic> <origin wall>`` when every worker is ready.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import math
import os
import pickle
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.lowlevel

from soak.client import CLOSE_WAIT, Shared
from soak.limits import worker_capacity
from soak.metrics import Interval, decode_histogram, new_histogram
from soak.profile import WORKERS_AUTO, Profile, Stage
from soak.recorder import Recorder
from soak.runner import Outcome, Runner
from soak.storm import StormTracker

# how long the parent waits, past an interval's end, for the workers' reports
GATHER_WAIT = 2.0
# a worker that has not said "ready" by then failed to start
BOOT_TIMEOUT = 60.0
# the run starts this long after the last worker is ready
LEAD = 0.2
# heartbeats per second one worker handles with accurate RTT
# (benchmarks/engine.py: the knee is ~5,000/s; keep a margin)
HEARTBEATS_PER_WORKER = 3000.0
# a worker gets this long past the end of the run to close and report
FINISH_GRACE = CLOSE_WAIT + 10.0
LOST = "worker_lost"


class WorkerError(Exception):
    """The workers could not be started."""


# -- pure: how the load is split ---------------------------------------------------


def share(total: int, index: int, count: int) -> int:
    """Worker ``index``'s part of ``total``: parts differ by at most one and
    add up to ``total``."""
    return total // count + (1 if index < total % count else 0)


def slice_profile(profile: Profile, index: int, count: int) -> Profile:
    """The profile worker ``index`` of ``count`` runs: its share of every
    stage's clients, its own seed and client ids, and none of what only the
    parent does (storm commands and restarts, polling the server's stats,
    judging thresholds)."""
    stages: list[Stage] = []
    for st in profile.clients.stages:
        stages.append(
            dataclasses.replace(
                st,
                to=share(st.to, index, count),
                add=share(st.add, index, count),
                rate=st.rate / count,
                command=None,
                restart_url=None,
            )
        )
    clients = dataclasses.replace(
        profile.clients,
        stages=tuple(stages),
        max_connecting=max(1, share(profile.clients.max_connecting, index, count)),
        client_id_prefix=f"{profile.clients.client_id_prefix}-w{index}",
    )
    run = dataclasses.replace(profile.run, seed=profile.run.seed * 1000 + index, workers=1)
    target = dataclasses.replace(profile.target, stats=None)
    return dataclasses.replace(profile, run=run, clients=clients, target=target, thresholds=())


def auto_workers(profile: Profile, fd_soft: int, cores: int) -> int:
    """``--workers auto``: enough workers for the descriptors the peak needs,
    and for its heartbeat rate (up to one per core)."""
    peak = profile.peak_clients
    by_fds = math.ceil(peak / worker_capacity(fd_soft, profile.impairment is not None))
    rate = peak / profile.heartbeat.interval
    by_cpu = min(max(1, cores), math.ceil(rate / HEARTBEATS_PER_WORKER))
    return max(1, by_fds, by_cpu)


def resolve_workers(profile: Profile, fd_soft: int, cores: int) -> int:
    n = profile.run.workers
    return auto_workers(profile, fd_soft, cores) if n == WORKERS_AUTO else n


# -- pure: merging ------------------------------------------------------------------


def encode_interval(iv: Interval, gave_up: int) -> dict[str, Any]:
    """A worker's finished interval, for the parent: its tally's wire form
    and its gauges."""
    return {
        "m": "interval",
        "index": iv.index,
        **iv.to_wire(),
        "connected": iv.connected,
        "connecting": iv.connecting,
        "target": iv.target,
        "rss_bytes": iv.rss_bytes,
        "gave_up": gave_up,
    }


def absorb(into: Interval, msg: dict[str, Any]) -> None:
    """Add a worker's interval report to ``into`` (its tally; the gauges are
    the parent's business)."""
    into.absorb(msg)


class StormLog(StormTracker):
    """A worker's storm tracker: it detects nothing, it keeps the inputs
    (times relative to the run's start) for the parent to replay."""

    def __init__(self, *, heartbeat_interval: float, origin: float) -> None:
        super().__init__(heartbeat_interval=heartbeat_interval, origin=origin)
        self.ops: list[list[Any]] = []

    def lost(self, now: float) -> None:
        self.ops.append(["lost", now - self.origin])

    def attempt(self, now: float, in_flight: int) -> None:
        self.ops.append(["attempt", now - self.origin, in_flight])

    def failed(self, now: float, cause: str) -> None:
        self.ops.append(["failed", now - self.origin, cause])

    def ready(self, now: float, handshake: float, lost_at: float | None) -> None:
        back = None if lost_at is None else lost_at - self.origin
        self.ops.append(["ready", now - self.origin, handshake, back])

    def gave_up(self, now: float) -> None:
        self.ops.append(["gave_up", now - self.origin])

    def tick(self, now: float) -> None:
        return None

    def take(self) -> list[list[Any]]:
        ops, self.ops = self.ops, []
        return ops


class StormReplay:
    """The parent's side of :class:`StormLog`: the inputs of all workers,
    applied to one tracker in time order, never past the time every live
    worker has reported up to (so no input can arrive out of order)."""

    def __init__(self, shared: Shared, t0: float) -> None:
        self.shared = shared
        self.t0 = t0
        self._heap: list[tuple[float, int, int, list[Any]]] = []
        self._seq = 0
        self.in_flight: dict[int, int] = {}
        self.horizon = 0.0  # seconds since the start, replayed up to

    def add(self, worker: int, ops: list[list[Any]]) -> None:
        for op in ops:
            self._seq += 1
            heapq.heappush(self._heap, (float(op[1]), self._seq, worker, op))

    def replay(self, upto: float) -> None:
        sh = self.shared
        tracker = sh.storms
        t0 = self.t0
        heap = self._heap
        while heap and heap[0][0] <= upto:
            t, _, worker, op = heapq.heappop(heap)
            now = t0 + t
            kind = op[0]
            if kind == "lost":
                storm = tracker.lost(now)
                if storm is not None:
                    sh.emit(
                        {
                            "t": round(storm.start - t0, 6),
                            "event": "storm_start",
                            "storm": storm.index,
                            "lost": storm.lost,
                        }
                    )
            elif kind == "attempt":
                # each worker knows its own handshakes in flight; the run's
                # are the sum of every worker's latest figure
                self.in_flight[worker] = int(op[2])
                tracker.attempt(now, sum(self.in_flight.values()))
            elif kind == "failed":
                tracker.failed(now, str(op[2]))
            elif kind == "ready":
                self.in_flight[worker] = max(0, self.in_flight.get(worker, 1) - 1)
                back = op[3]
                tracker.ready(now, float(op[2]), None if back is None else t0 + back)
                sh.storm_tick(now)
            elif kind == "gave_up":
                tracker.gave_up(now)
        if upto > self.horizon and upto != math.inf:
            self.horizon = upto


def merge_status(
    statuses: list[dict[str, Any]], live: list[bool], interval: int | None = None
) -> dict[str, Any]:
    """The live view's line from every worker's latest status: gauges of the
    live workers and counts of all of them added up; RTT percentiles from the
    workers' current-interval histograms merged (those of ``interval``), or,
    without them, the worst worker's; loop lag of the worst worker."""
    out: dict[str, Any] = {}
    for key in ("connected", "connecting", "target"):
        out[key] = sum(s.get(key, 0) for s, up in zip(statuses, live, strict=True) if up)
    for key in (
        "pongs",
        "missed",
        "zombies",
        "false_timeouts",
        "reconnects",
        "handshake_failures",
        "gave_up",
    ):
        out[key] = sum(s.get(key, 0) for s in statuses)
    for key in ("rtt_p50_ms", "rtt_p99_ms"):
        values = [s[key] for s in statuses if s.get(key) is not None]
        out[key] = max(values) if values else None
    parts = [
        s["rtt_hist"]
        for s in statuses
        if s.get("rtt_hist") and (interval is None or s.get("interval") == interval)
    ]
    if parts:
        rtt = new_histogram()
        for payload in parts:
            rtt.add(decode_histogram(payload))
        p = rtt.get_percentile_to_value_dict([50.0, 99.0])
        out["rtt_p50_ms"], out["rtt_p99_ms"] = p[50.0] / 1000.0, p[99.0] / 1000.0
    out["loop_lag_max_ms"] = max((s.get("loop_lag_max_ms", 0.0) for s in statuses), default=0.0)
    out["interval_elapsed"] = max((s.get("interval_elapsed", 1e-9) for s in statuses), default=1e-9)
    return out


# -- the parent ---------------------------------------------------------------------


@dataclass
class WorkerSetup:
    profile: Profile
    index: int
    count: int


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen[bytes]
    planned: int  # its peak clients
    reported: int = -1  # the last interval it reported
    upto: float = 0.0  # seconds since the start its storm inputs cover
    status: dict[str, Any] = field(default_factory=dict)
    connected: int = 0
    connecting: int = 0
    target: int = 0
    gave_up: int = 0
    rss_bytes: int = 0
    final: dict[str, Any] | None = None
    server_version: str | None = None
    done: bool = False  # its stdout ended
    lost: str | None = None  # why it was lost, if it was
    exit_code: int | None = None

    @property
    def live(self) -> bool:
        return not self.done


def start_workers(profile: Profile, count: int) -> list[Worker]:
    """Start ``count`` worker processes and wait until each has loaded its
    slice of the profile. Synchronous: it runs before the run's clock starts."""
    workers: list[Worker] = []
    try:
        for i in range(count):
            part = slice_profile(profile, i, count)
            proc = subprocess.Popen(
                [sys.executable, "-m", "soak.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # own session: a Ctrl-C reaches the parent only, which then
                # stops the workers once, cleanly
                start_new_session=True,
            )
            workers.append(Worker(i, proc, part.peak_clients))
            assert proc.stdin is not None
            proc.stdin.write(pickle.dumps(WorkerSetup(part, i, count)))
            proc.stdin.flush()
        _wait_ready(workers)
    except BaseException:
        for w in workers:
            with contextlib.suppress(OSError):
                w.proc.kill()
            w.proc.wait()
        raise
    return workers


def _wait_ready(workers: list[Worker]) -> None:
    sel = selectors.DefaultSelector()
    waiting: dict[int, Worker] = {}
    for w in workers:
        assert w.proc.stdout is not None
        fd = w.proc.stdout.fileno()
        sel.register(fd, selectors.EVENT_READ)
        waiting[fd] = w
    deadline = time.monotonic() + BOOT_TIMEOUT
    buffers: dict[int, bytes] = dict.fromkeys(waiting, b"")
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            names = ", ".join(str(w.index) for w in waiting.values())
            raise WorkerError(f"worker process(es) {names} did not start within {BOOT_TIMEOUT:g}s")
        for key, _ in sel.select(left):
            fd = int(key.fd)
            chunk = os.read(fd, 4096)
            w = waiting[fd]
            if not chunk:
                code = w.proc.wait()
                raise WorkerError(
                    f"worker process {w.index} failed to start (exit code {code}); "
                    "its error is above"
                )
            buffers[fd] += chunk
            if b"\n" in buffers[fd]:
                line = buffers[fd].split(b"\n", 1)[0]
                if line != b'{"m":"ready"}':
                    raise WorkerError(f"worker process {w.index} said {line[:200]!r}")
                sel.unregister(fd)
                del waiting[fd]
    sel.close()


def go(workers: list[Worker], origin_monotonic: float, origin_wall: float) -> None:
    """Tell every worker when the run starts."""
    line = f"{origin_monotonic!r} {origin_wall!r}\n".encode()
    for w in workers:
        assert w.proc.stdin is not None
        with contextlib.suppress(OSError):
            w.proc.stdin.write(line)
            w.proc.stdin.close()


class Coordinator(Runner):
    """The parent of a multi-process run: no clients of its own, the
    workers' measurements merged, the run's schedule, storm commands,
    server stats and verdicts in one place."""

    def __init__(
        self,
        profile: Profile,
        recorder: Recorder,
        workers: list[Worker],
        *,
        origin_monotonic: float,
        **kw: Any,
    ) -> None:
        super().__init__(
            profile,
            recorder,
            origin_monotonic=origin_monotonic,
            lag_probe=None,  # the workers measure their own loops
            manage_gc=False,  # the parent's pauses delay merging, never a sample
            **kw,
        )
        self.workers = workers
        # The parent writes the events; the workers measure. A stall while it
        # writes a mass disconnect's evidence delays no sample, so it keeps
        # one event per planned client per interval (a 50,000-client
        # shutdown's closes), at least the usual cap.
        recorder.max_events = max(recorder.max_events, 2 * profile.peak_clients)
        self.late_reports = 0
        self._pending: dict[int, list[dict[str, Any]]] = {}  # interval -> early reports
        self._news = trio.Event()
        self._storm_replay: StormReplay | None = None

    # -- the run ------------------------------------------------------------------

    async def run(self) -> Outcome:
        p = self.profile
        self._t0 = t0 = self._origin()
        shared = self._make_shared(t0)
        self._storm_replay = StormReplay(shared, t0)
        self.manifest = self._manifest(self.recorder.wall0)
        self.manifest["workers"] = len(self.workers)
        self.recorder.write_json("run.json", self.manifest)
        try:
            with trio.CancelScope() as abort_scope:
                self._abort = abort_scope
                async with trio.open_nursery() as outer:
                    self._outer = outer
                    for w in self.workers:
                        outer.start_soon(self._read, w)
                    if self.signals:
                        outer.start_soon(self._watch_signals)
                    await self._control(outer, t0)
                    await self._wind_down(t0 + p.duration)
                    outer.cancel_scope.cancel()
        finally:
            self._kill_all()
            outcome = self._finish(trio.current_time())
        return outcome

    async def _wind_down(self, end: float) -> None:
        """The schedule is over (or the run was stopped): the workers close
        their clients and send their last reports."""
        sig = {"interrupted": signal.SIGINT, "terminated": signal.SIGTERM}.get(self.status)
        if sig is not None:
            self._signal_all(sig)
        deadline = max(end, trio.current_time()) + FINISH_GRACE
        with trio.move_on_at(deadline):
            while any(w.live for w in self.workers):
                await self._news.wait()
        for w in self.workers:
            if w.live:
                self._lose(w, f"did not finish within {FINISH_GRACE:g}s of the end; killed")
                with contextlib.suppress(OSError):
                    w.proc.kill()

    def abort(self) -> None:
        # a second Ctrl-C: the workers abort too (they write what they can)
        self._signal_all(signal.SIGINT)
        super().abort()

    def _signal_all(self, sig: signal.Signals) -> None:
        for w in self.workers:
            if w.live:
                with contextlib.suppress(OSError):
                    w.proc.send_signal(sig)

    def _kill_all(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                try:
                    w.proc.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    w.proc.kill()
                    w.proc.wait()
            if w.exit_code is None:
                w.exit_code = w.proc.returncode

    # -- what the workers say ----------------------------------------------------------

    async def _read(self, w: Worker) -> None:
        assert w.proc.stdout is not None
        stream = trio.lowlevel.FdStream(os.dup(w.proc.stdout.fileno()))
        buf = b""
        try:
            async with stream:
                while True:
                    try:
                        chunk = await stream.receive_some(1 << 16)
                    except (trio.BrokenResourceError, OSError):
                        chunk = b""
                    if not chunk:
                        break
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line:
                            try:
                                msg = json.loads(line)
                            except ValueError:
                                self._lose(w, f"sent an unreadable report {line[:80]!r}; killed")
                                w.proc.kill()
                                return
                            self._on_message(w, msg)
                    self._notify()
        finally:
            w.done = True
            w.connected = w.connecting = 0
            self._sum_gauges()
            # abandoned if the run is cancelled: _kill_all reaps it then
            w.exit_code = await trio.to_thread.run_sync(w.proc.wait, abandon_on_cancel=True)
            if w.final is None and self.status != "aborted":
                self._lose(w, f"exited with code {w.exit_code} before its last report")
            self._replay_storms()
            self._notify()

    def _notify(self) -> None:
        self._news.set()
        self._news = trio.Event()

    def _on_message(self, w: Worker, msg: dict[str, Any]) -> None:
        kind = msg.get("m")
        for ev in msg.get("events", ()):
            # the parent writes the storm stage's event once, for the run
            if ev.get("event") != "storm_stage":
                ev["worker"] = w.index
                self.recorder.event(ev)
        if self._storm_replay is not None and msg.get("storm"):
            self._storm_replay.add(w.index, msg["storm"])
        if "upto" in msg:
            w.upto = float(msg["upto"])
        if kind == "status":
            w.status = msg["status"]
            w.connected = w.status.get("connected", 0)
            w.connecting = w.status.get("connecting", 0)
            w.target = w.status.get("target", 0)
            w.gave_up = w.status.get("gave_up", 0)
        elif kind == "interval":
            self._take_interval(w, msg)
        elif kind == "manifest":
            w.server_version = msg.get("server_version")
            if self.shared.server_version is None:
                self.shared.server_version = w.server_version
        elif kind == "final":
            w.final = msg["summary"]
            permanent = w.final.get("totals", {}).get("permanent_failure")
            if permanent is not None and self.metrics.permanent_failure is None:
                # the run's verdict names the refusal, as a single process's does
                self.metrics.permanent_failure = permanent
        self._sum_gauges()
        self._replay_storms()

    def _take_interval(self, w: Worker, msg: dict[str, Any]) -> None:
        index = int(msg["index"])
        w.reported = max(w.reported, index)
        w.connected = msg["connected"]
        w.connecting = msg["connecting"]
        w.target = msg["target"]
        w.gave_up = msg["gave_up"]
        w.rss_bytes = msg["rss_bytes"]
        current = self.metrics.current.index
        if index > current:
            self._pending.setdefault(index, []).append(msg)
            return
        if index < current:
            self.late_reports += 1
        absorb(self.metrics.current, msg)

    def _sum_gauges(self) -> None:
        sh = self.shared
        sh.connected = sum(w.connected for w in self.workers)
        sh.connecting = sum(w.connecting for w in self.workers)
        sh.gave_up = sum(w.gave_up for w in self.workers)

    def _replay_storms(self) -> None:
        if self._storm_replay is None:
            return
        upto = min((w.upto for w in self.workers if w.live), default=math.inf)
        self._storm_replay.replay(upto)

    def _lose(self, w: Worker, why: str) -> None:
        if w.lost is not None:
            return
        w.lost = why
        clients = max(w.connected, w.target, w.status.get("connected", 0))
        now = trio.current_time()
        if clients:
            # counted as closes, so the report's close table shows them
            self.metrics.close(LOST, "tester", None, clients)
        self.recorder.event(
            {
                "t": round(now - self._t0, 6),
                "event": "worker_lost",
                "worker": w.index,
                "pid": w.proc.pid,
                "clients": clients,
                "why": why,
            }
        )
        print(f"soak: worker {w.index} (pid {w.proc.pid}) {why}", file=sys.stderr)

    # -- the Runner's hooks -----------------------------------------------------------

    def _apply_target(self, crowd: trio.Nursery, target: int) -> None:
        pass  # each worker follows its slice of the schedule

    def _churn(self, due_total: int) -> None:
        pass  # likewise

    def _over(self) -> str | None:
        if any(w.live for w in self.workers):
            return None
        return "every worker process has ended"

    def _storm_tick(self, now: float) -> None:
        assert self._storm_replay is not None
        # never past what has been replayed: a worker's input may still come
        self.shared.storm_tick(min(now, self._t0 + self._storm_replay.horizon))

    async def _gather(self, at: float) -> None:
        index = self.metrics.current.index
        with trio.move_on_at(at + GATHER_WAIT):
            while any(w.live and w.reported < index for w in self.workers):
                await self._news.wait()

    def _close_interval(self, at: float) -> Interval:
        done = super()._close_interval(at)
        for msg in self._pending.pop(self.metrics.current.index, ()):
            absorb(self.metrics.current, msg)
        return done

    def _gauges(self, iv: Interval) -> None:
        super()._gauges(iv)  # connected and connecting: the workers' sums (_sum_gauges)
        live = [w for w in self.workers if w.live]
        iv.target = sum(w.target for w in live)
        iv.rss_bytes += sum(w.rss_bytes for w in live)

    def _status(self, now: float) -> None:
        assert self.on_status is not None
        merged = merge_status(
            [w.status for w in self.workers],
            [w.live for w in self.workers],
            self.metrics.current.index,
        )
        elapsed = now - self._t0
        merged["elapsed"] = elapsed
        merged["remaining"] = max(0.0, self.profile.duration - elapsed)
        self.on_status(merged)

    def _protocol_summary(self) -> dict[str, Any] | None:
        parts = [w.final.get("protocol") for w in self.workers if w.final is not None]
        found = [p for p in parts if p]
        if not found:
            return None
        merged: dict[str, Any] = {}
        for key in found[0]:
            values = [p.get(key) for p in found]
            if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                merged[key] = sum(values)  # counts add up; distributions do not
        merged.pop("name", None)
        merged["workers"] = [{k: v for k, v in p.items() if k != "name"} for p in found]
        return merged

    def _extra_checks(self) -> list[dict[str, Any]]:
        lost = [w for w in self.workers if w.lost is not None]
        if not lost:
            return []
        shown = "; ".join(f"worker {w.index} {w.lost}" for w in lost)
        return [
            {
                "name": "workers_lost",
                "limit": "0",
                "value": str(len(lost)),
                "ok": False,
                "op": "==",
                "text": f"FAIL workers_lost == 0: {shown}",
            }
        ]

    def _extra_summary(self) -> dict[str, Any]:
        by_cause: Counter[str] = Counter()
        for w in self.workers:
            if w.final is not None:
                by_cause[w.final.get("status", "?")] += 1
        return {
            "workers": {
                "count": len(self.workers),
                "planned_clients": [w.planned for w in self.workers],
                "lost": [
                    {
                        "worker": w.index,
                        "pid": w.proc.pid,
                        "exit_code": w.exit_code,
                        "why": w.lost,
                    }
                    for w in self.workers
                    if w.lost is not None
                ],
                "status": dict(by_cause),
                "late_reports": self.late_reports,
            }
        }
