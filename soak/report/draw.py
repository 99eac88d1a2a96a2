"""The report's PNGs, drawn from the data of :mod:`soak.report.charts` in
the style of :mod:`soak.report.figures`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soak.report import figures as fg
from soak.report.chart import Chart
from soak.report.charts import STORM_CHART, percentile_x, storm_key
from soak.report.story import STORY_CHART

# beyond this many intervals (or storm buckets), bars are drawn as filled
# step areas: 8,640 bar patches take matplotlib ~10 s
MAX_BARS = 300


def draw(chart: Chart) -> bytes:
    """One chart as PNG bytes."""
    if chart.name == STORM_CHART:
        return _draw_storms(chart)
    fig, ax = fg.figure()
    with fg.closing(fig):
        ax.set_title(chart.title)
        ax.grid(True, alpha=fg.GRID_ALPHA)
        if chart.name == "percentile_distribution":
            _draw_distribution(ax, chart)
        else:
            _draw_time(ax, chart)
        return fg.png(fig)


def write_charts(charts: Sequence[Chart], out: Path) -> dict[str, Path]:
    """Each chart as ``out/<name>.png``; their paths by chart name."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for c in charts:
        path = out / f"{c.name}.png"
        path.write_bytes(draw(c))
        paths[c.name] = path
    return paths


def _draw_distribution(ax: Any, chart: Chart) -> None:
    ax.set_ylabel(chart.y_label)
    if not chart.has_data:
        fg.percentile_axis(ax, None)
        fg.no_data(ax, "no data (no RTT samples)")
        return
    ax.plot(chart.x, fg.gaps(chart.series["rtt"]), color=fg.BLUE, lw=2, label="RTT")
    if chart.log_y:
        ax.set_yscale("log")
    top = max(chart.x)
    fg.percentile_axis(ax, top)
    for q, v in chart.extra["marked"].items():
        xq = percentile_x(q)
        if xq > top * 1.0001:
            continue
        ax.axvline(xq, color="grey", ls=":", lw=1)
        ax.plot([xq], [v], "o", color=fg.RED)
        ax.annotate(
            f"{q:g}%: {v:.3f} ms", (xq, v), textcoords="offset points", xytext=(4, 6), fontsize=8
        )
    ax.legend(loc="upper left")


def _draw_time(ax: Any, chart: Chart) -> None:
    scale = fg.time_axis(ax, chart.x, chart.x_label)
    xs = [v / scale for v in chart.x]
    ax.set_ylabel(chart.y_label)
    wall0 = chart.extra.get("wall0")
    if isinstance(wall0, int | float) and xs:
        fg.wall_clock_axis(ax, scale, float(wall0), chart.x)
    if chart.name == STORY_CHART:
        _draw_story(ax, chart, xs, scale)
        return
    for a, b in chart.shaded:
        ax.axvspan(a / scale, b / scale, color=fg.BOTTLENECK_COLOUR, alpha=0.35, lw=0)
    storms = chart.extra.get("storms") or []
    for k, (a, b) in enumerate(storms):
        ax.axvspan(
            a / scale,
            max(b, a) / scale,
            color=fg.STORM_COLOUR,
            alpha=0.25,
            lw=0,
            label="reconnect storm" if k == 0 else None,
        )
    if not xs or not chart.has_data:
        fg.no_data(ax)
        return
    if chart.name == "closes":
        _draw_closes(ax, chart, xs, scale)
    elif chart.name == "heartbeats":
        _draw_heartbeats(ax, chart, xs)
        return
    elif chart.name == "connections" and "connected (mean)" in chart.series:
        _draw_connections(ax, chart, xs, scale)
    else:
        for name, values in chart.series.items():
            ax.plot(xs, fg.gaps(values), lw=1.2, label=name, marker="." if len(xs) < 60 else None)
        if chart.log_y:
            ax.set_yscale("log")
    if chart.shaded:
        ax.axvspan(0, 0, color=fg.BOTTLENECK_COLOUR, alpha=0.35, label="tester bottleneck")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8)


# the story chart's bands by name: colour, opacity and the share of the
# chart's height they cover (from, to). Storms shade the whole height; the
# short events run in lanes along the top, so overlaps stay readable.
BANDS = {
    "reconnect storm": (fg.STORM_COLOUR, 0.35, (0.0, 1.0)),
    "false timeouts": (fg.FALSE_TIMEOUT_COLOUR, 0.8, (0.93, 1.0)),
    "tester bottleneck": ("#9467bd", 0.6, (0.86, 0.93)),
}
# bands closer than this share of the chart's span are drawn as one (a day
# of sporadic false timeouts would otherwise be thousands of patches)
BAND_JOIN = 0.002


