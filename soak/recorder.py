"""The run's recorder: what the runner hands its events and finished
intervals to.

It keeps each interval's events until the interval ends (at most
:data:`MAX_EVENTS_PER_INTERVAL`; the rest are counted) and turns a finished
:class:`~soak.metrics.Interval` into its ``intervals.jsonl`` record. The
files themselves, their names and their format belong to
:mod:`soak.results` (:class:`soak.results.writer.RunWriter`).

A write that fails (a full disk, an I/O error, the directory removed) does
not stop the run: the interval is held in memory (:class:`Backlog`, at most
:data:`MAX_HELD_BYTES`; past that an interval's events, then whole
intervals, are dropped and counted), a ``results_write_failed`` event is
recorded, every later interval tries again, oldest first, and
``results_write_recovered`` says when the backlog was written. A document
(run.json, summary.json, storms.jsonl) that cannot be written is tried
again too. What is still missing when the run ends goes into summary.json's
``results`` (when that can be written) and makes the exit code
:data:`~soak.summary.EXIT_RESULTS` (see :meth:`Recorder.write_json`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from soak.limits import memory_available
from soak.metrics import (
    HISTOGRAMS,
    Interval,
)
from soak.results import jsonl
from soak.results.backlog import Backlog, Failure, describe, plural
from soak.results.disk import Disk
from soak.results.names import EVENTS, RESULTS_FORMAT, SUMMARY, iso, run_dir_name
from soak.results.writer import RunWriter
from soak.run.memory import MemoryWatch, default_budget
from soak.summary import EXIT_RESULTS

__all__ = [
    "MAX_EVENTS_PER_INTERVAL",
    "MAX_HELD_BYTES",
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

# What a run holds in memory while its results cannot be written: about
# six hours of 1 s intervals of a quiet run, a few minutes of a stormy one.
MAX_HELD_BYTES = 64 << 20


@dataclass
class _Doc:
    kind: str  # "json" or "lines"
    data: Any
    error: str | None = None  # why its last version is not on disk


class Recorder:
    """A new results directory under ``root`` for the run ``label`` started
    at ``wall0``. Raises ResultsError when the directory cannot be made;
    later failures to write are held and retried, never raised.
    ``disk``: the file operations (a test's can fail). ``memory_budget``:
    bytes the tester may hold before it warns (soak.run.memory), by default
    from what the machine has; None: no watch."""

    def __init__(
        self,
        root: str | Path,
        label: str,
        wall0: float,
        *,
        disk: Disk | None = None,
        max_held_bytes: int = MAX_HELD_BYTES,
        memory_budget: int | Literal["machine"] | None = "machine",
    ) -> None:
        self.wall0 = wall0
        self._files = RunWriter(root, label, wall0, HISTOGRAMS, disk)
        self.path = self._files.path
        self._pending_events: list[str] = []
        # at most this many events per interval; the rest are counted
        self.max_events = MAX_EVENTS_PER_INTERVAL
        self.events_dropped = 0
        self.events_written = 0
        self.backlog = Backlog(max_held_bytes)
        self._docs: dict[str, _Doc] = {}
        self._closed = False
        self._last_t = 0.0
        self._amended: str | None = None  # the run's own verdict, once summary.json is amended
        if memory_budget == "machine":
            memory_budget = default_budget(rss_bytes(), memory_available())
        self.memory = MemoryWatch(memory_budget)

    # -- the manifest and the summary ---------------------------------------------

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Atomically (re)write a JSON document in the run directory; held
        and retried when it cannot be. summary.json is amended first: its
        ``results`` says what is not on disk and, when anything is not,
        its exit code is EXIT_RESULTS and its verdict says so (the dict
        given is changed: the runner returns its exit code)."""
        if name == SUMMARY:
            self._flush()
            self._amend(data)
        self._docs[name] = _Doc("json", data)
        self._write_doc(name)
        if name == SUMMARY and self._docs[name].error is not None:
            self._amend(data)  # now saying that summary.json itself is missing

    def write_lines(self, name: str, records: list[dict[str, Any]]) -> None:
        """Write a JSONL document (e.g. the storms' 100 ms series) at once."""
        self._docs[name] = _Doc("lines", records)
        self._write_doc(name)

    def _write_doc(self, name: str) -> None:
        doc = self._docs[name]
        try:
            if doc.kind == "json":
                self._files.write_document(name, doc.data)
            else:
                self._files.write_lines(name, doc.data)
        except OSError as exc:
            doc.error = describe(exc)
            self._failed(self._last_t, doc.error)
        else:
            doc.error = None

    # -- streaming -------------------------------------------------------------------

    def event(self, ev: dict[str, Any]) -> None:
        if len(self._pending_events) >= self.max_events:
            self.events_dropped += 1
            return
        ev.setdefault("ts", round(self.wall0 + ev.get("t", 0.0), 3))
        self._pending_events.append(jsonl.dumps(ev))

    def write_interval(self, iv: Interval, extra: dict[str, Any]) -> dict[str, Any]:
        """Append one finished interval to every file (or hold it, when
        that fails, with those before it that failed). Returns the
        intervals.jsonl record."""
        record = interval_record(iv, extra)
        warning = self.memory.observe(int(record.get("rss_bytes") or 0), iv.end)
        if warning is not None:
            self.event(warning)
        record["events_dropped"] = self.events_dropped
        events, self._pending_events = self._pending_events, []
        self.events_dropped = 0
        files = self._files

        def chunk(evs: list[str]) -> dict[str, bytes]:
            return files.chunk(iv.start, iv.end, iv.hist, evs, record)

        self.backlog.hold(iv.index, iv.start, iv.end, events, record, chunk)
        self.events_written += len(events)
        self._last_t = iv.end
        self._flush()
        return record

    def _flush(self) -> None:
        """Write what is held, oldest first, and the documents not yet on
        disk; stop at the first failure."""
        if self._closed:
            return
        t = self._last_t
        try:
            if not self._files.intact():
                self._files.restore()
                for doc in self._docs.values():
                    doc.error = doc.error or "the directory was removed"
                self.event(
                    {
                        "t": round(t, 6),
                        "event": "results_restored",
                        "why": "the results directory or one of its files was removed",
                        "action": "made again, with everything written before copied back",
                    }
                )
            self.backlog.write(self._files.append)
        except OSError as exc:
            self._failed(t, describe(exc))
            return
        for name, doc in self._docs.items():
            if doc.error is not None:
                self._write_doc(name)
                if doc.error is not None:
                    return
        done = self.backlog.recovered(t)
        if done is not None:
            self.event(done)

    def _failed(self, t: float, error: str) -> None:
        first = self.backlog.failed(t, error)
        if first is not None:
            self.event(first)

    def close(self) -> None:
        """The last try at what is held, then the events that came after
        the last interval (a recovery's own event among them)."""
        self._flush()
        if self._pending_events and not self.backlog.failure:
            try:
                self._files.append({EVENTS: ("\n".join(self._pending_events) + "\n").encode()})
                self.events_written += len(self._pending_events)
            except OSError as exc:
                self._failed(self._last_t, describe(exc))
                self.backlog.lost_events += len(self._pending_events)
            self._pending_events.clear()
        self._closed = True
        self._files.close()

    # -- what is missing -------------------------------------------------------------

    @property
    def failure(self) -> Failure | None:
        """The write failure not yet recovered from, or None."""
        return self.backlog.failure

    def health(self) -> str | None:
        """One line for the live view while results are not being written
        (or were lost), or the tester's memory is near its budget; else
        None."""
        lines = [x for x in (self.backlog.health(), self.memory.health()) if x]
        return "; ".join(lines) or None

    def missing(self) -> list[str]:
        """What of this run is not on disk, one line each; empty when the
        results directory holds everything."""
        lines = self.backlog.missing()
        if self._pending_events and self._closed:
            kinds = sorted({json.loads(e).get("event", "?") for e in self._pending_events})
            lines.append(
                f"events.jsonl: {plural(len(self._pending_events), 'event')} after the last "
                f"interval ({', '.join(kinds)})"
            )
        for name, doc in self._docs.items():
            if doc.error is not None:
                lines.append(f"{name}: its last version is not written: {doc.error}")
        return lines

    def _amend(self, summary: dict[str, Any]) -> None:
        missing = self.missing()
        if self._amended is None:
            self._amended = str(summary.get("verdict", ""))
        summary["results"] = {
            "complete": not missing,
            "missing": missing,
            **self.backlog.counts(),
        }
        tester = summary.get("tester")
        if isinstance(tester, dict):
            tester.update(self.memory.summary())
        if missing:
            summary["exit_code"] = EXIT_RESULTS
            more = (
                f" (and {len(missing) - 1} more, see results.missing)" if len(missing) > 1 else ""
            )
            summary["verdict"] = f"results incomplete: {missing[0]}{more}; the run: {self._amended}"
            summary["passed"] = False


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
