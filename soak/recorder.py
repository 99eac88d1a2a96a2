"""Streaming, crash-safe results writer.

Layout of ``results/<UTC stamp>-<label>/`` (DESIGN.md, "Results directory"):

- ``run.json``         manifest; rewritten atomically (temp file + rename)
- ``intervals.jsonl``  one line per interval, appended and flushed
- ``<name>.hlog``      HdrHistogram V2 interval logs, one per histogram
- ``events.jsonl``     rare events with their evidence
- ``summary.json``     totals, percentiles, verdicts; written at the end

Every append-only file is flushed at each interval boundary, so a run killed
with SIGKILL loses at most the interval in progress. The kernel keeps what
was flushed even if the process dies; ``fsync`` would only add protection
against a power cut, at a cost paid every interval, so it is done only for
the manifest and the summary.

The ``.hlog`` files are written by hand, not with ``hdrh``'s
``HistogramLogWriter``, whose ``output_start_time`` raises and whose base
time handling doubles timestamps (CALIBRATION.md). They follow the
HdrHistogram log format 1.3: timestamps in seconds relative to ``BaseTime``,
the interval max in milliseconds, and the compressed V2 histogram.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from soak.errors import ResultsError
from soak.metrics import HISTOGRAMS, Interval

RESULTS_FORMAT = 1
# Events beyond this many in one interval are counted, not written: a mass
# disconnect of 50,000 clients should not stall the tester writing evidence.
MAX_EVENTS_PER_INTERVAL = 20_000


def run_dir_name(label: str, wall: float) -> str:
    stamp = datetime.fromtimestamp(wall, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{label}"


def iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")


class Recorder:
    def __init__(self, root: str | Path, label: str, wall0: float) -> None:
        self.wall0 = wall0
        base = Path(root)
        name = run_dir_name(label, wall0)
        path = base / name
        n = 1
        try:
            base.mkdir(parents=True, exist_ok=True)
            while True:
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    n += 1
                    path = base / f"{name}.{n}"
            self.path = path
            self._intervals = self._open("intervals.jsonl")
            self._events = self._open("events.jsonl")
            self._hlogs = {h: self._open(f"{h}.hlog") for h in HISTOGRAMS}
        except OSError as exc:
            raise ResultsError(
                f"{base}: cannot write results here (run.results_dir or --results-dir): "
                f"{exc.strerror or exc}"
            ) from exc
        for h, f in self._hlogs.items():
            f.write(
                f"#[Histogram log format version 1.3]\n"
                f"#[soak histogram '{h}', values in microseconds]\n"
                f"#[StartTime: {wall0:.3f} (seconds since epoch), {iso(wall0)}]\n"
                f"#[BaseTime: {wall0:.3f} (seconds since epoch)]\n"
                '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n'
            )
            f.flush()
        self._pending_events: list[str] = []
        # at most this many events per interval; the rest are counted
        self.max_events = MAX_EVENTS_PER_INTERVAL
        self.events_dropped = 0
        self.events_written = 0

    def _open(self, name: str) -> IO[str]:
        return open(self.path / name, "a", encoding="utf-8")

    # -- the manifest and the summary ---------------------------------------------

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Atomically (re)write a JSON document in the run directory."""
        target = self.path / name
        tmp = target.with_suffix(".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, sort_keys=False)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            raise ResultsError(f"{target}: cannot write: {exc.strerror or exc}") from exc

    def write_lines(self, name: str, records: list[dict[str, Any]]) -> None:
        """Write a JSONL document (e.g. the storms' 100 ms series) at once."""
        target = self.path / name
        try:
            with open(target, "w", encoding="utf-8") as f:
                for rec in records:
                    f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        except OSError as exc:
            raise ResultsError(f"{target}: cannot write: {exc.strerror or exc}") from exc

    # -- streaming -------------------------------------------------------------------

    def event(self, ev: dict[str, Any]) -> None:
        if len(self._pending_events) >= self.max_events:
            self.events_dropped += 1
            return
        ev.setdefault("ts", round(self.wall0 + ev.get("t", 0.0), 3))
        self._pending_events.append(json.dumps(ev, separators=(",", ":")))

    def write_interval(self, iv: Interval, extra: dict[str, Any]) -> dict[str, Any]:
        """Append one finished interval to every file and flush them all.
        Returns the intervals.jsonl record."""
        record = interval_record(iv, extra)
        record["events_dropped"] = self.events_dropped
        try:
            for h, f in self._hlogs.items():
                hist = iv.hist[h]
                payload = hist.encode().decode("ascii")
                f.write(
                    f"{iv.start:.3f},{iv.end - iv.start:.3f},"
                    f"{hist.get_max_value() / 1000.0:.3f},{payload}\n"
                )
                f.flush()
            if self._pending_events:
                self._events.write("\n".join(self._pending_events) + "\n")
                self.events_written += len(self._pending_events)
                self._pending_events.clear()
            self._events.flush()
            self._intervals.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._intervals.flush()
        except OSError as exc:
            raise ResultsError(
                f"{self.path}: cannot append results: {exc.strerror or exc}"
            ) from exc
        self.events_dropped = 0
        return record

    def close(self) -> None:
        for f in (self._intervals, self._events, *self._hlogs.values()):
            with contextlib.suppress(OSError):
                f.close()


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
