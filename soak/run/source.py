"""The two interfaces a run is composed of: where its load comes from (a
:class:`LoadSource`) and where its results go (a :class:`Sink`).

One :class:`~soak.run.runner.Runner` runs every run: it follows the
schedule, wakes at interval boundaries, polls the server's count, fires
storm stages' commands and restarts, watches signals, and writes the
summary. What differs between a run's kinds is only these two parts:

- ``soak run`` in one process: :class:`~soak.run.local.LocalClients`, to the
  Recorder (files);
- ``soak run --workers N``, the parent: :class:`~soak.run.processes.WorkerProcesses`,
  to the Recorder;
- each worker process: :class:`~soak.run.local.LocalClients`, to a
  :class:`~soak.run.sinks.PipeSink` (the pipe to the parent).

A shard of a run on another machine (a later issue) is a third of either:
on the coordinating machine, a source that stands for remote shards as
:class:`WorkerProcesses` stands for local processes (reports of intervals
in the wire form of :class:`~soak.metrics.Tally`, statuses, storm inputs
and a final summary, from a socket instead of a pipe); on each shard, an
ordinary run of :class:`LocalClients` whose sink sends those reports over
the network as :class:`PipeSink` sends them up a pipe. Neither needs a
change to the Runner.

The contract of a source, in the order the Runner calls it:

1. :meth:`LoadSource.manifest` once, for run.json.
2. ``await start(run, nursery)`` once, as the run starts: set up what
   outlives the load (an impairment proxy, readers of worker pipes)
   in ``nursery``, which lives until the run ends.
3. ``await drive(control)``: run the load while ``control`` (the Runner's
   schedule loop) runs; when it returns, end the load (close every client,
   or stop the workers and wait for their last reports) and return.
4. While ``control`` runs, at each wake-up: :meth:`over`, :meth:`follow`,
   :meth:`storm` (when a storm stage begins), :meth:`storm_tick`; at each
   interval boundary :meth:`gather`, :meth:`gauges`, then
   :meth:`rotated` once the next interval has begun; every
   ``status_every`` seconds (with a live view) :meth:`status`.
5. :meth:`abort` on a second Ctrl-C; :meth:`reap` in ``finally``, even
   after an abort; then :meth:`gauges` for the last (partial) interval
   and, for summary.json, :meth:`protocol_summary`,
   :meth:`checks` and :meth:`summary`. None of these may await.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from soak.client import Shared
from soak.config.profile import Profile
from soak.config.stages import Storm
from soak.metrics import Interval, Metrics
from soak.schedule import Schedule


class Sink(Protocol):
    """Where a run's results go: files (:class:`soak.recorder.Recorder`) or
    the pipe to a parent process (:class:`soak.run.sinks.PipeSink`)."""

    wall0: float  # the run's start, epoch seconds

    def event(self, ev: dict[str, Any]) -> None:
        """A rare event with its evidence (events.jsonl)."""

    def write_interval(self, iv: Interval, extra: dict[str, Any]) -> dict[str, Any]:
        """A finished interval; returns its intervals.jsonl record."""

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """run.json (the manifest, at the start and the end) or summary.json."""

    def write_lines(self, name: str, records: list[dict[str, Any]]) -> None:
        """A JSONL document written at once (storms.jsonl)."""

    def close(self) -> None:
        """No more intervals or events."""


@dataclass
class RunContext:
    """What a load source sees of the run it serves, from its start."""

    profile: Profile
    schedule: Schedule
    metrics: Metrics  # the run's: a source's measurements are added here
    sink: Sink
    shared: Shared  # the clients' services and the run's gauges (connected, gave_up...)
    rng: random.Random
    t0: float  # the run's start, trio time


class LoadSource(Protocol):
    """Where a run's load comes from. See the module's docstring for the
    order of the calls."""

    def manifest(self) -> dict[str, Any]:
        """What run.json says about the load's source (merged into it)."""

    async def start(self, run: RunContext, nursery: trio.Nursery) -> None:
        """Set up; ``nursery`` lives until the run ends."""

    async def drive(self, control: Callable[[], Awaitable[str]]) -> None:
        """Run the load while ``control`` runs; then end it. ``control``
        returns the run's status as it stopped: ``running`` (the schedule
        is over, or a source said :meth:`over`), or why it was stopped
        (``interrupted``, ``terminated``)."""

    def follow(self, t: float) -> None:
        """Seconds ``t`` into the run: bring the load to what the schedule
        says (clients opened or closed, churn)."""

    def storm(self, stage: Storm) -> None:
        """A storm stage begins: drop its share of the connections."""

    def over(self) -> str | None:
        """Why the run cannot go on (every client stopped after a permanent
        refusal, every worker ended), or None."""

    def storm_tick(self, now: float) -> None:
        """Let storm detection see the time (a storm may have ended)."""

    async def gather(self, at: float) -> None:
        """Before the interval ending at ``at`` (trio time) is closed: wait
        (briefly) for what it still needs."""

    def gauges(self, iv: Interval) -> None:
        """Sample the gauges into the interval about to close."""

    def rotated(self) -> None:
        """The run's next interval has just begun."""

    def status(self, elapsed: float) -> dict[str, Any]:
        """The live view's numbers (without ``elapsed`` and ``remaining``)."""

    def abort(self) -> None:
        """The run is being aborted (a second Ctrl-C)."""

    def reap(self) -> None:
        """The run is over: release what is left (processes)."""

    def protocol_summary(self) -> dict[str, Any] | None:
        """summary.json's ``protocol`` numbers (OpenClaw's ticks), or None."""

    def checks(self) -> list[dict[str, Any]]:
        """Verdicts of the source's own (a lost worker), after the thresholds."""

    def summary(self) -> dict[str, Any]:
        """What summary.json says about the load's source (merged into it)."""
