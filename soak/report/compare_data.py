"""What each run brings to a comparison (:class:`RunData`): its RTT
histograms in compact form, its totals, duration, availability, storms and
findings, read from summary.json or, for a killed run, from its intervals
(and events)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from soak import availability
from soak.errors import ResultsError
from soak.facts import Finding
from soak.metrics import read_totals
from soak.report.bootstrap import Compact, compact, merge
from soak.report.report import findings_of
from soak.results.reader import Run


class CompareError(ResultsError):
    """Runs that cannot be compared."""


@dataclass
class RunData:
    run: Run
    name: str  # the label, made unique among the runs compared
    rtt: list[Compact]  # one per hlog interval
    starts: list[float]  # seconds since the run started
    merged: Compact
    totals: dict[str, Any]
    duration_s: float
    availability: dict[str, Any] | None = None  # summary.json's, or computed
    # what went wrong (soak.findings): summary.json's, or computed
    findings: list[Finding] = field(default_factory=list)

    @property
    def intervals_with_samples(self) -> int:
        return sum(1 for c in self.rtt if c.values)


def run_totals(run: Run) -> dict[str, Any]:
    """summary.json's totals, or (a killed run) the sums of its intervals."""
    if run.summary is not None and isinstance(run.summary.get("totals"), dict):
        return dict(run.summary["totals"])
    return read_totals(run.intervals, missing=None)


def run_duration(run: Run, starts: Sequence[float], lengths: Sequence[float]) -> float:
    if run.summary is not None and isinstance(run.summary.get("duration_s"), int | float):
        return float(run.summary["duration_s"])
    dts = [float(iv["dt"]) for iv in run.intervals if isinstance(iv.get("dt"), int | float)]
    if dts:
        return sum(dts)
    return (starts[-1] + lengths[-1] - starts[0]) if starts else 0.0


def prepare(runs: Sequence[Run]) -> list[RunData]:
    labels = [r.label for r in runs]
    out = []
    for r in runs:
        name = r.label if labels.count(r.label) == 1 else f"{r.label} ({r.path.name})"
        rtt: list[Compact] = []
        starts: list[float] = []
        lengths: list[float] = []
        # one decoded histogram at a time (~190 KB each); only the compact
        # form is kept
        for h in r.iter_histograms("rtt"):
            rtt.append(compact(h.hist))
            starts.append(h.start)
            lengths.append(h.length)
        merged = merge(rtt)
        if not merged.total:
            raise CompareError(
                f"{r.path}: run '{r.label}' has no RTT samples (rtt.hlog is missing or "
                "empty): there is no latency to compare"
            )
        dur = run_duration(r, starts, lengths)
        out.append(
            RunData(
                r,
                name,
                rtt,
                starts,
                merged,
                run_totals(r),
                dur,
                run_availability(r),
                findings_of(r),
            )
        )
    return out


def run_availability(run: Run) -> dict[str, Any] | None:
    """summary.json's availability; computed from the intervals when there
    is none (a killed run); None for runs from before it was measured."""
    av = (run.summary or {}).get("availability")
    if isinstance(av, dict):
        return av
    items = availability.spans(run.intervals)
    if not items:
        return None
    return availability.summarize(items, run_storms(run) or [])


def run_storms(run: Run) -> list[dict[str, Any]] | None:
    """summary.json's storms; None when there is no such list (no
    summary.json, or one from before storms were measured)."""
    storms = (run.summary or {}).get("storms")
    if not isinstance(storms, list):
        return None
    return [s for s in storms if isinstance(s, dict)]
