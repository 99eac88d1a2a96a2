"""`soak compare RUN_A RUN_B [RUN_C ...]`: is B worse than A, and by how much?

RUN_A is the baseline. Every other run is compared with it:

- a table of metrics side by side, with absolute and relative deltas
  (with reconnect-storm rows when any run has storms: their number, and
  the FIRST storm's recovery p50/p90/p100 and peak attempts per 100 ms;
  with intermediary rows when any run named an intermediary idle timeout:
  the closes it explained and the first timeout's length);
- for RTT p50/p99/p99.9, a bootstrap 95% confidence interval of the
  difference over the per-interval histograms (:mod:`soak.report.bootstrap`):
  a difference is significant only when the interval excludes 0;
- a verdict from thresholds (:data:`DEFAULT_LIMITS`, overridable with
  ``--max-regression NAME=VALUE``); a latency limit is only broken by a
  change that is both larger than the limit and significant;
- charts and one self-contained ``compare.html``
  (:mod:`soak.report.compare_page`; the text and JSON forms are
  :mod:`soak.report.compare_text`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from soak.results.reader import Run

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
    rows += intermediary_rows(datas)
    return rows


def intermediary_rows(datas: Sequence[RunData]) -> list[Row]:
    """The closes named as an intermediary idle timeout (soak.intermediary)
    and the first timeout's length: only when a run has any; "-" (None)
    where a run's summary.json predates them."""
    per_run: list[list[dict[str, Any]] | None] = []
    for d in datas:
        found = (d.run.summary or {}).get("intermediaries")
        per_run.append(
            [x for x in found if isinstance(x, dict)] if isinstance(found, list) else None
        )
    if not any(per_run):
        return []
    closes = [
        None if f is None else float(sum(_count(x, "closes") or 0 for x in f)) for f in per_run
    ]
    first = [None if not f else _count(f[0], "timeout_s") for f in per_run]
    return [
        Row("intermediary_closes", "intermediary closes", "", closes),
        Row("intermediary1_timeout", "intermediary 1 idle timeout", "s", first),
    ]


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
                sig = significance(ci)
                out.append(
                    Check(
                        name,
                        d.name,
                        f"at most {limit * 100:g}% worse (and significant)",
                        f"{rel_s} ({sig}, 95% CI {ci_ms(ci)})",
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


def significance(ci: Interval) -> str:
    if not ci.enough_data:
        return (
            f"not significant: too little data (needs {MIN_INTERVALS} intervals with "
            f"samples and {MIN_TAIL} samples above p{ci.q:g} in each run)"
        )
    return "significant" if ci.significant else "not significant"


def ci_ms(ci: Interval) -> str:
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
