"""The streaming, crash-safe writer of one results directory.

Every append-only file is flushed at each interval boundary, so a run killed
with SIGKILL loses at most the interval in progress. The kernel keeps what
was flushed even if the process dies; ``fsync`` would only add protection
against a power cut, at a cost paid every interval, so it is done only for
the documents (the manifest and the summary).

Within an interval the ``.hlog`` lines are written first, then the events,
then the ``intervals.jsonl`` line: a line in ``intervals.jsonl`` means the
rest of its interval is on disk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from soak.errors import ResultsError
from soak.results import hlog, jsonl
from soak.results.names import EVENTS, INTERVALS, hlog_name, run_dir_name


def _new_run_dir(base: Path, label: str, wall0: float) -> Path:
    """``base/<stamp>-<label>``, or ``.2``, ``.3``... when it exists. Raises
    OSError."""
    name = run_dir_name(label, wall0)
    base.mkdir(parents=True, exist_ok=True)
    path = base / name
    n = 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
            path = base / f"{name}.{n}"


class RunWriter:
    """The files of one new run directory under ``root``: the interval logs
    of ``histograms``, ``intervals.jsonl`` and ``events.jsonl`` open for
    appending, and the JSON documents written whole. Raises ResultsError
    (with the directory) when it cannot write."""

    def __init__(
        self, root: str | Path, label: str, wall0: float, histograms: Sequence[str]
    ) -> None:
        base = Path(root)
        try:
            self.path = _new_run_dir(base, label, wall0)
            self._intervals = self._open(INTERVALS)
            self._events = self._open(EVENTS)
            self._hlogs = {h: self._open(hlog_name(h)) for h in histograms}
            for h, f in self._hlogs.items():
                f.write(hlog.header(h, wall0))
                f.flush()
        except OSError as exc:
            raise ResultsError(
                f"{base}: cannot write results here (run.results_dir or --results-dir): "
                f"{exc.strerror or exc}"
            ) from exc

    def _open(self, name: str) -> IO[str]:
        return open(self.path / name, "a", encoding="utf-8")

    def write_document(self, name: str, data: dict[str, Any]) -> None:
        """Atomically (re)write a JSON document in the run directory."""
        target = self.path / name
        try:
            jsonl.write_document(target, data)
        except OSError as exc:
            raise ResultsError(f"{target}: cannot write: {exc.strerror or exc}") from exc

    def write_lines(self, name: str, records: list[dict[str, Any]]) -> None:
        """Write a JSONL file (e.g. the storms' 100 ms series) at once."""
        target = self.path / name
        try:
            jsonl.write_lines(target, records)
        except OSError as exc:
            raise ResultsError(f"{target}: cannot write: {exc.strerror or exc}") from exc

    def append_interval(
        self,
        start: float,
        end: float,
        hists: Mapping[str, Any],
        events: Sequence[str],
        record: dict[str, Any],
    ) -> None:
        """One finished interval: each histogram's ``.hlog`` line (times in
        seconds since the run started), the events (already JSON lines, see
        :func:`soak.results.jsonl.dumps`) and the ``intervals.jsonl`` record;
        every file flushed."""
        try:
            for h, f in self._hlogs.items():
                f.write(hlog.line(start, end - start, hists[h]))
                f.flush()
            if events:
                self._events.write("\n".join(events) + "\n")
            self._events.flush()
            self._intervals.write(jsonl.dumps(record) + "\n")
            self._intervals.flush()
        except OSError as exc:
            raise ResultsError(
                f"{self.path}: cannot append results: {exc.strerror or exc}"
            ) from exc

    def close(self) -> None:
        for f in (self._intervals, self._events, *self._hlogs.values()):
            with contextlib.suppress(OSError):
                f.close()
