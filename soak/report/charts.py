"""The report's charts: the data each one plots (plain lists, so tests can
check the numbers). :mod:`soak.report.draw` draws the PNGs from them.

Times on the x axis are seconds since the run started (shown in minutes or
hours for long runs, see :func:`soak.report.figures.time_unit`), with the
run's wall-clock time (UTC) on a second axis above; latencies are
milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from soak.facts import Finding
from soak.metrics import new_histogram
from soak.report.chart import Chart, Num
from soak.report.story import start_epoch, story
from soak.results.reader import HlogInterval, Run

# per-interval RTT percentiles drawn on the RTT-over-time chart
RTT_PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
)
# marked on the percentile distribution
MARKED = (90.0, 99.0, 99.9, 99.99)
CLOSE_CATEGORIES = ("client", "heartbeat_timeout", "server", "transport")


def _ms(us: float) -> float:
    return us / 1000.0


def percentile_values(h: Any, qs: Sequence[float]) -> dict[float, int]:
    """The same answer as ``h.get_percentile_to_value_dict(qs)`` (tests check
    it), in one vectorised pass: a cumulative sum of the counts array and a
    binary search per percentile. hdrh's own loop calls a Python method per
    bucket (~2.7 ms for a histogram reaching seconds); this is ~50 us, which
    is what keeps a 24-hour run (8,640 histograms) fast."""
    total = int(h.get_total_count())
    if not total:
        return {}
    n = min(int(h.counts_len), int(h.encoder.payload.counts_len))
    counts = np.ctypeslib.as_array(h.counts)[:n]
    cum = np.cumsum(counts, dtype=np.int64)
    out: dict[float, int] = {}
    for q in qs:
        target = max(int(min(q, 100.0) * total / 100 + 0.5), 1)
        index = int(np.searchsorted(cum, target, side="left"))
        if index >= n:
            index = n - 1
        v = h.get_value_from_index(index)
        out[q] = int(h.get_highest_equivalent_value(v) if q else h.get_lowest_equivalent_value(v))
    return out


@dataclass
class IntervalSeries:
    """Per-interval percentiles of one histogram, and the whole run's merge."""

    x: list[float]  # interval start, seconds since the run started
    series: dict[str, list[Num]]  # p50 .. p99.9 and max, ms; None: no samples
    merged: Any  # HdrHistogram


def interval_percentiles(hists: Iterable[HlogInterval]) -> IntervalSeries:
    """p50/p90/p99/p99.9/max (ms) of each interval's histogram: one pass over
    each histogram's counts (:func:`percentile_values`). Consumes ``hists``
    one at a time (each decoded histogram is ~190 KB) and merges them."""
    out: dict[str, list[Num]] = {k: [] for k, _ in RTT_PERCENTILES}
    out["max"] = []
    x: list[float] = []
    merged = new_histogram()
    qs = [q for _, q in RTT_PERCENTILES]
    for iv in hists:
        h = iv.hist
        x.append(iv.start)
        merged.add(h)
        if not h.get_total_count():
            for values in out.values():
                values.append(None)
            continue
        p = percentile_values(h, qs)
        for k, q in RTT_PERCENTILES:
            out[k].append(_ms(p[q]))
        out["max"].append(_ms(h.get_max_value()))
    return IntervalSeries(x, out, merged)


