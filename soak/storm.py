"""Pure: reconnect storms, detected and measured. Takes ``now``; no I/O.

A storm is many clients losing their connections at once (a gateway
restart, a load-balancer failover, a network blip) and reconnecting
together. Backoff without jitter makes it come back at every retry: the
official OpenClaw client backs off 1 s, 2 s, 4 s... in lockstep.

Detection: a storm starts when at least ``min_losses`` connections are lost
within ``window`` seconds; it starts at the first of those losses. Every
loss while it lasts belongs to it. It ends when every connection it lost is
back or its client gave up and no connection was lost for ``window``
seconds, or after ``quiet`` seconds with no loss, no attempt and no recovery.

Measured per storm: reconnect attempts per 100 ms bucket (and the peak),
handshakes in flight, handshake latency, failures by cause, the time to
recover 50/90/99/100% of the connections lost, the clients that gave up,
and the synchronisation index of the reconnect times.

The synchronisation index is the length of the mean resultant vector of
phases on the heartbeat circle: ``|mean(exp(2 pi i t / interval))|`` over the
moments connections became ready. 0 means spread evenly around the interval,
1 means all at the same phase. Clients whose heartbeat timer starts at
connect (as browsers' do) carry this phase into every later heartbeat, so a
storm that leaves the index high leaves the gateway with heartbeat bursts.
"""

from __future__ import annotations

import cmath
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from hdrh.histogram import HdrHistogram

from soak.metrics import new_histogram, percentiles_ms, to_us

BUCKET = 0.1  # seconds: the storm series resolution
# the shares of a storm's lost connections whose recovery time is reported
RECOVERY_QS = (0.5, 0.9, 0.95, 0.99, 1.0)


def sync_index(times: list[float], interval: float) -> float | None:
    """How bunched ``times`` are on a circle of circumference ``interval``:
    0 evenly spread, 1 all in phase. None for fewer than two times."""
    if len(times) < 2 or interval <= 0:
        return None
    total = sum(cmath.exp(2j * math.pi * (t % interval) / interval) for t in times)
    return abs(total) / len(times)