def joined(
    bands: Sequence[tuple[str, float, float]], span: float
) -> list[tuple[str, float, float]]:
    """Each band name's spans, sorted, with those nearer than
    :data:`BAND_JOIN` of ``span`` merged."""
    out: list[tuple[str, float, float]] = []
    gap = BAND_JOIN * span
    for name in sorted(dict.fromkeys(n for n, _, _ in bands), key=_band_order):
        spans = sorted((a, b) for n, a, b in bands if n == name)
        merged: list[list[float]] = []
        for a, b in spans:
            if merged and a - merged[-1][1] <= gap:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        out += [(name, a, b) for a, b in merged]
    return out


def _draw_story(ax: Any, chart: Chart, xs: list[float], scale: float) -> None:
    """Connected against target (steps over each interval) on the left
    axis, RTT p99 on the right, the findings' bands behind both."""
    end = chart.extra.get("end_s")
    span = (end if isinstance(end, int | float) else (chart.x[-1] if chart.x else 0.0)) - (
        chart.x[0] if chart.x else 0.0
    )
    seen: set[str] = set()
    for name, a, b in joined(chart.extra.get("bands") or [], max(span, 1e-9)):
        colour, alpha, (low, high) = BANDS.get(name, (fg.STORM_COLOUR, 0.3, (0.0, 1.0)))
        width = max(b - a, span / 1000)  # an instant still shows
        ax.axvspan(
            a / scale,
            (a + width) / scale,
            ymin=low,
            ymax=high,
            color=colour,
            alpha=alpha,
            lw=0,
            label=None if name in seen else name,
        )
        seen.add(name)
    if not xs or not chart.has_data:
        fg.no_data(ax)
        return
    edges = [*xs, (end / scale) if isinstance(end, int | float) else xs[-1]]
    for name, colour in (("target", fg.GREEN), ("connected", fg.BLUE)):
        values = fg.gaps(chart.series[name])
        ax.step(edges, [*values, values[-1]], where="post", lw=1.4, color=colour, label=name)
    # room above the curves for the lanes
    top = max((v for k in ("target", "connected") for v in chart.series[k] if v), default=1.0)
    ax.set_ylim(0, top * 1.2)
    ax2 = ax.twinx()
    rtt = chart.series["rtt_p99"]
    ax2.plot(xs, fg.gaps(rtt), color=fg.ORANGE, lw=1.0, label="RTT p99 (ms)")
    ax2.set_ylabel("RTT p99 (ms)")
    positive = [v for v in rtt if v is not None and v > 0]
    if positive and max(positive) / min(positive) > 200.0:
        ax2.set_yscale("log")
    else:
        ax2.set_ylim(0, max(positive, default=1.0) * 2.2)  # below the connection curves
    fg.legend(ax, ax2, loc="lower left")


def _draw_connections(ax: Any, chart: Chart, xs: list[float], scale: float) -> None:
    """Each interval's time-weighted mean connected and target, as steps
    over the interval (not the gauges sampled at its end); the server's
    own count as points."""
    end = chart.extra.get("end_s")
    edges = [*xs, (end / scale) if isinstance(end, int | float) else xs[-1]]
    for name in ("target (mean)", "connected (mean)"):
        values = fg.gaps(chart.series[name])
        ax.step(edges, [*values, values[-1]], where="post", lw=1.4, label=name.split(" ")[0])
    server = chart.series.get("server_connections")
    if server is not None:
        ax.plot(xs, fg.gaps(server), ".", label="server_connections")


