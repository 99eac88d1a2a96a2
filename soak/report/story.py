"""Pure: the data of the report's story chart (the one chart that tells the
run: connected clients against the target and the RTT p99 per interval,
with the findings' storms, false-timeout bursts and tester-bottleneck
stretches as bands), and the run's start as epoch seconds for the
wall-clock axes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from soak.facts import Finding, number
from soak.report.chart import Chart, Num


def _num(rec: dict[str, Any], key: str) -> Num:
    return number(rec.get(key))


def _mean(rec: dict[str, Any], key: str) -> Num:
    """An interval's time-weighted mean of a gauge, from its client-seconds."""
    v, dt = _num(rec, key), _num(rec, "dt")
    return None if v is None or not dt else v / dt


STORY_CHART = "story"
# the bands of the story chart: which findings' spans, and their names
STORY_BANDS = (
    ("storms", "reconnect storm"),
    ("false_timeouts", "false timeouts"),
    ("tester_bottleneck", "tester bottleneck"),
)


def story(
    intervals: Sequence[dict[str, Any]],
    found: Sequence[Finding] = (),
    end: float | None = None,
) -> Chart:
    """The one chart that tells the run: connected clients against the
    target (time-weighted means where measured) and the RTT p99 of each
    interval, with the storms, false-timeout bursts and tester-bottleneck
    stretches of the findings as bands (``extra["bands"]``: name, start, end)."""
    mean = any("connected_s" in r for r in intervals)
    series: dict[str, list[Num]] = {
        "connected": [_mean(r, "connected_s") if mean else _num(r, "connected") for r in intervals],
        "target": [_mean(r, "target_s") if mean else _num(r, "target") for r in intervals],
        "rtt_p99": [_num(r, "rtt_p99_ms") for r in intervals],
    }
    names = dict(STORY_BANDS)
    bands = [(names[f.kind], a, b) for f in found if f.kind in names for a, b in f.spans if b >= a]
    return Chart(
        STORY_CHART,
        "The run: connected clients and RTT p99, with what went wrong",
        [float(r.get("t", i)) for i, r in enumerate(intervals)],
        series,
        "connections",
        extra={"bands": bands, "end_s": end},
    )


def start_epoch(manifest: dict[str, Any]) -> float | None:
    """run.json's start as epoch seconds, for wall-clock axes; None when
    it is missing or not a timestamp."""
    start = manifest.get("start")
    if not isinstance(start, str):
        return None
    try:
        when = datetime.fromisoformat(start)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
