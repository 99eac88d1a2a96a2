"""Pure: what a run holds in memory while its results cannot be written,
and what it says about that (the events, the live view's line, the lines
of what is missing). :class:`soak.recorder.Recorder` drives it; nothing
here touches a file: writing is the ``append`` it is given.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from soak.results.writer import Chunk, chunk_size


def describe(exc: OSError) -> str:
    """An OSError as the live view and the events say it:
    ``No space left on device (ENOSPC)``."""
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


def mib(n: int) -> str:
    """Bytes as the live view says them: ``1.2 MiB``, ``2.9 KiB``."""
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n / 1024:.1f} KiB"


@dataclass
class Held:
    """One interval not yet on disk."""

    index: int
    start: float  # seconds since the run started
    end: float
    chunk: Chunk
    events: int
    size: int


@dataclass
class Failure:
    """Writes failing since ``since`` (seconds since the run started)."""

    since: float
    error: str
    attempts: int = 1


# dropped intervals kept for missing() to list; beyond, they are counted
# (a day of 1 s intervals on a full disk would otherwise keep 86,400)
MAX_LOST_KEPT = 1000


def _ranges(lost: list[Held]) -> list[tuple[Held, Held]]:
    """Consecutive intervals grouped: [(first, last), ...]."""
    out: list[tuple[Held, Held]] = []
    for h in lost:
        if out and out[-1][1].index + 1 == h.index:
            out[-1] = (out[-1][0], h)
        else:
            out.append((h, h))
    return out


def _s(t: float) -> str:
    return f"{round(t, 3):g}s"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _span(a: Held, b: Held) -> str:
    which = f"interval {a.index}" if a is b else f"intervals {a.index}-{b.index}"
    return f"{which} ({_s(a.start)} to {_s(b.end)} into the run)"


class Backlog:
    """Intervals waiting to be written, oldest first, at most ``limit``
    bytes of them. Past the limit a new interval's events are dropped
    first (counted in its ``events_dropped`` and in :attr:`lost_events`),
    then the interval itself (:attr:`lost`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held: deque[Held] = deque()
        self.bytes = 0
        self.failure: Failure | None = None
        # the intervals dropped at the limit (their chunks are not kept): the
        # first MAX_LOST_KEPT, the later ones counted in intervals_lost only
        self.lost: list[Held] = []
        self.intervals_lost = 0
        self.lost_events = 0
        self.write_failures = 0  # failed attempts, the run's
        self.held_max = 0  # the most intervals held at once by a failure
        self.held_max_bytes = 0
        self._written = 0  # written since the failure began

    def hold(
        self,
        index: int,
        start: float,
        end: float,
        events: list[str],
        record: dict[str, Any],
        chunk_of: Callable[[list[str]], Chunk],
    ) -> None:
        """An interval to write, as ``chunk_of(events)`` makes it
        (``record`` is the one it encodes, changed when events are dropped).
        With nothing held (writes succeeding) it is always taken."""
        chunk = chunk_of(events)
        size = chunk_size(chunk)
        if self.held and self.bytes + size > self.limit:
            if events:
                record["events_dropped"] = record.get("events_dropped", 0) + len(events)
                self.lost_events += len(events)
                events = []
                chunk = chunk_of(events)
                size = chunk_size(chunk)
            if self.bytes + size > self.limit:
                self._lose(Held(index, start, end, {}, 0, 0))
                return
        self.held.append(Held(index, start, end, chunk, len(events), size))
        self.bytes += size

    def _lose(self, h: Held) -> None:
        self.intervals_lost += 1
        if len(self.lost) < MAX_LOST_KEPT:
            self.lost.append(h)

    def write(self, append: Callable[[Chunk], None]) -> None:
        """``append`` each held interval, oldest first; an OSError from it
        stops the writing and is raised, the interval still held."""
        while self.held:
            h = self.held[0]
            append(h.chunk)
            self.held.popleft()
            self.bytes -= h.size
            self._written += 1

    def failed(self, t: float, error: str) -> dict[str, Any] | None:
        """A write failed ``t`` seconds into the run. Returns the
        ``results_write_failed`` event when this begins a failure."""
        self.write_failures += 1
        self.held_max = max(self.held_max, len(self.held))
        self.held_max_bytes = max(self.held_max_bytes, self.bytes)
        if self.failure is not None:
            self.failure.error = error
            self.failure.attempts += 1
            return None
        self.failure = Failure(t, error)
        self._written = 0
        return {
            "t": round(t, 6),
            "event": "results_write_failed",
            "error": error,
            "held_intervals": len(self.held),
            "action": "the load goes on; intervals are held in memory and retried every interval",
        }

    def recovered(self, t: float) -> dict[str, Any] | None:
        """Everything held was written ``t`` seconds into the run. Returns
        the ``results_write_recovered`` event when a failure ends here."""
        f = self.failure
        if f is None or self.held:
            return None
        self.failure = None
        return {
            "t": round(t, 6),
            "event": "results_write_recovered",
            "failed_at": round(f.since, 6),
            "error": f.error,
            "attempts": f.attempts,
            "intervals_written": self._written,
            "intervals_lost": self.intervals_lost,
            "events_lost": self.lost_events,
        }

    def health(self) -> str | None:
        """The live view's line, or None when all is written."""
        parts: list[str] = []
        f = self.failure
        if f is not None:
            parts.append(
                f"results NOT WRITTEN since {_s(f.since)}: {f.error}; "
                f"{plural(len(self.held), 'interval')} ({mib(self.bytes)}) held in memory, "
                "retried every interval"
            )
        if self.intervals_lost or self.lost_events:
            parts.append(
                f"{self.intervals_lost} intervals and {self.lost_events} events dropped at the "
                f"{mib(self.limit)} limit of what is held"
            )
        return "; ".join(parts) or None

    def missing(self) -> list[str]:
        """What is not on disk, one line each."""
        lines: list[str] = []
        if self.held:
            events = sum(h.events for h in self.held)
            error = self.failure.error if self.failure is not None else "not written"
            lines.append(
                f"{_span(self.held[0], self.held[-1])}, {plural(len(self.held), 'interval')} "
                f"with {plural(events, 'event')}: held in memory, never written: {error}"
            )
        for a, b in _ranges(self.lost):
            lines.append(f"{_span(a, b)}: dropped, the {mib(self.limit)} held in memory was full")
        later = self.intervals_lost - len(self.lost)
        if later:
            lines.append(
                f"{plural(later, 'later interval')} (after interval {self.lost[-1].index}): "
                f"dropped, the {mib(self.limit)} held in memory was full (the first "
                f"{MAX_LOST_KEPT:,} dropped are listed)"
            )
        if self.lost_events:
            lines.append(
                f"{plural(self.lost_events, 'event')}: dropped, the {mib(self.limit)} held in "
                "memory was full"
            )
        return lines

    def counts(self) -> dict[str, Any]:
        """summary.json's ``results`` figures."""
        return {
            "write_failures": self.write_failures,
            "held_max_intervals": self.held_max,
            "held_max_bytes": self.held_max_bytes,
            "intervals_lost": self.intervals_lost,
            "events_lost": self.lost_events,
        }