@dataclass
class Storm:
    index: int
    start: float
    lost: int = 0
    recovered: int = 0
    gave_up: int = 0
    end: float | None = None
    attempts: Counter[int] = field(default_factory=Counter)  # bucket -> attempts
    in_flight: dict[int, int] = field(default_factory=dict)  # bucket -> max in flight
    recovered_by: Counter[int] = field(default_factory=Counter)  # bucket -> recoveries
    failures: Counter[str] = field(default_factory=Counter)
    recovery_times: list[float] = field(default_factory=list)
    ready_times: list[float] = field(default_factory=list)
    handshake: HdrHistogram = field(default_factory=new_histogram)
    last_activity: float = 0.0
    last_loss: float = 0.0
    last_back: float = 0.0  # the last recovery or give-up

    def bucket(self, now: float) -> int:
        return int((now - self.start) / BUCKET + 1e-9)

    def recovery_percentile(self, q: float) -> float | None:
        """Seconds from the start until ``q`` (0-1) of the lost connections
        were back; None if that many never came back."""
        if self.lost == 0:
            return None
        need = math.ceil(q * self.lost)
        if need == 0:
            return 0.0
        if len(self.recovery_times) < need:
            return None
        return sorted(self.recovery_times)[need - 1]

    def summary(self, interval: float, before: float | None, origin: float = 0.0) -> dict[str, Any]:
        """JSON-ready numbers; times in seconds since ``origin`` (the run's start)."""
        peak_bucket, peak = max(self.attempts.items(), key=lambda kv: kv[1], default=(0, 0))
        return {
            "index": self.index,
            "start_s": round(self.start - origin, 3),
            "end_s": None if self.end is None else round(self.end - origin, 3),
            "lost": self.lost,
            "recovered": self.recovered,
            "gave_up": self.gave_up,
            "attempts": sum(self.attempts.values()),
            "peak_attempts_per_100ms": peak,
            "peak_at_s": round(peak_bucket * BUCKET, 3),
            "max_in_flight": max(self.in_flight.values(), default=0),
            "failures": dict(sorted(self.failures.items())),
            "recovery_s": {f"p{round(q * 100)}": self.recovery_percentile(q) for q in RECOVERY_QS},
            "handshake_ms": percentiles_ms(self.handshake),
            "sync_index_before": None if before is None else round(before, 4),
            "sync_index_after": _round(sync_index(self.ready_times, interval)),
        }

    def series(self, origin: float = 0.0) -> dict[str, Any]:
        """The 100 ms series: attempts, in flight and recovered % per bucket."""
        last = max([*self.attempts, *self.in_flight, *self.recovered_by, 0])
        recovered = 0
        pct = []
        for b in range(last + 1):
            recovered += self.recovered_by.get(b, 0)
            pct.append(round(100.0 * recovered / self.lost, 2) if self.lost else None)
        return {
            "index": self.index,
            "start_s": round(self.start - origin, 3),
            "bucket_s": BUCKET,
            "attempts": [self.attempts.get(b, 0) for b in range(last + 1)],
            "in_flight": [self.in_flight.get(b, 0) for b in range(last + 1)],
            "recovered_pct": pct,
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


class StormInputs(Protocol):
    """What a run's clients tell storm detection, with the time of each.
    Two implementations: :class:`StormTracker` detects and measures storms
    in this process; :class:`StormLog` keeps the inputs for another process
    (a multi-process run's parent) to replay into its tracker."""

    def lost(self, now: float) -> Storm | None:
        """A connection was lost; the storm if this loss started one."""

    def attempt(self, now: float, in_flight: int) -> None:
        """A reconnect attempt began; ``in_flight`` handshakes with it."""

    def failed(self, now: float, cause: str) -> None:
        """A reconnect attempt failed."""

    def ready(self, now: float, handshake: float, lost_at: float | None) -> None:
        """A connection became ready after ``handshake`` seconds."""

    def gave_up(self, now: float) -> None:
        """A client stopped reconnecting."""

    def tick(self, now: float) -> Storm | None:
        """Time passed; the storm if it ended just now."""


class StormTracker:
    def __init__(
        self,
        *,
        heartbeat_interval: float,
        origin: float = 0.0,
        min_losses: int = 10,
        window: float = 1.0,
        quiet: float = 10.0,
    ) -> None:
        self.interval = heartbeat_interval
        self.origin = origin  # the run's start: reported times are relative to it
        self.min_losses = min_losses
        self.window = window
        self.quiet = quiet
        self.current: Storm | None = None
        self.finished: list[Storm] = []
        self._recent: deque[float] = deque()  # loss times inside the window
        # connections back before a storm was known: (lost at, ready at,
        # handshake), for the window; a storm that counts their losses
        # counts their recoveries too
        self._early: deque[tuple[float, float, float]] = deque()
        self._ready_before: deque[float] = deque(maxlen=4096)  # for the "before" index
        self._before: dict[int, float | None] = {}

    # -- inputs ----------------------------------------------------------------

    def lost(self, now: float) -> Storm | None:
        """A connection was lost and its client will reconnect. Returns the
        storm if this loss started one."""
        storm = self.current
        if storm is not None:
            storm.lost += 1
            storm.last_activity = storm.last_loss = now
            return None
        self._recent.append(now)
        while self._recent and self._recent[0] < now - self.window:
            self._recent.popleft()
        if len(self._recent) < self.min_losses:
            return None
        index = len(self.finished) + 1
        storm = Storm(
            index, start=self._recent[0], lost=len(self._recent), last_activity=now, last_loss=now
        )
        self._before[index] = sync_index(list(self._ready_before), self.interval)
        self._recent.clear()
        self.current = storm
        early, self._early = self._early, deque()
        for lost_at, ready_at, handshake in early:
            if lost_at >= storm.start:
                self._recovered(storm, ready_at, handshake)
        return storm

    def attempt(self, now: float, in_flight: int) -> None:
        storm = self.current
        if storm is None:
            return
        b = storm.bucket(now)
        storm.attempts[b] += 1
        storm.in_flight[b] = max(storm.in_flight.get(b, 0), in_flight)
        storm.last_activity = now

    def failed(self, now: float, cause: str) -> None:
        if self.current is not None:
            self.current.failures[cause] += 1
            self.current.last_activity = now

    def ready(self, now: float, handshake: float, lost_at: float | None) -> None:
        """A connection became ready; ``lost_at`` is when its client lost the
        previous one (None for a first connection)."""
        storm = self.current
        if storm is None or lost_at is None or lost_at < storm.start:
            self._ready_before.append(now)
            if storm is None and lost_at is not None:
                early = self._early
                early.append((lost_at, now, handshake))
                while early and early[0][0] < now - self.window:
                    early.popleft()
            return
        self._recovered(storm, now, handshake)

    def _recovered(self, storm: Storm, now: float, handshake: float) -> None:
        storm.recovered += 1
        storm.recovery_times.append(now - storm.start)
        storm.recovered_by[storm.bucket(now)] += 1
        storm.ready_times.append(now)
        storm.handshake.record_value(to_us(handshake))
        storm.last_activity = storm.last_back = now

    def gave_up(self, now: float) -> None:
        if self.current is not None:
            self.current.gave_up += 1
            self.current.last_activity = self.current.last_back = now

    def tick(self, now: float) -> Storm | None:
        """Call regularly. Returns the storm if it ended just now."""
        storm = self.current
        if storm is None:
            return None
        # settled: every connection it lost is back (or gave up), and no loss
        # for a window: when the loser's side is slow to notice (a loaded
        # tester, a gateway closing thousands one by one), the early ones can
        # be back before the last ones are lost, and that is still one storm
        settled = (
            storm.recovered + storm.gave_up >= storm.lost and now - storm.last_loss >= self.window
        )
        if settled or now - storm.last_activity >= self.quiet:
            storm.end = storm.last_back if settled else storm.last_activity
            self.current = None
            self.finished.append(storm)
            return storm
        return None

    def all_storms(self) -> list[Storm]:
        return [*self.finished, *([self.current] if self.current else [])]

    def summary_of(self, storm: Storm) -> dict[str, Any]:
        return storm.summary(self.interval, self._before.get(storm.index), self.origin)

    def series(self) -> list[dict[str, Any]]:
        return [s.series(self.origin) for s in self.all_storms()]

    def summaries(self) -> list[dict[str, Any]]:
        return [self.summary_of(s) for s in self.all_storms()]


class StormLog:
    """Storm inputs kept, not detected (a worker process's): times relative
    to the run's start ``origin``, for the parent to replay in time order
    into one :class:`StormTracker` (soak.run.merge.StormReplay). Each input
    is a JSON-ready list ``[kind, t, *args]``."""

    def __init__(self, *, origin: float) -> None:
        self.origin = origin
        self.ops: list[list[Any]] = []

    def lost(self, now: float) -> Storm | None:
        self.ops.append(["lost", now - self.origin])
        return None  # the parent detects storms, across all workers

    def attempt(self, now: float, in_flight: int) -> None:
        self.ops.append(["attempt", now - self.origin, in_flight])

    def failed(self, now: float, cause: str) -> None:
        self.ops.append(["failed", now - self.origin, cause])

    def ready(self, now: float, handshake: float, lost_at: float | None) -> None:
        back = None if lost_at is None else lost_at - self.origin
        self.ops.append(["ready", now - self.origin, handshake, back])

    def gave_up(self, now: float) -> None:
        self.ops.append(["gave_up", now - self.origin])

    def tick(self, now: float) -> Storm | None:
        return None  # no storm ends here: the parent ticks its tracker

    def take(self) -> list[list[Any]]:
        """The inputs since the last call."""
        ops, self.ops = self.ops, []
        return ops
