"""A shard: this machine's part of a run over several (``soak run --shard
I/N --start-at TIME``), started by something else (a Kubernetes Indexed
Job, a CI matrix, a Slurm array, ssh). There is no coordinator: every shard
knows its part and its start from its arguments alone.

- **Its part.** Shard I of N runs :func:`shard_profile`: the share of every
  stage that a worker process of an N-worker run would get (soak.run.split:
  the shares add up to the whole), seed ``seed*1000+I``, client ids
  ``<prefix>-s<I>``. Only shard 0 runs storm commands and restarts and polls
  the server's count. No shard judges the thresholds: ``soak merge`` does,
  once, on the merged data. ``--workers`` splits a shard again.
- **Its start.** ``--start-at`` is a wall-clock instant, turned once into a
  ``CLOCK_MONOTONIC`` origin (:func:`origin_monotonic`): every shard's
  intervals and ``.hlog`` start times are the same spans of time, within
  the hosts' clock offset. The host's clock-sync state goes into the
  results (soak.run.shard_clock).
- **Late.** A shard that starts after its start time (a pod scheduled late,
  a replacement pod with the same index) joins the schedule where it is
  now, ramping within ``max_connecting``; the intervals it missed are
  written empty, and ``late_join_s`` says how late it was. A restarted
  shard writes a new directory next to the first (``.2``), never over it.

Files (:class:`ShardSink`, a :class:`~soak.run.source.Sink` around the
Recorder): ``results/<stamp>-<label>/<stamp>-shard-I-of-N/`` holds the usual
results plus ``shard.json`` (who, when, the clock, what the merge needs)
and ``storm_inputs.jsonl`` (what the storm detector would have been told,
appended each interval, for ``soak merge`` to replay across shards).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from soak.config.profile import Profile
from soak.config.stages import Storm
from soak.config.units import format_duration
from soak.metrics import Interval
from soak.recorder import Recorder
from soak.results.names import iso, run_dir_name
from soak.run.shard_clock import ClockState, clock_warning
from soak.run.split import slice_profile
from soak.schedule import Schedule
from soak.storm import StormInputs, StormLog
from soak.summary import EXIT_OK, EXIT_THRESHOLDS

SHARD_JSON = "shard.json"
STORM_INPUTS = "storm_inputs.jsonl"
DEFERRED = "deferred to soak merge"


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @property
    def name(self) -> str:
        return f"shard-{self.index}-of-{self.count}"


def shard_of(profile: Profile) -> Shard | None:
    """The profile's ``[run] shard`` ("I/N", already validated), or None."""
    text = profile.run.shard
    if text is None:
        return None
    index, count = (int(x) for x in text.split("/"))
    return Shard(index, count)


def shard_profile(profile: Profile, shard: Shard) -> Profile:
    """What shard ``shard`` runs of the whole ``profile``."""
    part = slice_profile(profile, shard.index, shard.count, tag="s")
    run = dataclasses.replace(part.run, workers=profile.run.workers)
    if shard.index != 0:
        return dataclasses.replace(part, run=run)
    # shard 0 also does what only one machine may do
    stages = tuple(
        dataclasses.replace(mine, command=whole.command, restart_url=whole.restart_url)
        if isinstance(mine, Storm) and isinstance(whole, Storm)
        else mine
        for mine, whole in zip(part.clients.stages, profile.clients.stages, strict=True)
    )
    clients = dataclasses.replace(part.clients, stages=stages)
    target = dataclasses.replace(part.target, stats=profile.target.stats)
    return dataclasses.replace(part, run=run, clients=clients, target=target)


def profile_digest(profile: Profile) -> str:
    """The same for every shard of one run: the whole profile (redacted),
    without what may differ between machines (which shard, where results
    go, the metrics and dashboard ports, processes per machine, the start, checked apart)."""
    d = profile.redacted()
    d.pop("path", None)
    for key in ("shard", "start_at", "results_dir", "metrics_port", "dashboard_port", "workers"):
        d["run"].pop(key, None)
    text = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def merge_facts(profile: Profile) -> dict[str, Any]:
    """What ``soak merge`` needs to know of the whole profile to judge it."""
    st = profile.storms
    return {
        "label": profile.run.label,
        "target": profile.redacted()["target"]["url"],
        "protocol": profile.target.protocol,
        "duration": profile.duration,
        "report_interval": profile.run.report_interval,
        "peak": profile.peak_clients,
        "heartbeat_interval": profile.heartbeat.interval,
        "storms": {"min_losses": st.min_losses, "window": st.window, "quiet": st.quiet},
        "thresholds": [dataclasses.asdict(th) for th in profile.thresholds],
    }


