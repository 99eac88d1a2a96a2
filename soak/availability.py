"""Pure: availability, the share of the planned load that was connected.

Two parts, both without a clock or a socket:

- :class:`ClientSeconds` integrates, as the run goes, the client-seconds
  connected and the client-seconds planned (the target). It is told every
  change of either (with ``now``) and handed out per interval (``take``).
  Connected clients above the target (a scale-down still closing) count as
  the target: availability never goes above 100%.
- :func:`summarize` turns interval records (``t``, ``dt``, ``connected_s``,
  ``target_s``) and storm records (summary.json's ``storms``) into the
  run's availability: the time-weighted share, the longest stretch below a
  share, and for each storm the time to get 95% and 100% of its lost
  clients back and the share of them back before the run ended.

Time weighting: an interval counts by its client-seconds, so a short last
interval weighs little and an interval with a target of 0 contributes
nothing (and neither extends nor breaks a stretch below the share).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# The share below which the run counts as "down" for the longest stretch.
BELOW_SHARE = 0.95
# Floating-point slack when comparing client-seconds.
EPS = 1e-9


class ClientSeconds:
    """Client-seconds connected (at most the target) and planned, from
    ``start``. Piecewise constant: each value holds until the next change."""

    __slots__ = ("_connected", "_t", "_target", "connected_s", "stopped", "target_s")

    def __init__(self, start: float | None = None) -> None:
        # None: from the first change (before it, nothing is planned)
        self._t = -math.inf if start is None else start
        self._connected = 0
        self._target = 0
        self.connected_s = 0.0
        self.target_s = 0.0
        self.stopped = False

    def _advance(self, now: float) -> None:
        dt = now - self._t
        if dt <= 0:
            return
        self._t = now
        if self.stopped or math.isinf(dt):
            return
        self.connected_s += min(self._connected, self._target) * dt
        self.target_s += self._target * dt

    def connected(self, now: float, n: int) -> None:
        """``n`` clients are connected from ``now``."""
        self._advance(now)
        self._connected = n

    def target(self, now: float, n: int) -> None:
        """The plan wants ``n`` clients from ``now``."""
        self._advance(now)
        self._target = n

    def take(self, now: float) -> tuple[float, float]:
        """(connected, planned) client-seconds since the last ``take``."""
        self._advance(now)
        out = (self.connected_s, self.target_s)
        self.connected_s = self.target_s = 0.0
        return out

    def peek(self, now: float) -> tuple[float, float]:
        """(connected, planned) client-seconds since the last ``take``, to
        ``now``, without taking them."""
        self._advance(now)
        return self.connected_s, self.target_s

    def stop(self, now: float) -> None:
        """The run's load ends at ``now`` (its shutdown closes every client
        on purpose): nothing after counts."""
        self._advance(now)
        self.stopped = True


def share(connected_s: float, target_s: float) -> float | None:
    """connected / planned client-seconds; None when nothing was planned."""
    if target_s <= EPS:
        return None
    return min(1.0, connected_s / target_s)


@dataclass(frozen=True)
class Span:
    """One interval's part: when, how long, its client-seconds."""

    t: float
    dt: float
    connected_s: float
    target_s: float


def _number(v: Any) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def spans(records: Iterable[dict[str, Any]]) -> list[Span]:
    """The spans of intervals.jsonl records; records without client-seconds
    (a results directory from before they were measured) are left out."""
    out = []
    for rec in records:
        t, dt = _number(rec.get("t")), _number(rec.get("dt"))
        cs, ts = _number(rec.get("connected_s")), _number(rec.get("target_s"))
        if t is None or dt is None or cs is None or ts is None:
            continue
        out.append(Span(t, dt, cs, ts))
    return out


