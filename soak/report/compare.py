"""`soak compare RUN_A RUN_B [RUN_C ...]`: is B worse than A, and by how much?

RUN_A is the baseline. Every other run is compared with it:

- a table of metrics side by side, with absolute and relative deltas
  (with reconnect-storm rows when any run has storms: their number, and
  the FIRST storm's recovery p50/p90/p100 and peak attempts per 100 ms);
- for RTT p50/p99/p99.9, a bootstrap 95% confidence interval of the
  difference over the per-interval histograms (:mod:`soak.report.bootstrap`):
  a difference is significant only when the interval excludes 0;
- a verdict from thresholds (:data:`DEFAULT_LIMITS`, overridable with
  ``--max-regression NAME=VALUE``); a latency limit is only broken by a
  change that is both larger than the limit and significant;
- charts and one self-contained ``compare.html``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soak.errors import ResultsError
from soak.metrics import read_totals
from soak.report.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    MIN_INTERVALS,
    MIN_TAIL,
    Compact,
    Interval,
    bootstrap_diff,
    compact,
    merge,
)
from soak.report.load import HlogInterval, Run

LATENCY_QS = {"p50": 50.0, "p99": 99.0, "p99.9": 99.9}
# Counters that are worse when higher; a limit on them is an absolute increase.
COUNT_METRICS = (
    "false_timeouts",
    "zombies",
    "justified_timeouts",
    "missed",
    "late",
    "abandoned",
    "reconnect_failed",
    "handshake_failure_total",
)
LATENCY_METRICS = tuple(f"rtt_{k}" for k in LATENCY_QS)
LIMIT_NAMES = (*LATENCY_METRICS, "heartbeat_success", *COUNT_METRICS)
# rtt_p99 may not be more than 10% worse (and significantly so); false
# timeouts and zombies may not increase; heartbeat success may not drop by
# more than 0.1 percentage points.
DEFAULT_LIMITS = {
    "rtt_p99": 0.10,
    "false_timeouts": 0.0,
    "heartbeat_success": 0.1,
    "zombies": 0.0,
}
MAX_REGRESSION_FORM = (
    "expected NAME=VALUE: rtt_p50|rtt_p99|rtt_p99.9 with a relative limit like 10%, "
    "heartbeat_success with a drop in percentage points like 0.1, or a counter ("
    + ", ".join(COUNT_METRICS)
    + ") with an absolute increase like 0"
)


class CompareError(ResultsError):
    """Runs that cannot be compared."""


class LimitSpecError(ValueError):
    pass


def parse_limits(specs: Sequence[str]) -> dict[str, float]:
    """The defaults, overridden by ``NAME=VALUE`` specs. Raises
    LimitSpecError naming the bad spec."""
    limits = dict(DEFAULT_LIMITS)
    for spec in specs:
        name, sep, raw = spec.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or name not in LIMIT_NAMES or not raw:
            raise LimitSpecError(f'"{spec}": {MAX_REGRESSION_FORM}')
        try:
            if name in LATENCY_METRICS:
                if not raw.endswith("%"):
                    raise ValueError
                value = float(raw[:-1]) / 100
            elif name == "heartbeat_success":
                value = float(raw.removesuffix("pp").removesuffix("%"))
            else:
                value = float(raw)
        except ValueError:
            raise LimitSpecError(f'"{spec}": {MAX_REGRESSION_FORM}') from None
        if not value >= 0 or value == float("inf"):
            raise LimitSpecError(f'"{spec}": the limit must be a finite number >= 0')
        limits[name] = value
    return limits


# -- reading the runs -------------------------------------------------------------


@dataclass
class RunData:
    run: Run
    name: str  # the label, made unique among the runs compared
    rtt: list[Compact]  # one per hlog interval
    starts: list[float]  # seconds since the run started
    merged: Compact
    totals: dict[str, Any]
    duration_s: float

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
        # one decoded histogram at a time (~190 KB each) when load.py can
        # stream them; only the compact form is kept
        stream = getattr(r, "iter_histograms", None)
        source: Iterable[HlogInterval] = (
            stream("rtt") if stream is not None else r.histograms("rtt")
        )
        for h in source:
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
        out.append(RunData(r, name, rtt, starts, merged, run_totals(r), dur))
    return out


def profile_key(run: Run) -> dict[str, Any]:
    """The profile without what differs between two runs of the same test:
    path, label, results directory, target and stats URLs."""
    prof = json.loads(json.dumps(run.manifest.get("profile") or {}))
    prof.pop("path", None)
    if isinstance(prof.get("run"), dict):
        prof["run"].pop("label", None)
        prof["run"].pop("results_dir", None)
    target = prof.get("target")
    if isinstance(target, dict):
        target.pop("url", None)
        if isinstance(target.get("stats"), dict):
            target["stats"].pop("url", None)
    return prof if isinstance(prof, dict) else {}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def profile_warnings(datas: Sequence[RunData]) -> list[str]:
    base = _flatten(profile_key(datas[0].run))
    out = []
    for d in datas[1:]:
        other = _flatten(profile_key(d.run))
        diff = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k))
        if diff:
            shown = ", ".join(diff[:6]) + (f" and {len(diff) - 6} more" if len(diff) > 6 else "")
            out.append(
                f"WARNING: '{d.name}' ran a different profile from the baseline "
                f"'{datas[0].name}' (differs in {shown}): the comparison may not be fair"
            )
    return out


# -- the table ----------------------------------------------------------------------


@dataclass
class Row:
    key: str
    title: str
    unit: str  # "ms", "s", "%", "" or "/h"
    values: list[float | None]

    def delta(self, j: int) -> float | None:
        a, b = self.values[0], self.values[j]
        return None if a is None or b is None else b - a

    def relative(self, j: int) -> float | None:
        a, d = self.values[0], self.delta(j)
        return None if d is None or a is None or a == 0 else d / a


def _ms(us: int | None) -> float | None:
    return None if us is None else us / 1000.0


def table(datas: Sequence[RunData]) -> list[Row]:
    rows = [
        Row(f"rtt_{k}", f"RTT {k}", "ms", [_ms(d.merged.percentile(q)) for d in datas])
        for k, q in LATENCY_QS.items()
    ]
    rows.append(Row("rtt_max", "RTT max", "ms", [_ms(d.merged.max) for d in datas]))
    hb: list[float | None] = []
    for d in datas:
        v = d.totals.get("heartbeat_success")
        hb.append(None if v is None else float(v) * 100)
    rows.append(Row("heartbeat_success", "heartbeat success", "%", hb))
    for k in ("false_timeouts", "zombies"):
        rows.append(Row(k, k.replace("_", " "), "", [_count(d.totals, k) for d in datas]))
    cats = sorted({c for d in datas for c in (d.totals.get("closes_by_category") or {})})
    for cat in cats:
        per_h: list[float | None] = []
        for d in datas:
            n = float((d.totals.get("closes_by_category") or {}).get(cat, 0))
            per_h.append(n * 3600 / d.duration_s if d.duration_s > 0 else None)
        rows.append(Row(f"closes_per_hour.{cat}", f"closes/h {cat}", "/h", per_h))
    gaps: list[float | None] = []
    for d in datas:
        rec = (d.run.summary or {}).get("reconcile")
        g = rec.get("max_gap") if isinstance(rec, dict) else None
        gaps.append(float(g) if isinstance(g, int | float) else None)
    if any(g is not None for g in gaps):
        rows.append(Row("drift_max_gap", "drift max gap (server-client)", "", gaps))
    rows += storm_rows(datas)
    return rows


# The storm compared is each run's FIRST storm: in the usual A/B test the
# same event (a gateway restart at the same moment of the same profile)
# starts it in both runs, so the first storms are like for like; the "worst"
# storm could be a different event in each run.
STORM_RECOVERY = ("p50", "p90", "p100")


def run_storms(run: Run) -> list[dict[str, Any]] | None:
    """summary.json's storms; None when there is no such list (no
    summary.json, or one from before storms were measured)."""
    storms = (run.summary or {}).get("storms")
    if not isinstance(storms, list):
        return None
    return [s for s in storms if isinstance(s, dict)]


def storm_rows(datas: Sequence[RunData]) -> list[Row]:
    """The number of storms, and the first storm's recovery p50/p90/p100 (s)
    and peak reconnect attempts per 100 ms. Only when at least one run has
    storm data; "-" (None) where a run has none. A recovery percentile that
    was never reached is None as well."""
    per_run = [run_storms(d.run) for d in datas]
    if all(s is None for s in per_run):
        return []
    firsts = [s[0] if s else None for s in per_run]
    rows = [
        Row(
            "storms",
            "reconnect storms",
            "",
            [None if s is None else float(len(s)) for s in per_run],
        )
    ]
    for k in STORM_RECOVERY:
        values: list[float | None] = []
        for first in firsts:
            rec = first.get("recovery_s") if first is not None else None
            values.append(_count(rec, k) if isinstance(rec, dict) else None)
        rows.append(Row(f"storm1_recovery_{k}", f"storm 1 recovery {k}", "s", values))
    rows.append(
        Row(
            "storm1_peak_attempts_per_100ms",
            "storm 1 peak attempts per 100 ms",
            "",
            [None if f is None else _count(f, "peak_attempts_per_100ms") for f in firsts],
        )
    )
    return rows


def _count(tot: dict[str, Any], key: str) -> float | None:
    v = tot.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


# -- the verdict --------------------------------------------------------------------


@dataclass
class Check:
    name: str
    run: str
    limit: str
    shown: str
    regression: bool


def verdict(
    datas: Sequence[RunData],
    rows: Sequence[Row],
    cis: dict[str, list[Interval]],
    limits: dict[str, float],
) -> list[Check]:
    by_key = {r.key: r for r in rows}
    out: list[Check] = []
    for name, limit in limits.items():
        for j, d in enumerate(datas[1:], 1):
            if name in LATENCY_METRICS:
                row = by_key[name]
                rel = row.relative(j)
                q = LATENCY_QS[name.removeprefix("rtt_")]
                ci = next(c for c in cis[d.name] if c.q == q)
                regression = rel is not None and rel > limit and ci.significant and ci.low > 0
                rel_s = "n/a" if rel is None else f"{rel * 100:+.1f}%"
                sig = _significance(ci)
                out.append(
                    Check(
                        name,
                        d.name,
                        f"at most {limit * 100:g}% worse (and significant)",
                        f"{rel_s} ({sig}, 95% CI {_ci_ms(ci)})",
                        regression,
                    )
                )
            elif name == "heartbeat_success":
                dpp = by_key[name].delta(j)
                if dpp is None:
                    out.append(Check(name, d.name, "", "no data", False))
                    continue
                out.append(
                    Check(
                        name,
                        d.name,
                        f"may drop at most {limit:g} percentage points",
                        f"{dpp:+.3f} pp",
                        -dpp > limit + 1e-9,
                    )
                )
            else:
                a, b = _count(datas[0].totals, name), _count(d.totals, name)
                if a is None or b is None:
                    out.append(Check(name, d.name, "", "no data", False))
                    continue
                out.append(
                    Check(
                        name,
                        d.name,
                        f"may increase by at most {limit:g}",
                        f"{a:g} -> {b:g} ({b - a:+g})",
                        b - a > limit,
                    )
                )
    return out


def _significance(ci: Interval) -> str:
    if not ci.enough_data:
        return (
            f"not significant: too little data (needs {MIN_INTERVALS} intervals with "
            f"samples and {MIN_TAIL} samples above p{ci.q:g} in each run)"
        )
    return "significant" if ci.significant else "not significant"


def _ci_ms(ci: Interval) -> str:
    return f"[{ci.low / 1000:+.3f}, {ci.high / 1000:+.3f}] ms"


# -- the whole comparison -----------------------------------------------------------


@dataclass
class Comparison:
    datas: list[RunData]
    rows: list[Row]
    cis: dict[str, list[Interval]]  # by the name of each non-baseline run
    checks: list[Check]
    warnings: list[str]
    notes: list[str] = field(default_factory=list)
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED

    @property
    def regression(self) -> bool:
        return any(c.regression for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 1 if self.regression else 0


def compare(
    runs: Sequence[Run],
    limits: dict[str, float] | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    if len(runs) < 2:
        raise CompareError("compare needs at least two runs")
    datas = prepare(runs)
    rows = table(datas)
    cis = {
        d.name: bootstrap_diff(
            datas[0].rtt, d.rtt, tuple(LATENCY_QS.values()), resamples=resamples, seed=seed
        )
        for d in datas[1:]
    }
    lim = DEFAULT_LIMITS if limits is None else limits
    checks = verdict(datas, rows, cis, lim)
    notes = [f"{d.name}: {p}" for d in datas for p in d.run.problems]
    for d in datas:
        if d.run.partial:
            notes.append(f"{d.name}: partial run (status {d.run.status})")
        if d.intervals_with_samples < MIN_INTERVALS:
            notes.append(
                f"{d.name}: only {d.intervals_with_samples} intervals with RTT samples; "
                f"latency differences need at least {MIN_INTERVALS} to be called significant"
            )
    return Comparison(datas, rows, cis, checks, profile_warnings(datas), notes, resamples, seed)


# -- text ---------------------------------------------------------------------------


def _fmt(v: float | None, unit: str, sign: str = "") -> str:
    """A value in its unit; ``sign="+"`` formats a delta (pp for percentages)."""
    if v is None:
        return "-"
    if unit in ("ms", "s"):
        return f"{v:{sign}.3f}"
    if unit == "%":
        return f"{v:{sign}.3f}" + ("pp" if sign else "%")
    if unit == "/h":
        return f"{v:{sign}.1f}"
    return f"{v:{sign}g}"


def _fmt_delta(v: float | None, unit: str) -> str:
    return _fmt(v, unit, "+")


def _fmt_rel(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:+.1f}%"


def table_cells(c: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the side-by-side table (shared by text and HTML)."""
    header = ["metric", f"{c.datas[0].name} (baseline)"]
    for d in c.datas[1:]:
        header += [d.name, "delta", "delta %"]
    body = []
    for row in c.rows:
        title = f"{row.title} ({row.unit})" if row.unit in ("ms", "s", "/h") else row.title
        cells = [title, _fmt(row.values[0], row.unit)]
        for j in range(1, len(c.datas)):
            cells += [
                _fmt(row.values[j], row.unit),
                _fmt_delta(row.delta(j), row.unit),
                _fmt_rel(row.relative(j)),
            ]
        body.append(cells)
    return header, body


