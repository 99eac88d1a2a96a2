"""The run's recorder: what the runner hands its events and finished
intervals to.

It keeps each interval's events until the interval ends (at most
:data:`MAX_EVENTS_PER_INTERVAL`; the rest are counted) and turns a finished
:class:`~soak.metrics.Interval` into its ``intervals.jsonl`` record. The
files themselves, their names and their format belong to
:mod:`soak.results` (:class:`soak.results.writer.RunWriter`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from soak.metrics import (
    HISTOGRAMS,
    Interval,
)
from soak.results import jsonl
from soak.results.names import RESULTS_FORMAT, iso, run_dir_name
from soak.results.writer import RunWriter

__all__ = [
    "MAX_EVENTS_PER_INTERVAL",
    "RESULTS_FORMAT",
    "Recorder",
    "interval_record",
    "iso",
    "now_wall",
    "rss_bytes",
    "run_dir_name",
]

# Events beyond this many in one interval are counted, not written: a mass
# disconnect of 50,000 clients should not stall the tester writing evidence.
MAX_EVENTS_PER_INTERVAL = 20_000


class Recorder:
    """A new results directory under ``root`` for the run ``label`` started
    at ``wall0``. Raises ResultsError when it cannot be written."""

    def __init__(self, root: str | Path, label: str, wall0: float) -> None:
        self.wall0 = wall0
        self._files = RunWriter(root, label, wall0, HISTOGRAMS)
        self.path = self._files.path
        self._pending_events: list[str] = []
        # at most this many events per interval; the rest are counted
        self.max_events = MAX_EVENTS_PER_INTERVAL
        self.events_dropped = 0
        self.events_written = 0

    # -- the manifest and the summary ---------------------------------------------

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Atomically (re)write a JSON document in the run directory."""
        self._files.write_document(name, data)

    def write_lines(self, name: str, records: list[dict[str, Any]]) -> None:
        """Write a JSONL document (e.g. the storms' 100 ms series) at once."""
        self._files.write_lines(name, records)

    # -- streaming -------------------------------------------------------------------

    def event(self, ev: dict[str, Any]) -> None:
        if len(self._pending_events) >= self.max_events:
            self.events_dropped += 1
            return
        ev.setdefault("ts", round(self.wall0 + ev.get("t", 0.0), 3))
        self._pending_events.append(jsonl.dumps(ev))

    def write_interval(self, iv: Interval, extra: dict[str, Any]) -> dict[str, Any]:
        """Append one finished interval to every file and flush them all.
        Returns the intervals.jsonl record."""
        record = interval_record(iv, extra)
        record["events_dropped"] = self.events_dropped
        self._files.append_interval(iv.start, iv.end, iv.hist, self._pending_events, record)
        self.events_written += len(self._pending_events)
        self._pending_events.clear()
        self.events_dropped = 0
        return record

    def close(self) -> None:
        self._files.close()


def interval_record(iv: Interval, extra: dict[str, Any]) -> dict[str, Any]:
    """The intervals.jsonl line for one interval (soak.metrics spells it)."""
    return iv.record(extra)


def rss_bytes() -> int:
    """The tester's resident set size, from /proc (Linux); 0 where unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def now_wall() -> float:
    return time.time()
