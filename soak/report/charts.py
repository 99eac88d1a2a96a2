"""The report's charts: first the data each one plots (plain lists, so tests
can check the numbers), then the PNG drawn from it with matplotlib (Agg).

Times on the x axis are seconds since the run started (shown in minutes or
hours for long runs); latencies are milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from soak.metrics import new_histogram
from soak.report.load import HlogInterval, Run

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
CATEGORY_COLOURS = {
    "client": "#9ecae1",
    "heartbeat_timeout": "#fdae6b",
    "server": "#a1d99b",
    "transport": "#bcbddc",
}
FALSE_TIMEOUT_COLOUR = "#d62728"
BOTTLENECK_COLOUR = "#ff9896"

Num = float | None


@dataclass
class Chart:
    """What one chart plots. ``x`` and every series have the same length;
    None is a gap (no data for that interval)."""

    name: str  # file stem: <name>.png
    title: str
    x: list[float]
    series: dict[str, list[Num]]
    y_label: str
    x_label: str = "time since start"
    log_y: bool = False
    # [start, end) seconds shaded as "tester was the bottleneck"
    shaded: list[tuple[float, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_data(self) -> bool:
        return any(v is not None for s in self.series.values() for v in s)


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
    xs = [1.0 / (1.0 - q / 100.0) if q < 100.0 else float("inf") for q in qs]
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


def connections(intervals: Sequence[dict[str, Any]]) -> Chart:
    series: dict[str, list[Num]] = {
        "connected": [_num(r, "connected") for r in intervals],
        "target": [_num(r, "target") for r in intervals],
    }
    if any("server_connections" in r for r in intervals):
        series["server_connections"] = [_num(r, "server_connections") for r in intervals]
    return Chart("connections", "Connected clients", _times(intervals), series, "connections")


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


def all_charts(run: Run, rtt: IntervalSeries, storms: Sequence[dict[str, Any]] = ()) -> list[Chart]:
    iv = run.intervals
    charts = [
        rtt_over_time(rtt, iv),
        percentile_distribution(rtt.merged),
        connections(iv),
        heartbeats(iv),
        closes(iv),
        tester_lag(iv),
    ]
    storm = storm_timeline(storms)
    if storm is not None:
        charts.append(storm)
    return charts


# -- drawing -----------------------------------------------------------------


def _time_scale(x: Sequence[float]) -> tuple[float, str]:
    span = max(x) - min(x) if x else 0.0
    if span > 3 * 3600:
        return 3600.0, "h"
    if span > 3 * 60:
        return 60.0, "min"
    return 1.0, "s"


def _nan(values: Sequence[Num]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def _no_data(ax: Any, text: str = "no data") -> None:
    ax.text(
        0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=14, color="grey"
    )


def draw(chart: Chart, path: Path) -> Path:
    """Draw one chart to ``path`` (PNG)."""
    if chart.name == STORM_CHART:
        return _draw_storms(chart, path)
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    try:
        ax.set_title(chart.title)
        ax.grid(True, alpha=0.3)
        if chart.name == "percentile_distribution":
            _draw_distribution(ax, chart)
        else:
            _draw_time(ax, chart)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def _draw_distribution(ax: Any, chart: Chart) -> None:
    ax.set_xlabel("percentile (log scale of 1/(1-q))")
    ax.set_ylabel(chart.y_label)
    ax.set_xscale("log")
    ticks = [1.0, 2.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0]
    labels = ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
    if not chart.has_data:
        ax.set_xlim(1, 10000)
        ax.set_xticks(ticks[:6], labels[:6])
        _no_data(ax, "no data (no RTT samples)")
        return
    ys = _nan(chart.series["rtt"])
    ax.plot(chart.x, ys, color="#1f77b4", lw=2, label="RTT")
    if chart.log_y:
        ax.set_yscale("log")
    top = max(chart.x)
    ax.set_xlim(1, max(top, 10.0))
    shown = [(t, lab) for t, lab in zip(ticks, labels, strict=True) if t <= max(top, 10.0)]
    ax.set_xticks([t for t, _ in shown], [lab for _, lab in shown])
    for q, v in chart.extra["marked"].items():
        xq = 1.0 / (1.0 - q / 100.0)
        if xq > top * 1.0001:
            continue
        ax.axvline(xq, color="grey", ls=":", lw=1)
        ax.plot([xq], [v], "o", color="#d62728")
        ax.annotate(
            f"{q:g}%: {v:.3f} ms", (xq, v), textcoords="offset points", xytext=(4, 6), fontsize=8
        )
    ax.legend(loc="upper left")


def _draw_time(ax: Any, chart: Chart) -> None:
    scale, unit = _time_scale(chart.x)
    xs = [v / scale for v in chart.x]
    ax.set_xlabel(f"{chart.x_label} ({unit})")
    ax.set_ylabel(chart.y_label)
    for a, b in chart.shaded:
        ax.axvspan(a / scale, b / scale, color=BOTTLENECK_COLOUR, alpha=0.35, lw=0)
    if not xs or not chart.has_data:
        _no_data(ax)
        return
    if chart.name == "closes":
        _draw_closes(ax, chart, xs, scale)
    elif chart.name == "heartbeats":
        _draw_heartbeats(ax, chart, xs)
        return
    else:
        for name, values in chart.series.items():
            ax.plot(xs, _nan(values), lw=1.2, label=name, marker="." if len(xs) < 60 else None)
        if chart.log_y:
            ax.set_yscale("log")
    if chart.shaded:
        ax.axvspan(0, 0, color=BOTTLENECK_COLOUR, alpha=0.35, label="tester bottleneck")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8)


# beyond this many intervals, closes are drawn as stacked step areas: 8,640
# bar patches take matplotlib ~10 s
MAX_BARS = 300


def _draw_closes(ax: Any, chart: Chart, xs: list[float], scale: float) -> None:
    width = (xs[1] - xs[0]) if len(xs) > 1 else 1.0 / scale
    bottom = np.zeros(len(xs))
    bars = len(xs) <= MAX_BARS
    edges = [*xs, xs[-1] + width]
    for name, values in chart.series.items():
        if name == "false_timeouts" or not any(values):
            continue
        vals = np.array([v or 0.0 for v in values])
        colour = CATEGORY_COLOURS.get(name)
        if bars:
            ax.bar(xs, vals, width=width, bottom=bottom, align="edge", color=colour, label=name)
        else:
            top = bottom + vals
            ax.stairs(top, edges, baseline=bottom, fill=True, color=colour, label=name)
        bottom = bottom + vals
    ft = chart.series["false_timeouts"]
    if any(ft):
        fx = [x + width / 2 for x, v in zip(xs, ft, strict=True) if v]
        fy = [float(v or 0.0) for v in ft if v]
        if bars:
            ax.bar(
                xs,
                [v or 0.0 for v in ft],
                width=width,
                align="edge",
                color=FALSE_TIMEOUT_COLOUR,
                edgecolor="black",
                label="false timeouts",
            )
        else:
            ax.scatter(
                fx,
                fy,
                marker="v",
                s=36,
                color=FALSE_TIMEOUT_COLOUR,
                edgecolors="black",
                zorder=5,
                label="false timeouts",
            )
    if not bottom.any() and not any(ft):
        _no_data(ax, "no closes")


def _draw_heartbeats(ax: Any, chart: Chart, xs: list[float]) -> None:
    ax.plot(xs, _nan(chart.series["missed"]), color="#d62728", lw=1.2, label="missed")
    ax.plot(xs, _nan(chart.series["late"]), color="#ff7f0e", lw=1.2, label="late")
    ax2 = ax.twinx()
    ax2.plot(xs, _nan(chart.series["success_pct"]), color="#2ca02c", lw=1.5, label="success")
    ax2.set_ylabel("heartbeat success (%)")
    ok = [v for v in chart.series["success_pct"] if v is not None]
    low = min(ok) if ok else 0.0
    ax2.set_ylim(min(low, 99.0) - 0.5, 100.2)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, loc="lower left", fontsize=8)


ATTEMPTS_COLOUR = "#1f77b4"
IN_FLIGHT_COLOUR = "#ff7f0e"
RECOVERED_COLOUR = "#2ca02c"


def _draw_storms(chart: Chart, path: Path) -> Path:
    """One panel per storm, stacked: attempts per bucket (bars, or a filled
    step area beyond MAX_BARS buckets), handshakes in flight (line), and
    recovered % on a secondary 0-100% axis."""
    indexes: list[int] = chart.extra["storms"]
    bucket: float = chart.extra["bucket_s"]
    ms = round(bucket * 1000)
    fig, axes = plt.subplots(
        len(indexes), 1, figsize=(10, 1.0 + 3.2 * len(indexes)), dpi=100, squeeze=False
    )
    try:
        fig.suptitle(chart.title)
        for ax, index in zip(axes[:, 0], indexes, strict=True):
            start = chart.extra["start_s"].get(index)
            at = f" at {start:g} s" if isinstance(start, int | float) else ""
            ax.set_title(f"storm {index}{at}", fontsize=10)
            ax.grid(True, alpha=0.3)
            ax.set_xlabel(chart.x_label)
            ax.set_ylabel(f"attempts per {ms} ms / in flight", fontsize=9)
            att = chart.series[storm_key("attempts", index)]
            pairs = [(t, v) for t, v in zip(chart.x, att, strict=True) if v is not None]
            xs = [t for t, _ in pairs]
            if len(xs) <= MAX_BARS:
                ax.bar(
                    xs,
                    [v for _, v in pairs],
                    width=bucket,
                    align="edge",
                    color=ATTEMPTS_COLOUR,
                    alpha=0.8,
                    label=f"reconnect attempts per {ms} ms",
                )
            elif xs:
                ax.stairs(
                    [v for _, v in pairs],
                    [*xs, xs[-1] + bucket],
                    fill=True,
                    color=ATTEMPTS_COLOUR,
                    alpha=0.8,
                    label=f"reconnect attempts per {ms} ms",
                )
            ax.plot(
                [t + bucket / 2 for t in chart.x],
                _nan(chart.series[storm_key("in_flight", index)]),
                color=IN_FLIGHT_COLOUR,
                lw=1.2,
                label="handshakes in flight",
            )
            ax2 = ax.twinx()
            ax2.plot(
                [t + bucket for t in chart.x],  # recovered by the end of the bucket
                _nan(chart.series[storm_key("recovered_pct", index)]),
                color=RECOVERED_COLOUR,
                lw=1.5,
                label="recovered (%)",
            )
            ax2.set_ylim(0, 100)
            ax2.set_ylabel("lost connections recovered (%)", fontsize=9)
            if xs:
                ax.set_xlim(0, max(xs) + bucket)
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            ax2.legend(h1 + h2, l1 + l2, loc="center right", fontsize=8)
        bottom = 0.0
        if chart.extra.get("omitted"):
            bottom = 0.25 / (1.0 + 3.2 * len(indexes))  # room for the note
            fig.text(
                0.5,
                0.01,
                f"{chart.extra['omitted']} more storm(s) not drawn; see the storms table",
                ha="center",
                fontsize=9,
                color="grey",
            )
        fig.tight_layout(rect=(0.0, bottom, 1.0, 1.0))
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def write_charts(charts: Sequence[Chart], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    return {c.name: draw(c, out / f"{c.name}.png") for c in charts}
