"""How every chart of ``soak report`` and ``soak compare`` is drawn: the
matplotlib backend, figure sizes, colours, the time axis, the percentile
axis and saving to PNG. The two commands draw different charts, with the
same look.

The time axis rule (one for both commands, pinned by a test): times are
seconds since the run started, shown in hours when the times plotted span
more than 3 hours, in minutes when they span more than 3 minutes, and in
seconds otherwise, so an axis always shows at least three whole units.
The report's charts carry the run's wall-clock time (UTC) on a second axis
above (:func:`wall_clock_axis`).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the PNGs are written to disk
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

DPI = 100
WIDE = (10.0, 4.5)  # inches: one time-series chart
TALL = (10.0, 5.0)  # a percentile distribution

# The series colours (matplotlib's "tab10"): runs of a comparison in order,
# and the named series of the report.
RUN_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
BLUE, ORANGE, GREEN, RED = RUN_COLOURS[:4]
BOTTLENECK_COLOUR = "#ff9896"  # shading: the tester was the bottleneck
STORM_COLOUR = "#9edae5"  # shading: a reconnect storm
FALSE_TIMEOUT_COLOUR = RED
CATEGORY_COLOURS = {  # connection closes by category
    "client": "#9ecae1",
    "heartbeat_timeout": "#fdae6b",
    "server": "#a1d99b",
    "transport": "#bcbddc",
}
GRID_ALPHA = 0.3

# The time axis: (more than this many seconds, shown in, unit)
TIME_UNITS = ((3 * 3600.0, 3600.0, "h"), (3 * 60.0, 60.0, "min"))


def time_unit(times: Iterable[float]) -> tuple[float, str]:
    """(seconds per unit, unit) for an axis of ``times`` (seconds): see the
    module's rule."""
    ts = list(times)
    span = max(ts) - min(ts) if ts else 0.0
    for above, scale, unit in TIME_UNITS:
        if span > above:
            return scale, unit
    return 1.0, "s"


def run_colour(i: int) -> str:
    return RUN_COLOURS[i % len(RUN_COLOURS)]


def figure(size: tuple[float, float] = WIDE, rows: int = 1) -> tuple[Any, Any]:
    """A new figure and its axes (an array of ``rows`` by 1 when rows > 1)."""
    if rows == 1:
        return plt.subplots(figsize=size, dpi=DPI)
    return plt.subplots(rows, 1, figsize=size, dpi=DPI, squeeze=False)


@contextlib.contextmanager
def closing(fig: Any) -> Iterator[Any]:
    """Close ``fig`` when done, whatever happens: pyplot keeps every figure
    it made until it is closed."""
    try:
        yield fig
    finally:
        plt.close(fig)


def png(fig: Any, rect: tuple[float, float, float, float] | None = None) -> bytes:
    """The figure as PNG bytes, laid out tight (within ``rect``)."""
    if rect is None:
        fig.tight_layout()
    else:
        fig.tight_layout(rect=rect)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def gaps(values: Sequence[float | None]) -> list[float]:
    """None (no data) as NaN: matplotlib leaves a gap there."""
    return [math.nan if v is None else v for v in values]


def no_data(ax: Any, text: str = "no data") -> None:
    ax.text(
        0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=14, color="grey"
    )


# The percentile axis: x = 1/(1-q), log scale, labelled with q.
PERCENTILE_TICKS = (1.0, 2.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0)
PERCENTILE_LABELS = ("0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%")


def percentile_axis(ax: Any, top: float | None) -> None:
    """A log x axis of percentiles, x = 1/(1-q), up to ``top`` (None:
    nothing is plotted; show up to 99.99%)."""
    ax.set_xscale("log")
    ax.set_xlabel("percentile (log scale of 1/(1-q))")
    right = 10000.0 if top is None else max(top, 10.0)
    ax.set_xlim(1, right)
    shown = [(t, lab) for t, lab in zip(PERCENTILE_TICKS, PERCENTILE_LABELS, strict=True)]
    shown = [(t, lab) for t, lab in shown if t <= right]
    ax.set_xticks([t for t, _ in shown], [lab for _, lab in shown])
    ax.minorticks_off()


def time_axis(ax: Any, times: Iterable[float], label: str = "time since start") -> float:
    """Label the x axis of a chart over ``times`` (seconds); returns the
    seconds per unit to divide the x values by."""
    scale, unit = time_unit(times)
    ax.set_xlabel(f"{label} ({unit})")
    return scale


def wall_clock_axis(ax: Any, scale: float, wall0: float, times: Sequence[float]) -> None:
    """A second x axis above the chart: the run's wall-clock time (UTC) at
    the same ticks, for a reader who talks about 09:45 rather than 1,798 s.
    ``scale``: seconds per unit of the x values (:func:`time_axis`);
    ``wall0``: the run's start, epoch seconds. A tick on another day than
    the first shows its date too."""
    span = (max(times) - min(times)) if times else 0.0
    day = datetime.fromtimestamp(wall0 + (min(times) if times else 0.0), UTC).date()
    form = "%H:%M:%S" if span < 3 * 3600 else "%H:%M"

    def label(x: float, _pos: int) -> str:
        when = datetime.fromtimestamp(wall0 + x * scale, UTC)
        # a tick on another day than the run's first says which
        return when.strftime(form if when.date() == day else "%m-%d " + form)

    top = ax.secondary_xaxis("top")
    top.xaxis.set_major_formatter(FuncFormatter(label))
    top.set_xlabel("wall-clock time (UTC)", fontsize=8)
    top.tick_params(labelsize=7)


def legend(ax: Any, *more: Any, loc: str = "upper left") -> None:
    """One legend for ``ax`` and any twin axes ``more``, when anything is
    labelled."""
    handles, labels = ax.get_legend_handles_labels()
    for other in more:
        h, lab = other.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    if handles:
        (more[-1] if more else ax).legend(handles, labels, loc=loc, fontsize=8)
