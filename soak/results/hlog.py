"""HdrHistogram interval logs (``<name>.hlog``), written and read.

The files follow the HdrHistogram log format 1.3, so HistogramLogAnalyzer
and ``hdrh.log.HistogramLogReader`` read them: a header, then one line per
interval, ``start,length,max,payload`` with the start in seconds relative to
``BaseTime`` (the run's wall-clock start), the interval's max in
milliseconds and its compressed V2 histogram (values in microseconds).

They are written here by hand, not with ``hdrh``'s ``HistogramLogWriter``,
whose ``output_start_time`` raises and whose base time handling doubles
timestamps. Every histogram read back is decoded by
:func:`soak.metrics.decode_histogram`, the one decode path (it breaks the
histogram/encoder reference cycle that made memory grow).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from soak.metrics import decode_histogram, encode_histogram
from soak.results.names import iso
from soak.results.problems import Problems

VERSION_LINE = "#[Histogram log format version 1.3]"
COLUMNS_LINE = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'


def header(name: str, wall0: float) -> str:
    """The five header lines of ``<name>.hlog`` for a run started at ``wall0``
    (seconds since the epoch)."""
    return (
        f"{VERSION_LINE}\n"
        f"#[soak histogram '{name}', values in microseconds]\n"
        f"#[StartTime: {wall0:.3f} (seconds since epoch), {iso(wall0)}]\n"
        f"#[BaseTime: {wall0:.3f} (seconds since epoch)]\n"
        f"{COLUMNS_LINE}\n"
    )


def line(start: float, length: float, hist: Any) -> str:
    """One interval's line: ``start`` and ``length`` in seconds since the run
    started, ``hist`` an HdrHistogram of microseconds."""
    payload = encode_histogram(hist).decode("ascii")
    return entry_line(start, length, hist.get_max_value() / 1000.0, payload)


def entry_line(start: float, length: float, max_ms: float, payload: str) -> str:
    """:func:`line` of a histogram already encoded (``payload``, its max in
    milliseconds)."""
    return f"{start:.3f},{length:.3f},{max_ms:.3f},{payload}\n"


@dataclass(frozen=True)
class HlogEntry:
    """One interval line, its histogram still encoded (a decoded one holds
    ~190 KB of counts; an encoded one a few hundred bytes)."""

    start: float  # seconds since the run started
    length: float
    max_ms: float | None  # None: the column is unreadable (it is not needed)
    payload: str

    def decode(self) -> HdrHistogram | None:
        """The histogram, or None when the payload does not decode."""
        try:
            return decode_histogram(self.payload.encode("ascii"))
        except Exception:  # hdrh raises a variety of errors on a torn payload
            return None


@dataclass
class HlogInterval:
    start: float  # seconds since the run started
    length: float
    hist: HdrHistogram


def parse_entry(text: str) -> HlogEntry | None:
    """An interval line (an optional ``Tag=`` column first), or None when
    ``text`` is not one. The payload is not decoded."""
    parts = text.strip().split(",")
    if parts and parts[0].startswith("Tag="):
        parts = parts[1:]
    if len(parts) != 4:
        return None
    try:
        start, length = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    try:
        max_ms: float | None = float(parts[2])
    except ValueError:
        max_ms = None
    return HlogEntry(start, length, max_ms, parts[3])


def is_header(text: str) -> bool:
    return not text.strip() or text.startswith(("#", '"'))


def read_entries(path: Path, problems: Problems, *, decode: bool = False) -> Iterator[HlogEntry]:
    """The interval lines of ``path``, one at a time. A line that is not one
    (or, with ``decode``, whose payload does not decode) is skipped and
    recorded in ``problems``; a missing file is recorded and yields nothing."""
    for _n, entry, _hist in _read(path, problems, decode=decode):
        yield entry


def read(path: Path, problems: Problems) -> Iterator[HlogInterval]:
    """The decoded intervals of ``path``, one at a time (a 24-hour run's
    8,640 decoded histograms would be 1.6 GB as a list). Damaged lines are
    skipped and recorded in ``problems``."""
    for _n, entry, hist in _read(path, problems, decode=True):
        assert hist is not None
        yield HlogInterval(entry.start, entry.length, hist)


def _read(
    path: Path, problems: Problems, *, decode: bool
) -> Iterator[tuple[int, HlogEntry, HdrHistogram | None]]:
    if not path.exists():
        problems.file_missing(path)
        return
    with open(path, encoding="ascii", errors="replace") as f:
        for n, text in enumerate(f, 1):
            if is_header(text):
                continue
            entry = parse_entry(text)
            hist = entry.decode() if entry is not None and decode else None
            if entry is None or (decode and hist is None):
                problems.skip(path, n, "corrupt histogram", last=not text.endswith("\n"))
                continue
            yield n, entry, hist
