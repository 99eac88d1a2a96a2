"""I/O: the load source of worker processes: the parent of a multi-process
run (``soak run --workers N``).

The parent has no clients of its own. Its N workers (soak.run.spawn), each
an ordinary run of a slice of the load (soak.run.split) whose sink is the
pipe to the parent (soak.run.sinks), report what they measure; the parent's
Runner follows the whole run's schedule, fires storm stages' commands and
restarts, polls the server's stats, judges the thresholds, and writes ONE
results directory, the same files a single process writes:

- at each interval boundary the parent waits (at most ``GATHER_WAIT``) for
  every live worker's report of the interval and adds them up
  (soak.run.merge). A report that comes later still counts, in the next
  interval (``late_reports``).
- the live view shows the workers' statuses merged.
- storms are detected in the parent, from all workers' storm inputs.
- events go to events.jsonl tagged with the worker's number.

A worker that dies is reported (an event, ``workers`` in summary.json, a
failed check) and its clients are counted as lost (``worker_lost`` closes);
the run goes on, and everything measured until then stays.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.lowlevel

from soak.client import CLOSE_WAIT
from soak.config.profile import Profile
from soak.config.stages import Storm
from soak.metrics import Interval
from soak.recorder import Recorder, rss_bytes
from soak.run.merge import StormReplay, absorb, merge_status
from soak.run.runner import Runner
from soak.run.source import RunContext, Sink
from soak.run.spawn import Worker

# how long the parent waits, past an interval's end, for the workers' reports
GATHER_WAIT = 2.0
# a worker gets this long past the end of the run to close and report
FINISH_GRACE = CLOSE_WAIT + 10.0
LOST = "worker_lost"


def Coordinator(
    profile: Profile,
    recorder: Recorder,
    workers: list[Worker],
    *,
    origin_monotonic: float,
    sink: Sink | None = None,
    **kw: Any,
) -> Runner:
    """The Runner of a multi-process run's parent: the workers' merged
    measurements, the run's schedule, storm commands, server stats and
    verdicts in one place. (Named as the class it replaces.) ``sink``: the
    results' way to ``recorder`` when something stands between them (a
    shard's files, live metrics)."""
    # The parent writes the events; the workers measure. A stall while it
    # writes a mass disconnect's evidence delays no sample, so it keeps
    # one event per planned client per interval (a 50,000-client
    # shutdown's closes), at least the usual cap.
    recorder.max_events = max(recorder.max_events, 2 * profile.peak_clients)
    return Runner(
        profile,
        recorder if sink is None else sink,
        source=WorkerProcesses(workers),
        origin_monotonic=origin_monotonic,
        lag_probe=None,  # the workers measure their own loops
        manage_gc=False,  # the parent's pauses delay merging, never a sample
        **kw,
    )


