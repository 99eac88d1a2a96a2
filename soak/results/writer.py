"""The streaming, crash-safe writer of one results directory.

Every append-only file is written at each interval boundary, with no
buffer held back, so a run killed with SIGKILL loses at most the interval
in progress. The kernel keeps what was written even if the process dies;
``fsync`` would only add protection against a power cut, at a cost paid
every interval, so it is done only for the documents (the manifest and the
summary).

Within an interval the ``.hlog`` lines are written first, then the events,
then the ``intervals.jsonl`` line: a line in ``intervals.jsonl`` means the
rest of its interval is on disk. An interval is written to every file or
to none (:meth:`RunWriter.append` cuts the files it had already extended
back to their sizes before), so a write that fails (a full disk, an I/O
error) leaves no half line and no half interval, and the same interval can
be written again later. Holding what could not be written and trying
again is the :class:`~soak.recorder.Recorder`'s part.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from soak.errors import ResultsError
from soak.results import hlog, jsonl
from soak.results.disk import Disk
from soak.results.names import EVENTS, INTERVALS, hlog_name, run_dir_name

# One interval's bytes for each file it adds to, by file name.
Chunk = dict[str, bytes]


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


def chunk_size(chunk: Chunk) -> int:
    return sum(len(b) for b in chunk.values())


def removed() -> OSError:
    return OSError(errno.ENOENT, "the results directory or one of its files was removed")


class RunWriter:
    """The files of one new run directory under ``root``: the interval logs
    of ``histograms``, ``intervals.jsonl`` and ``events.jsonl`` open for
    appending, and the JSON documents written whole. The constructor raises
    ResultsError (with the directory) when it cannot start the directory;
    after that every method raises OSError and leaves the files as they
    were. ``disk``: the file operations (a test's can fail)."""

    def __init__(
        self,
        root: str | Path,
        label: str,
        wall0: float,
        histograms: Sequence[str],
        disk: Disk | None = None,
    ) -> None:
        self.disk = disk or Disk()
        self.histograms = tuple(histograms)
        # the order an interval is written in: intervals.jsonl last
        self.names = (*(hlog_name(h) for h in self.histograms), EVENTS, INTERVALS)
        self._headers = {hlog_name(h): hlog.header(h, wall0).encode() for h in self.histograms}
        self._fds: dict[str, int] = {}
        base = Path(root)
        try:
            self.path = _new_run_dir(base, label, wall0)
            for name in self.names:
                self._fds[name] = self.disk.open(self.path / name)
            for name, head in self._headers.items():
                self.disk.append(self._fds[name], head)
        except OSError as exc:
            self.close()
            raise ResultsError(
                f"{base}: cannot write results here (run.results_dir or --results-dir): "
                f"{exc.strerror or exc}"
            ) from exc

    # -- intervals ------------------------------------------------------------------

    def chunk(
        self,
        start: float,
        end: float,
        hists: Mapping[str, Any],
        events: Sequence[str],
        record: dict[str, Any],
    ) -> Chunk:
        """One finished interval's bytes: each histogram's ``.hlog`` line
        (times in seconds since the run started), the events (already JSON
        lines, see :func:`soak.results.jsonl.dumps`) and the
        ``intervals.jsonl`` record."""
        out: Chunk = {
            hlog_name(h): hlog.line(start, end - start, hists[h]).encode() for h in self.histograms
        }
        if events:
            out[EVENTS] = ("\n".join(events) + "\n").encode()
        out[INTERVALS] = (jsonl.dumps(record) + "\n").encode()
        return out

    def append_interval(
        self,
        start: float,
        end: float,
        hists: Mapping[str, Any],
        events: Sequence[str],
        record: dict[str, Any],
    ) -> None:
        """:meth:`chunk` and :meth:`append` at once. Raises OSError."""
        self.append(self.chunk(start, end, hists, events, record))

    def append(self, chunk: Chunk) -> None:
        """Append an interval (or only events) to every file it names, or
        to none: on failure, the files already extended are cut back.
        Raises OSError; a removed directory or file is ENOENT (see
        :meth:`restore`)."""
        if not self.intact():
            raise removed()
        done: list[tuple[int, int]] = []
        try:
            for name in self.names:
                data = chunk.get(name)
                if data:
                    fd = self._fds[name]
                    done.append((fd, self.disk.append(fd, data)))
        except OSError:
            for fd, before in done:
                try:
                    self.disk.truncate(fd, before)
                except OSError:
                    pass  # the reader skips a torn last line, and says so
            raise

    def intact(self) -> bool:
        """Whether every file is still where it was made."""
        return all(self.disk.same(fd, self.path / name) for name, fd in self._fds.items())

    def restore(self) -> None:
        """After the directory or a file was removed: make them again and
        copy into each what the old one held (it is still readable through
        its descriptor), so nothing written before is lost. Raises
        OSError, leaving the old descriptors in use."""
        self.disk.mkdir(self.path)
        for name, old in list(self._fds.items()):
            path = self.path / name
            if self.disk.same(old, path):
                continue
            new = self.disk.open(path)
            try:
                self.disk.copy(old, new)
            except OSError:
                self.disk.close(new)
                raise
            self._fds[name] = new
            self.disk.close(old)

    # -- documents ----------------------------------------------------------------

    def write_document(self, name: str, data: dict[str, Any]) -> None:
        """Atomically (re)write a JSON document in the run directory.
        Raises OSError."""
        self._replace(name, json.dumps(data, indent=2) + "\n", sync=True)

    def write_lines(self, name: str, records: list[dict[str, Any]]) -> None:
        """Write a JSONL file (e.g. the storms' 100 ms series) at once,
        atomically. Raises OSError."""
        self._replace(name, "".join(jsonl.dumps(r) + "\n" for r in records), sync=False)

    def _replace(self, name: str, text: str, *, sync: bool) -> None:
        self.disk.mkdir(self.path)  # it may have been removed
        self.disk.replace(self.path / name, text, sync=sync)

    def close(self) -> None:
        for fd in self._fds.values():
            self.disk.close(fd)
        self._fds.clear()
