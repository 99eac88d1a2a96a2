"""Pure: the load shape. Stages -> how many clients should exist at time t.

Times are seconds since the run started. Nothing here reads a clock, so the
tests drive it with plain numbers.

- ``ramp``: move linearly from the current count to ``to`` over the stage.
- ``hold``: keep the current count.
- ``spike``: ``add`` extra clients for the stage, then drop back.
- ``churn``: keep the count, but close and reopen ``rate`` clients per second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from soak.profile import Stage


@dataclass(frozen=True)
class Segment:
    stage: Stage
    start: float
    end: float
    level_before: int  # the count the stage starts from
    level_after: int  # the count the stage leaves behind


class Schedule:
    def __init__(self, stages: tuple[Stage, ...]) -> None:
        segments: list[Segment] = []
        t = 0.0
        level = 0
        for stage in stages:
            after = stage.to if stage.kind == "ramp" else level
            segments.append(Segment(stage, t, t + stage.duration, level, after))
            t += stage.duration
            level = after
        self.segments = tuple(segments)
        self.end = t
        self.final_level = level

    @property
    def peak(self) -> int:
        peak = 0
        for seg in self.segments:
            top = seg.level_before + seg.stage.add
            peak = max(peak, top, seg.level_after)
        return peak

    def segment_at(self, t: float) -> Segment | None:
        for seg in self.segments:
            if seg.start <= t < seg.end:
                return seg
        return None

    def target(self, t: float) -> int:
        """How many clients should exist at time ``t``."""
        if t < 0:
            return 0
        seg = self.segment_at(t)
        if seg is None:
            return self.final_level
        kind = seg.stage.kind
        if kind == "ramp":
            frac = (t - seg.start) / (seg.end - seg.start)
            # floor toward the start level, so a ramp never overshoots early
            delta = seg.level_after - seg.level_before
            return (
                seg.level_before + math.floor(delta * frac + 1e-9)
                if delta >= 0
                else (seg.level_before - math.floor(-delta * frac + 1e-9))
            )
        if kind == "spike":
            return seg.level_before + seg.stage.add
        return seg.level_before

    def churned_by(self, t: float) -> int:
        """Cumulative number of churn events (close + reopen) due by time ``t``.

        The runner churns ``churned_by(now) - churned_by(previous)`` clients on
        each tick, so the total is exact however the ticks fall."""
        total = 0
        for seg in self.segments:
            if seg.stage.kind != "churn" or t <= seg.start:
                continue
            elapsed = min(t, seg.end) - seg.start
            total += math.floor(seg.stage.rate * elapsed + 1e-9)
        return total