def bottleneck_spans(intervals: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """Runs of consecutive intervals flagged ``tester_bottleneck``, merged."""
    spans: list[tuple[float, float]] = []
    for rec in intervals:
        if not rec.get("tester_bottleneck"):
            continue
        start = float(rec.get("t", 0.0))
        end = start + float(rec.get("dt", 0.0) or 0.0)
        if spans and abs(spans[-1][1] - start) < 1e-6:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def rtt_over_time(rtt: IntervalSeries, intervals: Sequence[dict[str, Any]]) -> Chart:
    x, series = rtt.x, rtt.series
    values = [v for s in series.values() for v in s if v is not None and v > 0]
    log_y = bool(values) and max(values) / min(values) > 200.0  # > ~2 decades
    return Chart(
        "rtt_over_time",
        "Heartbeat RTT per interval",
        x,
        series,
        "RTT (ms)",
        log_y=log_y,
        shaded=bottleneck_spans(intervals),
    )


def percentile_x(q: float) -> float:
    """Where percentile ``q`` (0..100) sits on a percentile axis: 1/(1-q)."""
    return 1.0 / (1.0 - q / 100.0) if q < 100.0 else float("inf")


def percentile_points(n: int, max_nines: int = 6, per_decade: int = 10) -> list[float]:
    """Percentiles evenly spread on the 1/(1-q) axis, from 0 up to what ``n``
    samples can resolve (at most ``max_nines`` nines)."""
    if n <= 0:
        return []
    decades = min(float(max_nines), math.log10(max(n, 1)))
    steps = max(1, int(decades * per_decade))
    qs = [100.0 * (1.0 - 10.0 ** (-decades * i / steps)) for i in range(steps + 1)]
    qs.extend(q for q in MARKED if q < qs[-1] + 1e-9 and q not in qs)
    return sorted(set(round(q, 6) for q in qs))


def percentile_distribution(hist: Any) -> Chart:
    """The whole run's merged histogram: latency (ms) against percentile,
    x = 1/(1-q). ``extra["marked"]`` holds the value at 90/99/99.9/99.99%."""
    n = int(hist.get_total_count())
    qs = percentile_points(n)
    values = hist.get_percentile_to_value_dict(qs + list(MARKED)) if n else {}
    xs = [percentile_x(q) for q in qs]
    ys: list[Num] = [_ms(values[q]) for q in qs]
    marked = {q: _ms(values[q]) for q in MARKED} if n else {}
    positive = [v for v in ys if v is not None and v > 0]
    return Chart(
        "percentile_distribution",
        "Heartbeat RTT percentile distribution (whole run)",
        xs,
        {"rtt": ys},
        "RTT (ms)",
        x_label="percentile",
        log_y=bool(positive) and max(positive) / min(positive) > 200.0,
        extra={
            "percentiles": qs,
            "marked": marked,
            "count": n,
            "max_ms": _ms(hist.get_max_value()) if n else None,
        },
    )


def _times(intervals: Sequence[dict[str, Any]]) -> list[float]:
    return [float(r.get("t", i)) for i, r in enumerate(intervals)]


def _num(rec: dict[str, Any], key: str) -> Num:
    v = rec.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _mean(rec: dict[str, Any], key: str) -> Num:
    """An interval's time-weighted mean of a gauge, from its client-seconds."""
    v, dt = _num(rec, key), _num(rec, "dt")
    return None if v is None or not dt else v / dt


def storm_bands(
    summary_storms: Sequence[dict[str, Any]] | None,
    series: Sequence[dict[str, Any]] = (),
    end: float | None = None,
) -> list[tuple[float, float]]:
    """[start, end) seconds of each storm: from summary.json's storms (a
    storm still going at the end lasts until ``end``), else from the
    storms.jsonl series (start plus its buckets)."""
    out: list[tuple[float, float]] = []
    if summary_storms:
        for st in summary_storms:
            a = _num(st, "start_s")
            if a is None:
                continue
            b = _num(st, "end_s")
            out.append((a, b if b is not None else (end if end is not None else a)))
        return out
    for st in series:
        a = _num(st, "start_s")
        if a is None:
            continue
        n = len(st.get("attempts") or [])
        out.append((a, a + n * float(st.get("bucket_s") or 0.1)))
    return out


def connections(
    intervals: Sequence[dict[str, Any]],
    bands: Sequence[tuple[float, float]] = (),
    end: float | None = None,
) -> Chart:
    """Connected against target: the gauges at each interval's end and,
    where the run measured client-seconds, their time-weighted means over
    the interval; the storms as bands (``extra["storms"]``)."""
    series: dict[str, list[Num]] = {
        "connected": [_num(r, "connected") for r in intervals],
        "target": [_num(r, "target") for r in intervals],
    }
    if any("connected_s" in r for r in intervals):
        series["connected (mean)"] = [_mean(r, "connected_s") for r in intervals]
        series["target (mean)"] = [_mean(r, "target_s") for r in intervals]
    if any("server_connections" in r for r in intervals):
        series["server_connections"] = [_num(r, "server_connections") for r in intervals]
    return Chart(
        "connections",
        "Connected clients against the target",
        _times(intervals),
        series,
        "connections",
        extra={"storms": list(bands), "end_s": end},
    )


def heartbeats(intervals: Sequence[dict[str, Any]]) -> Chart:
    success: list[Num] = []
    for r in intervals:
        v = _num(r, "heartbeat_success")
        success.append(None if v is None else v * 100.0)
    return Chart(
        "heartbeats",
        "Heartbeat success, missed and late per interval",
        _times(intervals),
        {
            "success_pct": success,
            "missed": [_num(r, "missed") for r in intervals],
            "late": [_num(r, "late") for r in intervals],
        },
        "heartbeats per interval",
        extra={"success_label": "success (%)"},
    )


def closes(intervals: Sequence[dict[str, Any]]) -> Chart:
    cats = list(CLOSE_CATEGORIES)
    for r in intervals:
        for k in r.get("closes_by_category") or {}:
            if k not in cats:
                cats.append(k)
    series: dict[str, list[Num]] = {}
    for c in cats:
        series[c] = [float((r.get("closes_by_category") or {}).get(c, 0)) for r in intervals]
    series["false_timeouts"] = [float(r.get("false_timeouts", 0) or 0) for r in intervals]
    return Chart(
        "closes",
        "Connection closes per interval, by category",
        _times(intervals),
        series,
        "closes per interval",
    )


def tester_lag(intervals: Sequence[dict[str, Any]]) -> Chart:
    return Chart(
        "tester_lag",
        "The tester's own lag (send lateness and event-loop lag)",
        _times(intervals),
        {
            "lag_p99": [_num(r, "lag_p99_ms") for r in intervals],
            "loop_lag_max": [_num(r, "loop_lag_max_ms") for r in intervals],
        },
        "lag (ms)",
        shaded=bottleneck_spans(intervals),
    )


STORM_CHART = "storm_timeline"
# at most this many storms are drawn, one panel each; the rest are noted
MAX_STORM_PANELS = 4
STORM_KINDS = ("attempts", "in_flight", "recovered_pct")


def storm_key(kind: str, index: int) -> str:
    """The series name of one storm's attempts/in_flight/recovered_pct."""
    return f"{kind}#{index}"


def storm_timeline(storms: Sequence[dict[str, Any]]) -> Chart | None:
    """Chart 7: the 100 ms series of storms.jsonl (see ``Storm.series()``),
    one panel per storm, the first :data:`MAX_STORM_PANELS` of them.

    ``x`` is seconds since each storm's start (the start of each bucket),
    shared by all panels; ``series[storm_key(kind, index)]`` is that storm's
    attempts per bucket, handshakes in flight, or recovered % (None past the
    storm's end, or where the storm lost nothing). ``extra`` holds the
    storms drawn, their start times, the bucket length and how many were
    left out. None when there is no storm."""
    if not storms:
        return None
    shown = list(storms[:MAX_STORM_PANELS])
    grid: set[float] = set()
    per_storm: list[tuple[int, dict[float, dict[str, Num]]]] = []
    for st in shown:
        bucket = float(st.get("bucket_s") or 0.1)
        cols = {k: st.get(k) or [] for k in STORM_KINDS}
        n = max(len(c) for c in cols.values())
        points: dict[float, dict[str, Num]] = {}
        for b in range(n):
            t = round(b * bucket, 6)
            grid.add(t)
            points[t] = {k: _at(cols[k], b) for k in STORM_KINDS}
        per_storm.append((int(st["index"]), points))
    x = sorted(grid)
    series: dict[str, list[Num]] = {}
    for index, points in per_storm:
        for k in STORM_KINDS:
            series[storm_key(k, index)] = [points[t][k] if t in points else None for t in x]
    total = len(storms)
    title = "Reconnect-storm timeline"
    if total > len(shown):
        title += f" (first {len(shown)} of {total} storms)"
    return Chart(
        STORM_CHART,
        title,
        x,
        series,
        "reconnect attempts / handshakes in flight",
        x_label="seconds since the storm start (s)",
        extra={
            "storms": [index for index, _ in per_storm],
            "start_s": {int(st["index"]): st.get("start_s") for st in shown},
            "bucket_s": float(shown[0].get("bucket_s") or 0.1),
            "total": total,
            "omitted": total - len(shown),
        },
    )


def _at(values: Sequence[Any], i: int) -> Num:
    if i >= len(values):
        return None
    v = values[i]
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def all_charts(
    run: Run,
    rtt: IntervalSeries,
    storms: Sequence[dict[str, Any]] = (),
    found: Sequence[Finding] = (),
) -> list[Chart]:
    iv = run.intervals
    summary_storms = (run.summary or {}).get("storms")
    end = None
    if iv:
        end = (_num(iv[-1], "t") or 0.0) + (_num(iv[-1], "dt") or 0.0)
    bands = storm_bands(summary_storms if isinstance(summary_storms, list) else None, storms, end)
    charts = [
        story(iv, found, end),
        rtt_over_time(rtt, iv),
        percentile_distribution(rtt.merged),
        connections(iv, bands, end),
        heartbeats(iv),
        closes(iv),
        tester_lag(iv),
    ]
    storm = storm_timeline(storms)
    if storm is not None:
        charts.append(storm)
    wall0 = start_epoch(run.manifest)
    if wall0 is not None:
        for c in charts:
            if c.x_label == "time since start":
                c.extra["wall0"] = wall0  # a second, wall-clock axis (UTC)
    return charts