# -- the start (pure) -------------------------------------------------------------------


def origin_monotonic(start_at: float, wall_now: float, mono_now: float) -> float:
    """The start instant on this host's monotonic clock, from one reading of
    both clocks."""
    return mono_now + (start_at - wall_now)


def start_problem(start_at: float, wall_now: float, duration: float) -> str | None:
    """``--start-at`` so far in the past that the whole run is over."""
    end = start_at + duration
    if end > wall_now:
        return None
    return (
        f"--start-at {iso(start_at)}: a run of {format_duration(duration)} from then ended at "
        f"{iso(end)}, before now ({iso(wall_now)}); expected a start less than "
        f"{format_duration(duration)} ago"
    )


def late_by(start_at: float, wall_now: float) -> float:
    """How late a shard starts (0: on time or early)."""
    return max(0.0, wall_now - start_at)


def missed_planned(schedule: Schedule, late: float, every: float, duration: float) -> list[float]:
    """The planned client-seconds of each interval (``every`` seconds) in
    the first ``late`` seconds of a run: what a shard that joined that late
    never ran. Integrated in steps of at most a second (and a tenth of an
    interval), from the schedule's own count at each step's middle."""
    late = min(late, duration)
    out: list[float] = []
    step = min(1.0, every / 10)
    k = 0
    while k * every < late:
        lo, hi = k * every, min((k + 1) * every, late)
        total, t = 0.0, lo
        while t < hi:
            dt = min(step, hi - t)
            total += schedule.target(t + dt / 2) * dt
            t += dt
        out.append(round(total, 3))
        k += 1
    return out


def run_root(results_dir: str | Path, label: str, start_at: float) -> Path:
    """The directory every shard of a run writes its own directory into."""
    return Path(results_dir) / run_dir_name(label, start_at)


def shard_record(
    whole: Profile,
    shard: Shard,
    *,
    start_at: float,
    wall_now: float,
    clock: ClockState,
    planned: int,
    missed: list[float] | None = None,
) -> dict[str, Any]:
    """shard.json (also ``shard`` in run.json and summary.json)."""
    late = late_by(start_at, wall_now)
    return {
        "index": shard.index,
        "count": shard.count,
        "start_at": iso(start_at),
        "start_at_epoch": start_at,
        "started": iso(wall_now),
        "late_join_s": round(late, 3),
        "host": socket.gethostname(),
        "pod": os.environ.get("POD_NAME") or os.environ.get("HOSTNAME"),
        "planned_clients": planned,
        # planned client-seconds of each interval it joined too late for:
        # soak merge counts them as planned and not connected
        "missed_target_s": missed or [],
        "clock": clock.record(),
        "clock_warning": clock_warning(clock),
        "profile_digest": profile_digest(whole),
        "whole": merge_facts(whole),
        "profile": whole.redacted(),
    }


# -- the sink ---------------------------------------------------------------------------