class Running:
    """The run's availability as its intervals finish, in constant memory:
    the sums and the longest stretch of consecutive intervals under
    ``below`` (at the resolution of the intervals)."""

    __slots__ = ("below", "best_from", "best_s", "connected_s", "cur_from", "cur_s", "target_s")

    def __init__(self, below: float = BELOW_SHARE) -> None:
        self.below = below
        self.connected_s = self.target_s = 0.0
        self.best_s = self.cur_s = 0.0
        self.best_from: float | None = None
        self.cur_from: float | None = None

    def add(self, sp: Span) -> None:
        self.connected_s += sp.connected_s
        self.target_s += sp.target_s
        if sp.target_s <= EPS:
            return  # nothing planned: neither up nor down
        if sp.connected_s < self.below * sp.target_s - EPS:
            if self.cur_from is None:
                self.cur_from, self.cur_s = sp.t, 0.0
            self.cur_s += sp.dt
            if self.cur_s > self.best_s + EPS:
                self.best_s, self.best_from = self.cur_s, self.cur_from
        else:
            self.cur_from, self.cur_s = None, 0.0

    def stretch(self) -> dict[str, Any]:
        return {
            "share": self.below,
            "longest_s": round(self.best_s, 3),
            "from_s": None if self.best_from is None else round(self.best_from, 3),
        }


def longest_below(items: Iterable[Span], below: float) -> dict[str, Any]:
    """The longest run of consecutive intervals whose availability was
    under ``below``, at the resolution of the intervals."""
    tally = Running(below)
    for sp in items:
        tally.add(sp)
    return tally.stretch()


def storm_figures(storm: dict[str, Any]) -> dict[str, Any]:
    """One storm's recovery: how many it lost, how many were back by the
    end (and their share), the seconds from its start until 95% and 100%
    of them were back (None: never)."""
    lost = int(_number(storm.get("lost")) or 0)
    recovered = int(_number(storm.get("recovered")) or 0)
    rec = storm.get("recovery_s")
    rec = rec if isinstance(rec, dict) else {}
    return {
        "index": storm.get("index"),
        "start_s": _number(storm.get("start_s")),
        "lost": lost,
        "recovered": recovered,
        "gave_up": int(_number(storm.get("gave_up")) or 0),
        "recovered_share": None if lost == 0 else round(min(1.0, recovered / lost), 6),
        "recovery_95_s": _number(rec.get("p95")),
        "recovery_100_s": _number(rec.get("p100")),
    }


def summarize(
    items: Iterable[Span] | Running,
    storms: Iterable[dict[str, Any]],
    *,
    below: float = BELOW_SHARE,
) -> dict[str, Any]:
    """summary.json's ``availability``, from the intervals' spans (or their
    :class:`Running`) and summary.json's storms."""
    if isinstance(items, Running):
        tally = items
    else:
        tally = Running(below)
        for sp in items:
            tally.add(sp)
    value = share(tally.connected_s, tally.target_s)
    per_storm = [storm_figures(s) for s in storms if isinstance(s, dict)]
    shares = [s["recovered_share"] for s in per_storm if s["recovered_share"] is not None]
    return {
        "availability": None if value is None else round(value, 6),
        "connected_client_s": round(tally.connected_s, 3),
        "target_client_s": round(tally.target_s, 3),
        "below": tally.stretch(),
        # the worst storm's share of lost clients back before the end
        "storm_recovery": min(shares) if shares else None,
        "storms": per_storm,
    }


def describe(av: dict[str, Any]) -> str:
    """One line for the terminal summary (after "availability")."""
    value = av.get("availability")
    if value is None:
        return "no planned load"
    below = av.get("below") or {}
    parts = [f"{value * 100:.2f}% of the planned client-seconds connected"]
    longest = below.get("longest_s") or 0.0
    if longest > 0:
        parts.append(
            f"below {below.get('share', BELOW_SHARE) * 100:g}% for {longest:g} s "
            f"(from {below.get('from_s'):g} s)"
        )
    for s in av.get("storms") or []:
        parts.append(storm_line(s))
    return "; ".join(parts)


def storm_line(s: dict[str, Any]) -> str:
    lost, back = s.get("lost", 0), s.get("recovered", 0)
    start = s.get("start_s")
    at = "" if start is None else f" at {start:g} s"
    text = f"storm {s.get('index')}{at}: {back} of {lost} lost clients back by the end"
    r95, r100 = s.get("recovery_95_s"), s.get("recovery_100_s")
    if r100 is not None:
        text += f" (95% in {r95:g} s, 100% in {r100:g} s)"
    elif r95 is not None:
        text += f" (95% in {r95:g} s, never 100%)"
    return text
