"""Pure: what worker processes send their parent, added up.

- intervals: a worker ships each finished interval in the wire form of its
  :class:`~soak.metrics.Tally` (HdrHistograms merge losslessly) with its
  gauges; the parent adds the reports into its own current interval.
- storms: a worker does not detect storms, it records the storm tracker's
  inputs (:class:`~soak.storm.StormLog`); the parent replays all workers'
  inputs in time order into one tracker (:class:`StormReplay`), up to the
  time every live worker has reported to, so a storm is detected and
  measured across the whole run.
- statuses: the live view shows the sums, and the run's RTT percentiles
  from the workers' histograms of the current interval (:func:`merge_status`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any, Protocol

from soak.metrics import Interval, decode_histogram, new_histogram
from soak.storm import StormInputs


class ReplayTarget(Protocol):
    """Where :class:`StormReplay` replays to: a run's
    :class:`~soak.client.Services`, or soak merge's (soak.merge_shards)."""

    storms: StormInputs
    emit: Callable[[dict[str, Any]], None]

    def storm_tick(self, now: float) -> None: ...


def encode_interval(iv: Interval, gave_up: int) -> dict[str, Any]:
    """A worker's finished interval, for the parent: its tally's wire form
    and its gauges."""
    return {
        "m": "interval",
        "index": iv.index,
        **iv.to_wire(),
        "connected": iv.connected,
        "connecting": iv.connecting,
        "target": iv.target,
        "rss_bytes": iv.rss_bytes,
        "gave_up": gave_up,
    }


def absorb(into: Interval, msg: dict[str, Any]) -> None:
    """Add a worker's interval report to ``into`` (its tally; the gauges are
    the parent's business)."""
    into.absorb(msg)


class StormReplay:
    """The parent's side of :class:`~soak.storm.StormLog`: the inputs of all workers,
    applied to one tracker in time order, never past the time every live
    worker has reported up to (so no input can arrive out of order)."""

    def __init__(self, services: ReplayTarget, t0: float) -> None:
        self.services = services
        self.t0 = t0
        self._heap: list[tuple[float, int, int, list[Any]]] = []
        self._seq = 0
        self.in_flight: dict[int, int] = {}
        self.horizon = 0.0  # seconds since the start, replayed up to

    def add(self, worker: int, ops: list[list[Any]]) -> None:
        for op in ops:
            self._seq += 1
            heapq.heappush(self._heap, (float(op[1]), self._seq, worker, op))

    def replay(self, upto: float) -> None:
        sv = self.services
        tracker = sv.storms
        t0 = self.t0
        heap = self._heap
        while heap and heap[0][0] <= upto:
            t, _, worker, op = heapq.heappop(heap)
            now = t0 + t
            kind = op[0]
            if kind == "lost":
                storm = tracker.lost(now)
                if storm is not None:
                    sv.emit(
                        {
                            "t": round(storm.start - t0, 6),
                            "event": "storm_start",
                            "storm": storm.index,
                            "lost": storm.lost,
                        }
                    )
            elif kind == "attempt":
                # each worker knows its own handshakes in flight; the run's
                # are the sum of every worker's latest figure
                self.in_flight[worker] = int(op[2])
                tracker.attempt(now, sum(self.in_flight.values()))
            elif kind == "failed":
                tracker.failed(now, str(op[2]))
            elif kind == "ready":
                self.in_flight[worker] = max(0, self.in_flight.get(worker, 1) - 1)
                back = op[3]
                tracker.ready(now, float(op[2]), None if back is None else t0 + back)
                sv.storm_tick(now)
            elif kind == "gave_up":
                tracker.gave_up(now)
        if upto > self.horizon and upto != math.inf:
            self.horizon = upto


def merge_status(
    statuses: list[dict[str, Any]], live: list[bool], interval: int | None = None
) -> dict[str, Any]:
    """The live view's line from every worker's latest status: gauges of the
    live workers and counts of all of them added up; RTT percentiles from the
    workers' current-interval histograms merged (those of ``interval``), or,
    without them, the worst worker's; loop lag of the worst worker."""
    out: dict[str, Any] = {}
    for key in ("connected", "connecting", "target"):
        out[key] = sum(s.get(key, 0) for s, up in zip(statuses, live, strict=True) if up)
    for key in (
        "pongs",
        "missed",
        "zombies",
        "false_timeouts",
        "reconnects",
        "handshake_failures",
        "gave_up",
    ):
        out[key] = sum(s.get(key, 0) for s in statuses)
    for key in ("rtt_p50_ms", "rtt_p99_ms"):
        values = [s[key] for s in statuses if s.get(key) is not None]
        out[key] = max(values) if values else None
    parts = [
        s["rtt_hist"]
        for s in statuses
        if s.get("rtt_hist") and (interval is None or s.get("interval") == interval)
    ]
    if parts:
        rtt = new_histogram()
        for payload in parts:
            rtt.add(decode_histogram(payload))
        p = rtt.get_percentile_to_value_dict([50.0, 99.0])
        out["rtt_p50_ms"], out["rtt_p99_ms"] = p[50.0] / 1000.0, p[99.0] / 1000.0
    out["loop_lag_max_ms"] = max((s.get("loop_lag_max_ms", 0.0) for s in statuses), default=0.0)
    out["interval_elapsed"] = max((s.get("interval_elapsed", 1e-9) for s in statuses), default=1e-9)
    return out