class WorkerProcesses:
    """The load of a run's worker processes, as one load source."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self.late_reports = 0
        self._pending: dict[int, list[dict[str, Any]]] = {}  # interval -> early reports
        self._news = trio.Event()
        self._aborted = False
        self._run: RunContext | None = None
        self._replay: StormReplay | None = None
        self._readers: trio.Nursery | None = None

    @property
    def run(self) -> RunContext:
        assert self._run is not None, "WorkerProcesses.start() first"
        return self._run

    def manifest(self) -> dict[str, Any]:
        return {"workers": len(self.workers)}

    async def start(self, run: RunContext, nursery: trio.Nursery) -> None:
        self._run = run
        self._replay = StormReplay(run.shared.services, run.t0)
        for w in self.workers:
            nursery.start_soon(self._read, w)

    async def drive(self, control: Callable[[], Awaitable[str]]) -> None:
        status = await control()
        await self._wind_down(status, self.run.t0 + self.run.profile.duration)

    # -- the schedule: each worker follows its slice itself ----------------------------

    def follow(self, t: float) -> None:
        pass  # each worker opens, closes and churns its own clients

    def storm(self, stage: Storm) -> None:
        pass  # each worker drops its share when its storm stage begins

    def over(self) -> str | None:
        if any(w.live for w in self.workers):
            return None
        return "every worker process has ended"

    def storm_tick(self, now: float) -> None:
        assert self._replay is not None
        # never past what has been replayed: a worker's input may still come
        self.run.shared.services.storm_tick(min(now, self.run.t0 + self._replay.horizon))

    # -- intervals and status ----------------------------------------------------------

    async def gather(self, at: float) -> None:
        index = self.run.metrics.current.index
        with trio.move_on_at(at + GATHER_WAIT):
            while any(w.live and w.reported < index for w in self.workers):
                await self._news.wait()

    def gauges(self, iv: Interval) -> None:
        shared = self.run.shared  # connected and connecting: the workers' sums (_sum_gauges)
        live = [w for w in self.workers if w.live]
        iv.connected = shared.gauges.connected
        iv.connecting = shared.gauges.connecting
        iv.target = sum(w.target for w in live)
        iv.rss_bytes = rss_bytes() + sum(w.rss_bytes for w in live)

    def rotated(self) -> None:
        metrics = self.run.metrics
        for msg in self._pending.pop(metrics.current.index, ()):
            absorb(metrics.current, msg)

    def status(self, elapsed: float) -> dict[str, Any]:
        return merge_status(
            [w.status for w in self.workers],
            [w.live for w in self.workers],
            self.run.metrics.current.index,
        )

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
            # abandoned if the run is cancelled: reap() reaps it then
            w.exit_code = await trio.to_thread.run_sync(w.proc.wait, abandon_on_cancel=True)
            if w.final is None and not self._aborted:
                self._lose(w, f"exited with code {w.exit_code} before its last report")
            self._replay_storms()
            self._notify()

    def _notify(self) -> None:
        self._news.set()
        self._news = trio.Event()

    def _on_message(self, w: Worker, msg: dict[str, Any]) -> None:
        run = self.run
        kind = msg.get("m")
        for ev in msg.get("events", ()):
            # the parent writes the storm stage's event once, for the run
            if ev.get("event") != "storm_stage":
                ev["worker"] = w.index
                run.sink.event(ev)
        if self._replay is not None and msg.get("storm"):
            self._replay.add(w.index, msg["storm"])
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
            if run.shared.gauges.server_version is None:
                run.shared.gauges.server_version = w.server_version
        elif kind == "final":
            w.final = msg["summary"]
            permanent = w.final.get("totals", {}).get("permanent_failure")
            if permanent is not None and run.metrics.permanent_failure is None:
                # the run's verdict names the refusal, as a single process's does
                run.metrics.permanent_failure = permanent
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
        current = self.run.metrics.current
        if index > current.index:
            self._pending.setdefault(index, []).append(msg)
            return
        if index < current.index:
            self.late_reports += 1
        absorb(current, msg)

    def _sum_gauges(self) -> None:
        sh = self.run.shared
        sh.gauges.connected = sum(w.connected for w in self.workers)
        sh.gauges.connecting = sum(w.connecting for w in self.workers)
        sh.gauges.gave_up = sum(w.gave_up for w in self.workers)

    def _replay_storms(self) -> None:
        if self._replay is None:
            return
        upto = min((w.upto for w in self.workers if w.live), default=math.inf)
        self._replay.replay(upto)

    def _lose(self, w: Worker, why: str) -> None:
        if w.lost is not None:
            return
        w.lost = why
        run = self.run
        clients = max(w.connected, w.target, w.status.get("connected", 0))
        now = trio.current_time()
        if clients:
            # counted as closes, so the report's close table shows them
            run.metrics.close(LOST, "tester", None, clients)
        run.sink.event(
            {
                "t": round(now - run.t0, 6),
                "event": "worker_lost",
                "worker": w.index,
                "pid": w.proc.pid,
                "clients": clients,
                "why": why,
            }
        )
        print(f"soak: worker {w.index} (pid {w.proc.pid}) {why}", file=sys.stderr)

    # -- the end -----------------------------------------------------------------------

    async def _wind_down(self, status: str, end: float) -> None:
        """The schedule is over (or the run was stopped, ``status`` says
        how): the workers close their clients and send their last reports."""
        sig = {"interrupted": signal.SIGINT, "terminated": signal.SIGTERM}.get(status)
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
        self._aborted = True
        self._signal_all(signal.SIGINT)

    def _signal_all(self, sig: signal.Signals) -> None:
        for w in self.workers:
            if w.live:
                with contextlib.suppress(OSError):
                    w.proc.send_signal(sig)

    def reap(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                try:
                    w.proc.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    w.proc.kill()
                    w.proc.wait()
            if w.exit_code is None:
                w.exit_code = w.proc.returncode

    # -- summary.json --------------------------------------------------------------------

    def protocol_summary(self) -> dict[str, Any] | None:
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

    def checks(self) -> list[dict[str, Any]]:
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

    def summary(self) -> dict[str, Any]:
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
