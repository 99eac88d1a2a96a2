"""Reading a results directory back: what `soak report` and `soak compare`
start from.

It must work on any run the recorder can leave behind: a complete one, one
killed partway (no summary.json, a torn last line), one that never
connected. Damage is skipped and counted, never fatal: a corrupt line of
``intervals.jsonl`` or of a ``.hlog`` is reported in :attr:`Run.problems`
and the rest is still read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from soak.errors import ResultsError
from soak.metrics import HISTOGRAMS, new_histogram


class RunError(ResultsError):
    """A directory that is not a readable soak run."""


@dataclass
class HlogInterval:
    start: float  # seconds since the run started
    length: float
    hist: HdrHistogram


@dataclass
class Run:
    path: Path
    manifest: dict[str, Any]
    summary: dict[str, Any] | None  # None: the run was killed before writing it
    intervals: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)

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
        recorded in problems)."""
        path = self.path / "events.jsonl"
        if not path.exists():
            return
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    self.problems.append(f"{path}: line {n}: not JSON, skipped")
                    continue
                if isinstance(ev, dict):
                    yield ev

    def histograms(self, name: str) -> list[HlogInterval]:
        """The per-interval histograms of ``<name>.hlog`` (values in
        microseconds). Corrupt lines are skipped and recorded in problems."""
        return list(self.iter_histograms(name))

    def iter_histograms(self, name: str) -> Iterator[HlogInterval]:
        """:meth:`histograms` one at a time: a decoded histogram holds ~190 KB
        of counts, so a 24-hour run's 8,640 of them are 1.6 GB as a list."""
        if name not in HISTOGRAMS:
            raise ValueError(f"unknown histogram {name!r}; expected one of {HISTOGRAMS}")
        path = self.path / f"{name}.hlog"
        if not path.exists():
            self.problems.append(f"{path}: missing")
            return
        with open(path, encoding="ascii", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if not line.strip() or line.startswith(("#", '"')):
                    continue
                parsed = _parse_hlog_line(line)
                if parsed is None:
                    self.problems.append(f"{path}: line {n}: corrupt histogram, skipped")
                    continue
                yield parsed

    def merged(self, name: str) -> HdrHistogram:
        """All intervals of one histogram added together."""
        total = new_histogram()
        for iv in self.iter_histograms(name):
            total.add(iv.hist)
        return total


def _parse_hlog_line(line: str) -> HlogInterval | None:
    parts = line.strip().split(",")
    if parts and parts[0].startswith("Tag="):
        parts = parts[1:]
    if len(parts) != 4:
        return None
    try:
        start = float(parts[0])
        length = float(parts[1])
        hist = HdrHistogram.decode(parts[3].encode("ascii"))
    except Exception:  # hdrh raises a variety of errors on a torn payload
        return None
    if hist is None:
        return None
    return HlogInterval(start, length, hist)


def load_run(path: str | Path) -> Run:
    """Read a run directory. Raises RunError when it is not one."""
    p = Path(path)
    if not p.is_dir():
        raise RunError(f"{p}: not a directory (expected a soak results directory)")
    manifest_path = p / "run.json"
    if not manifest_path.exists():
        raise RunError(f"{p}: not a soak run: no run.json")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{manifest_path}: unreadable: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("tool") != "soak":
        raise RunError(f"{manifest_path}: not a soak run manifest")
    problems: list[str] = []
    summary: dict[str, Any] | None = None
    summary_path = p / "summary.json"
    if summary_path.exists():
        try:
            loaded = json.loads(summary_path.read_text(encoding="utf-8"))
            summary = loaded if isinstance(loaded, dict) else None
        except (OSError, ValueError):
            problems.append(f"{summary_path}: unreadable, ignored")
    intervals: list[dict[str, Any]] = []
    iv_path = p / "intervals.jsonl"
    if iv_path.exists():
        with open(iv_path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    problems.append(f"{iv_path}: line {n}: not JSON, skipped")
                    continue
                if isinstance(rec, dict):
                    intervals.append(rec)
    else:
        problems.append(f"{iv_path}: missing")
    return Run(p, manifest, summary, intervals, problems)
