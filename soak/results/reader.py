"""Reading a results directory back: what `soak report`, `soak compare` and
the benchmarks start from.

It must work on any run the recorder can leave behind: a complete one, one
killed partway (no summary.json, a torn last line), one that never
connected. Damage is skipped and counted, never fatal: a corrupt line of
``intervals.jsonl``, ``events.jsonl``, ``storms.jsonl`` or of a ``.hlog``,
and a missing file, are reported in :attr:`Run.problems` (and counted in
:attr:`Run.skipped`), and the rest is still read.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from soak.errors import ResultsError
from soak.metrics import HISTOGRAMS, new_histogram
from soak.results import hlog, jsonl
from soak.results.hlog import HlogInterval
from soak.results.names import EVENTS, INTERVALS, RUN_JSON, STORMS, SUMMARY, hlog_name
from soak.results.problems import Problems

__all__ = ["HlogInterval", "Run", "RunError", "load_run"]


class RunError(ResultsError):
    """A directory that is not a readable soak run."""


@dataclass
class Run:
    path: Path
    manifest: dict[str, Any]
    summary: dict[str, Any] | None  # None: the run was killed before writing it
    intervals: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    # what was skipped while reading, counted; its messages are ``problems``
    damage: Problems = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.damage = Problems(self.problems)

    @property
    def skipped(self) -> Counter[str]:
        """Lines skipped so far, by file name."""
        return self.damage.skipped

    @property
    def label(self) -> str:
        return str(self.manifest.get("label") or self.path.name)

    @property
    def partial(self) -> bool:
        if self.summary is None:
            return True
        return bool(self.summary.get("partial", False))

    @property
    def status(self) -> str:
        if self.summary is not None:
            return str(self.summary.get("status", "unknown"))
        return str(self.manifest.get("status") or "killed")

    def events(self) -> Iterator[dict[str, Any]]:
        """events.jsonl, one dict per line; damaged lines are skipped (and
        recorded in problems), as is a missing file."""
        path = self.path / EVENTS
        if not path.exists():
            self.damage.file_missing(path)
            return
        yield from jsonl.read_records(path, self.damage)

    def histograms(self, name: str) -> list[HlogInterval]:
        """The per-interval histograms of ``<name>.hlog`` (values in
        microseconds). Corrupt lines are skipped and recorded in problems."""
        return list(self.iter_histograms(name))

    def iter_histograms(self, name: str) -> Iterator[HlogInterval]:
        """:meth:`histograms` one at a time: a decoded histogram holds ~190 KB
        of counts, so a 24-hour run's 8,640 of them are 1.6 GB as a list."""
        if name not in HISTOGRAMS:
            raise ValueError(f"unknown histogram {name!r}; expected one of {HISTOGRAMS}")
        return hlog.read(self.path / hlog_name(name), self.damage)

    def merged(self, name: str) -> HdrHistogram:
        """All intervals of one histogram added together."""
        total = new_histogram()
        for iv in self.iter_histograms(name):
            total.add(iv.hist)
        return total

    def storm_series(self) -> list[dict[str, Any]]:
        """storms.jsonl: one ``Storm.series()`` dict per line. A line that is
        not JSON, or not a storm series (an int ``index`` and ``attempts``,
        ``in_flight`` and ``recovered_pct`` lists), is skipped and recorded
        in problems. [] when the file is missing (a run without storms) or
        empty."""
        path = self.path / STORMS
        if not path.exists():
            return []
        out: list[dict[str, Any]] = []
        try:
            for n, rec in jsonl.read_lines(path, self.damage):
                if not _is_storm_series(rec):
                    self.damage.skip(path, n, "not a storm series")
                    continue
                out.append(rec)
        except OSError as exc:
            self.damage.note(f"{path}: unreadable: {exc.strerror or exc}")
        return out


def _is_storm_series(rec: Any) -> bool:
    if not isinstance(rec, dict):
        return False
    index = rec.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        return False
    bucket = rec.get("bucket_s", 0.1)
    if not isinstance(bucket, int | float) or isinstance(bucket, bool) or not 0 < bucket <= 60:
        return False
    return all(isinstance(rec.get(k), list) for k in ("attempts", "in_flight", "recovered_pct"))


def load_run(path: str | Path) -> Run:
    """Read a run directory. Raises RunError when it is not one."""
    p = Path(path)
    if not p.is_dir():
        raise RunError(f"{p}: not a directory (expected a soak results directory)")
    manifest_path = p / RUN_JSON
    if not manifest_path.exists():
        raise RunError(f"{p}: not a soak run: no run.json")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{manifest_path}: unreadable: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("tool") != "soak":
        raise RunError(f"{manifest_path}: not a soak run manifest")
    run = Run(p, manifest, None, [])
    summary_path = p / SUMMARY
    if summary_path.exists():
        try:
            loaded = json.loads(summary_path.read_text(encoding="utf-8"))
            run.summary = loaded if isinstance(loaded, dict) else None
        except (OSError, ValueError):
            run.damage.note(f"{summary_path}: unreadable, ignored")
    iv_path = p / INTERVALS
    if iv_path.exists():
        run.intervals.extend(jsonl.read_records(iv_path, run.damage))
    else:
        run.damage.file_missing(iv_path)
    return run