def ci_lines(c: Comparison) -> list[list[str]]:
    out = []
    for d in c.datas[1:]:
        for ci in c.cis[d.name]:
            state = _significance(ci)
            out.append(
                [
                    f"{d.name} - {c.datas[0].name}",
                    f"RTT p{ci.q:g}",
                    f"{ci.diff / 1000:+.3f} ms",
                    _ci_ms(ci),
                    state,
                ]
            )
    return out


def _align(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [
            s.rjust(w) for s, w in zip(r[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
    return out


def verdict_text(c: Comparison) -> str:
    if c.regression:
        bad = sorted({f"{k.name} ({k.run})" for k in c.checks if k.regression})
        return "REGRESSION: " + ", ".join(bad) + " (exit code 1)"
    return "no regression (exit code 0)"


def render_text(c: Comparison) -> str:
    lines = list(c.warnings)
    if lines:
        lines.append("")
    header, body = table_cells(c)
    lines += _align([header, *body])
    lines += [
        "",
        f"bootstrap 95% CI of the difference (intervals resampled with replacement, "
        f"{c.resamples} resamples, seed {c.seed}):",
    ]
    lines += ["  " + s for s in _align(ci_lines(c))]
    lines += ["", "thresholds:"]
    for k in c.checks:
        state = "REGRESSION" if k.regression else "ok"
        limit = f" {k.limit}" if k.limit else ""
        lines.append(f"  {k.name}{limit}: {k.run} {k.shown} {state}")
    for n in c.notes:
        lines.append(f"note: {n}")
    lines += ["", f"verdict: {verdict_text(c)}"]
    return "\n".join(lines) + "\n"


# -- charts -------------------------------------------------------------------------


def chart_series(c: Comparison) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """What the charts plot, per run name:

    - ``percentiles``: x = 1/(1-q) where q is the fraction of samples below a
      value, y = the value in ms (HdrHistogram's percentile distribution);
    - ``rtt_p99``: x = interval start in seconds, y = that interval's p99 in ms.
    """
    dist: dict[str, tuple[list[float], list[float]]] = {}
    over_time: dict[str, tuple[list[float], list[float]]] = {}
    for d in c.datas:
        total = d.merged.total
        xs, ys = [], []
        below = 0
        for v, n in zip(d.merged.values, d.merged.counts, strict=True):
            xs.append(1.0 / (1.0 - below / total))
            ys.append(v / 1000.0)
            below += n
        dist[d.name] = (xs, ys)
        ts, ps = [], []
        for start, iv in zip(d.starts, d.rtt, strict=True):
            p = iv.percentile(99.0)
            if p is not None:
                ts.append(start)
                ps.append(p / 1000.0)
        over_time[d.name] = (ts, ps)
    return {"percentiles": dist, "rtt_p99": over_time}


def render_charts(c: Comparison) -> dict[str, bytes]:
    """PNG bytes by file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    series = chart_series(c)
    out: dict[str, bytes] = {}

    fig, ax = plt.subplots(figsize=(9, 5))
    for name, (xs, ys) in series["percentiles"].items():
        ax.step(xs, ys, where="post", label=name)
    ax.set_xscale("log")
    ticks = [1, 10, 100, 1000, 10000, 100000]
    top = max((max(xs) for xs, _ in series["percentiles"].values() if xs), default=10.0)
    ticks = [t for t in ticks if t <= max(top * 10, 100)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticklabels([f"{100 * (1 - 1 / t):g}%" for t in ticks])
    ax.set_xlabel("percentile")
    ax.set_ylabel("heartbeat RTT (ms)")
    ax.set_title("RTT percentile distribution")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    out["percentiles.png"] = _png(fig, plt)

    fig, ax = plt.subplots(figsize=(9, 4))
    span = max((max(ts) for ts, _ in series["rtt_p99"].values() if ts), default=0.0)
    scale, unit = (3600.0, "h") if span > 7200 else (60.0, "min") if span > 120 else (1.0, "s")
    for name, (ts, ps) in series["rtt_p99"].items():
        ax.plot([t / scale for t in ts], ps, label=name, linewidth=1)
    ax.set_xlabel(f"time since start ({unit})")
    ax.set_ylabel("RTT p99 per interval (ms)")
    ax.set_title("RTT p99 over time")
    ax.grid(True, alpha=0.3)
    ax.legend()
    out["rtt_p99.png"] = _png(fig, plt)
    return out


def _png(fig: Any, plt: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


# -- HTML ---------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}
th{background:#f3f3f3}
.warn{background:#fff3cd;border:1px solid #e0b000;padding:.6em;font-weight:bold}
.bad{color:#b00020;font-weight:bold}.ok{color:#087f23}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}
"""


def _html_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{e(x)}</td>" for x in r) + "</tr>" for r in body)
    return f"<table><tr>{head}</tr>{rows}</table>"


def render_html(c: Comparison, charts: dict[str, bytes]) -> str:
    e = html.escape
    names = " vs ".join(d.name for d in c.datas)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>soak compare: {e(names)}</title><style>{_CSS}</style></head><body>",
        f"<h1>soak compare: {e(names)}</h1>",
    ]
    parts += [f"<p class='warn'>{e(w)}</p>" for w in c.warnings]
    cls = "bad" if c.regression else "ok"
    parts.append(f"<p>Verdict: <span class='{cls}'>{e(verdict_text(c))}</span></p>")
    runs = [
        [
            d.name,
            str(d.run.path),
            str(d.run.manifest.get("start", "")),
            f"{d.duration_s:g} s",
            str(len(d.rtt)),
            d.run.status,
        ]
        for d in c.datas
    ]
    parts.append("<h2>Runs</h2>")
    parts.append(
        _html_table(["run", "directory", "start", "duration", "intervals", "status"], runs)
    )
    parts.append("<h2>Metrics (baseline first)</h2>")
    parts.append(_html_table(*table_cells(c)))
    parts.append(
        f"<h2>Is the latency difference real?</h2><p>Bootstrap 95% confidence interval of "
        f"the difference, resampling each run's intervals with replacement ({c.resamples} "
        f"resamples, seed {c.seed}). Significant only when the interval excludes 0.</p>"
    )
    parts.append(_html_table(["runs", "metric", "difference", "95% CI", ""], ci_lines(c)))
    parts.append("<h2>Thresholds</h2>")
    parts.append(
        _html_table(
            ["metric", "run", "limit", "value", "verdict"],
            [
                [k.name, k.run, k.limit, k.shown, "REGRESSION" if k.regression else "ok"]
                for k in c.checks
            ],
        )
    )
    if c.notes:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li>{e(n)}</li>" for n in c.notes]
        parts.append("</ul>")
    parts.append("<h2>Charts</h2>")
    for fname, png in charts.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<p><img alt='{e(fname)}' src='data:image/png;base64,{data}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def default_out_dir(c: Comparison) -> Path:
    """``./compare-<baseline label>-vs-<label>[-vs-...]``, labels reduced to
    characters safe in a file name."""
    names = [re.sub(r"[^A-Za-z0-9._-]+", "_", d.run.label).strip("_") or "run" for d in c.datas]
    return Path(f"compare-{'-vs-'.join(names)}")


def to_json(c: Comparison) -> dict[str, Any]:
    return {
        "runs": [{"name": d.name, "path": str(d.run.path)} for d in c.datas],
        "warnings": c.warnings,
        "table": [{"metric": r.key, "unit": r.unit, "values": r.values} for r in c.rows],
        "bootstrap": {
            name: [
                {
                    "q": ci.q,
                    "diff_ms": ci.diff / 1000,
                    "ci_ms": [ci.low / 1000, ci.high / 1000],
                    "significant": ci.significant,
                    "enough_data": ci.enough_data,
                }
                for ci in cis
            ]
            for name, cis in c.cis.items()
        },
        "checks": [k.__dict__ for k in c.checks],
        "regression": c.regression,
        "exit_code": c.exit_code,
    }


def write_outputs(c: Comparison, out: Path) -> Path:
    """Charts, compare.html and compare.json into ``out``; returns the page."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        charts = render_charts(c)
        for fname, png in charts.items():
            (out / fname).write_bytes(png)
        page = out / "compare.html"
        page.write_text(render_html(c, charts), encoding="utf-8")
        (out / "compare.json").write_text(json.dumps(to_json(c), indent=2) + "\n", "utf-8")
    except OSError as exc:
        raise ResultsError(f"{out}: cannot write the comparison: {exc.strerror or exc}") from exc
    return page
