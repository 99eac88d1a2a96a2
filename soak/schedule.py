"""Pure: the load shape. Stages -> how many clients should exist at time t.

Times are seconds since the run started. Nothing here reads a clock, so the
tests drive it with plain numbers.

- ``Ramp``: move linearly from the current count to ``to`` over the stage.
- ``Hold``: keep the current count.
- ``Spike``: ``add`` extra clients for the stage, then drop back.
- ``Churn``: keep the count, but close and reopen ``rate`` clients per second.
- ``Storm``: keep the count (what happens at its start is the runner's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from soak.config.stages import Churn, Ramp, Spike, Stage


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
            after = stage.to if isinstance(stage, Ramp) else level
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
            extra = seg.stage.add if isinstance(seg.stage, Spike) else 0
            peak = max(peak, seg.level_before + extra, seg.level_after)
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
        match seg.stage:
            case Ramp():
                frac = (t - seg.start) / (seg.end - seg.start)
                # floor toward the start level, so a ramp never overshoots early
                delta = seg.level_after - seg.level_before
                return (
                    seg.level_before + math.floor(delta * frac + 1e-9)
                    if delta >= 0
                    else (seg.level_before - math.floor(-delta * frac + 1e-9))
                )
            case Spike(add=add):
                return seg.level_before + add
            case _:
                return seg.level_before

    def churned_by(self, t: float) -> int:
        """Cumulative number of churn events (close + reopen) due by time ``t``.

        The runner churns ``churned_by(now) - churned_by(previous)`` clients on
        each tick, so the total is exact however the ticks fall."""
        total = 0
        for seg in self.segments:
            if not isinstance(seg.stage, Churn) or t <= seg.start:
                continue
            elapsed = min(t, seg.end) - seg.start
            total += math.floor(seg.stage.rate * elapsed + 1e-9)
        return total