def _draw_closes(ax: Any, chart: Chart, xs: list[float], scale: float) -> None:
    width = (xs[1] - xs[0]) if len(xs) > 1 else 1.0 / scale
    bottom = np.zeros(len(xs))
    bars = len(xs) <= MAX_BARS
    edges = [*xs, xs[-1] + width]
    for name, values in chart.series.items():
        if name == "false_timeouts" or not any(values):
            continue
        vals = np.array([v or 0.0 for v in values])
        colour = fg.CATEGORY_COLOURS.get(name)
        if bars:
            ax.bar(xs, vals, width=width, bottom=bottom, align="edge", color=colour, label=name)
        else:
            top = bottom + vals
            ax.stairs(top, edges, baseline=bottom, fill=True, color=colour, label=name)
        bottom = bottom + vals
    ft = chart.series["false_timeouts"]
    if any(ft):
        style = {"color": fg.FALSE_TIMEOUT_COLOUR, "label": "false timeouts"}
        if bars:
            ft_bars = [v or 0.0 for v in ft]
            ax.bar(xs, ft_bars, width=width, align="edge", edgecolor="black", **style)
        else:
            fx = [x + width / 2 for x, v in zip(xs, ft, strict=True) if v]
            fy = [float(v or 0.0) for v in ft if v]
            ax.scatter(fx, fy, marker="v", s=36, edgecolors="black", zorder=5, **style)
    if not bottom.any() and not any(ft):
        fg.no_data(ax, "no closes")


def _draw_heartbeats(ax: Any, chart: Chart, xs: list[float]) -> None:
    ax.plot(xs, fg.gaps(chart.series["missed"]), color=fg.RED, lw=1.2, label="missed")
    ax.plot(xs, fg.gaps(chart.series["late"]), color=fg.ORANGE, lw=1.2, label="late")
    ax2 = ax.twinx()
    ax2.plot(xs, fg.gaps(chart.series["success_pct"]), color=fg.GREEN, lw=1.5, label="success")
    ax2.set_ylabel("heartbeat success (%)")
    ok = [v for v in chart.series["success_pct"] if v is not None]
    low = min(ok) if ok else 0.0
    ax2.set_ylim(min(low, 99.0) - 0.5, 100.2)
    fg.legend(ax, ax2, loc="lower left")


def _draw_storms(chart: Chart) -> bytes:
    """One panel per storm, stacked: attempts per bucket (bars, or a filled
    step area beyond MAX_BARS buckets), handshakes in flight (line), and
    recovered % on a secondary 0-100% axis."""
    indexes: list[int] = chart.extra["storms"]
    fig, axes = fg.figure((10, 1.0 + 3.2 * len(indexes)), rows=len(indexes))
    with fg.closing(fig):
        fig.suptitle(chart.title)
        # one storm: one Axes, not an array of them
        column = axes[:, 0] if len(indexes) > 1 else [axes]
        for ax, index in zip(column, indexes, strict=True):
            _draw_storm(ax, chart, index)
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
        return fg.png(fig, rect=(0.0, bottom, 1.0, 1.0))


def _draw_storm(ax: Any, chart: Chart, index: int) -> None:
    bucket: float = chart.extra["bucket_s"]
    ms = round(bucket * 1000)
    start = chart.extra["start_s"].get(index)
    at = f" at {start:g} s" if isinstance(start, int | float) else ""
    ax.set_title(f"storm {index}{at}", fontsize=10)
    ax.grid(True, alpha=fg.GRID_ALPHA)
    ax.set_xlabel(chart.x_label)
    ax.set_ylabel(f"attempts per {ms} ms / in flight", fontsize=9)
    att = chart.series[storm_key("attempts", index)]
    pairs = [(t, v) for t, v in zip(chart.x, att, strict=True) if v is not None]
    xs = [t for t, _ in pairs]
    style = {"color": fg.BLUE, "alpha": 0.8, "label": f"reconnect attempts per {ms} ms"}
    if len(xs) <= MAX_BARS:
        ax.bar(xs, [v for _, v in pairs], width=bucket, align="edge", **style)
    elif xs:
        ax.stairs([v for _, v in pairs], [*xs, xs[-1] + bucket], fill=True, **style)
    ax.plot(
        [t + bucket / 2 for t in chart.x],
        fg.gaps(chart.series[storm_key("in_flight", index)]),
        color=fg.ORANGE,
        lw=1.2,
        label="handshakes in flight",
    )
    ax2 = ax.twinx()
    ax2.plot(
        [t + bucket for t in chart.x],  # recovered by the end of the bucket
        fg.gaps(chart.series[storm_key("recovered_pct", index)]),
        color=fg.GREEN,
        lw=1.5,
        label="recovered (%)",
    )
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("lost connections recovered (%)", fontsize=9)
    if xs:
        ax.set_xlim(0, max(xs) + bucket)
    fg.legend(ax, ax2, loc="center right")


def _band_order(name: str) -> int:
    """Storms (the whole height) first, the lanes over them."""
    names = list(BANDS)
    return names.index(name) if name in names else len(names)