class ShardSink:
    """A shard's results: the Recorder's files, plus ``shard.json`` and the
    storm inputs, and ``shard`` in run.json and summary.json. The verdict
    of a shard is deferred to ``soak merge``: a threshold failure here is
    not one (exit code 0); bad input, a permanent refusal and signals keep
    their exit codes."""

    def __init__(self, recorder: Recorder, record: dict[str, Any]) -> None:
        self.inner = recorder
        self.wall0 = recorder.wall0
        self.path = recorder.path
        self.record = record
        self.log: StormLog | None = None
        recorder.write_json(SHARD_JSON, record)
        # open for the run's life, closed by close()
        self._inputs: IO[str] | None = open(  # noqa: SIM115
            self.path / STORM_INPUTS, "a", encoding="utf-8"
        )

    def storm_log(self, t0: float) -> StormLog:
        """The Runner's ``storm_inputs``: this shard detects no storms."""
        self.log = StormLog(origin=t0)
        return self.log

    def _flush_inputs(self) -> None:
        if self.log is None or self._inputs is None:
            return
        ops = self.log.take()
        if ops:
            self._inputs.write("".join(json.dumps(op, separators=(",", ":")) + "\n" for op in ops))
        self._inputs.flush()

    def event(self, ev: dict[str, Any]) -> None:
        self.inner.event(ev)

    def write_interval(self, iv: Interval, extra: dict[str, Any]) -> dict[str, Any]:
        # the storm inputs first: an intervals.jsonl line means the rest is on disk
        self._flush_inputs()
        return self.inner.write_interval(iv, extra)

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        short = {k: self.record[k] for k in ("index", "count", "start_at", "late_join_s")}
        if name == "summary.json":
            data["shard"] = {**short, "planned_clients": self.record["planned_clients"]}
            if data.get("exit_code") in (EXIT_OK, EXIT_THRESHOLDS):
                data["own_verdict"] = data.get("verdict")
                data["exit_code"] = EXIT_OK
                data["verdict"] = DEFERRED
                data["passed"] = None
        elif name == "run.json":
            data["shard"] = short
        self.inner.write_json(name, data)

    def write_lines(self, name: str, records: list[dict[str, Any]]) -> None:
        self.inner.write_lines(name, records)

    def close(self) -> None:
        self._flush_inputs()
        if self._inputs is not None:
            self._inputs.close()
            self._inputs = None
        self.inner.close()


# -- a run's start, sharded or not ------------------------------------------------------


@dataclass
class Start:
    """Where a run's results go and when it starts: what ``soak run`` hands
    its Runner. ``origin_monotonic`` None: now."""

    profile: Profile  # what this machine runs (a shard's part)
    recorder: Recorder
    sink: Recorder | ShardSink
    origin_monotonic: float | None
    shard: Shard | None = None
    warning: str | None = None  # the clock's, for the shard's output

    @property
    def storm_inputs(self) -> Callable[[float], StormInputs] | None:
        """The Runner's ``storm_inputs``: a shard's log, else None (detect here)."""
        return self.sink.storm_log if isinstance(self.sink, ShardSink) else None

    def how(self) -> str:
        """For the "soak: running ..." line."""
        if self.shard is None:
            return ""
        late = self.sink.record["late_join_s"] if isinstance(self.sink, ShardSink) else 0.0
        text = f" as shard {self.shard.index} of {self.shard.count}"
        return text + (f", joining {late:g}s late" if late else "")


def begin(
    whole: Profile,
    *,
    wall_now: float,
    mono_now: float,
    clock: ClockState,
    default_lead: float = 0.0,
) -> Start:
    """The results directory and the origin of a run of ``whole``: a shard's
    (``[run] shard``), one with ``[run] start_at``, or a plain one starting
    ``default_lead`` seconds from now. Raises ValueError for a shard
    without a start, or a start so far back that the run is over
    (start_problem), and ResultsError when the directory cannot be written."""
    shard = shard_of(whole)
    start_at = whole.run.start_at
    if start_at is not None:
        problem = start_problem(start_at, wall_now, whole.duration)
        if problem is not None:
            raise ValueError(problem)
    if shard is None:
        wall0 = wall_now + default_lead if start_at is None else start_at
        origin = (
            (mono_now + default_lead if default_lead else None)
            if start_at is None
            else origin_monotonic(start_at, wall_now, mono_now)
        )
        recorder = Recorder(whole.run.results_dir, whole.run.label, wall0)
        return Start(whole, recorder, recorder, origin)
    if start_at is None:
        raise ValueError(
            f"--shard {shard.index}/{shard.count}: expected --start-at TIME too (or [run] "
            "start_at), the same in every shard, e.g. 2026-12-03T12:05:00Z"
        )
    part = shard_profile(whole, shard)
    root = run_root(whole.run.results_dir, whole.run.label, start_at)
    recorder = Recorder(root, shard.name, start_at)
    record = shard_record(
        whole,
        shard,
        start_at=start_at,
        wall_now=wall_now,
        clock=clock,
        planned=part.peak_clients,
        missed=missed_planned(
            Schedule(part.clients.stages),
            late_by(start_at, wall_now),
            part.run.report_interval,
            part.duration,
        ),
    )
    sink = ShardSink(recorder, record)
    origin = origin_monotonic(start_at, wall_now, mono_now)
    return Start(part, recorder, sink, origin, shard, record["clock_warning"])
