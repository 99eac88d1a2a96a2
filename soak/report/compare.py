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

from collections.abc import Sequence
from dataclasses import dataclass, field

from soak.report.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    MIN_INTERVALS,
    MIN_TAIL,
    Interval,
    bootstrap_diff,
)
from soak.report.compare_data import CompareError, RunData, prepare
from soak.report.compare_profile import profile_differences
from soak.report.compare_rows import (
    COUNT_METRICS,
    LATENCY_QS,
    RATE_MIN_S,
    Row,
    count_value,
    first_storm,
    table,
)
from soak.results.reader import Run

LATENCY_METRICS = tuple(f"rtt_{k}" for k in LATENCY_QS)
# shares that may drop by at most a number of percentage points
SHARE_METRICS = ("heartbeat_success", "availability", "storm_recovery")
# worse when higher, limited relatively: the first storm's time to get all
# its lost clients back; handshake and reconnect failures per hour of the
# run (counts when a run is shorter than RATE_MIN_S)
RELATIVE_METRICS = ("storm_recovery_s", "handshake_failures", "reconnect_failures")
LIMIT_NAMES = (*LATENCY_METRICS, *SHARE_METRICS, *RELATIVE_METRICS, *COUNT_METRICS)
# rtt_p99 may not be more than 10% worse (and significantly so); false
# timeouts and zombies may not increase; heartbeat success may not drop by
# more than 0.1 percentage points, availability by more than 1; every storm
# that got all its lost clients back in the baseline must in the candidate;
# the first storm's recovery may not take more than 50% longer; handshake
# and reconnect failures may not be more than 50% up (and RATE_FLOOR more).
DEFAULT_LIMITS = {
    "rtt_p99": 0.10,
    "false_timeouts": 0.0,
    "heartbeat_success": 0.1,
    "zombies": 0.0,
    "availability": 1.0,
    "storm_recovery": 0.0,
    "storm_recovery_s": 0.50,
    "handshake_failures": 0.50,
    "reconnect_failures": 0.50,
}
# an increase of failures smaller than this (per hour, or a count) is noise
RATE_FLOOR = 10.0
MAX_REGRESSION_FORM = (
    "expected NAME=VALUE: rtt_p50|rtt_p99|rtt_p99.9, storm_recovery_s, handshake_failures or "
    "reconnect_failures with a relative limit like 10%, heartbeat_success, availability or "
    "storm_recovery with a drop in percentage points like 0.1, or a counter ("
    + ", ".join(COUNT_METRICS)
    + ") with an absolute increase like 0"
)


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
            if name in LATENCY_METRICS or name in RELATIVE_METRICS:
                if not raw.endswith("%"):
                    raise ValueError
                value = float(raw[:-1]) / 100
            elif name in SHARE_METRICS:
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


# -- the table ----------------------------------------------------------------------


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
            elif name in SHARE_METRICS:
                share_row = by_key.get(name)
                dpp = None if share_row is None else share_row.delta(j)
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
            elif name == "storm_recovery_s":
                out.append(recovery_check(datas[0], d, limit))
            elif name in RELATIVE_METRICS:
                rate_row = by_key[name]
                a, b = rate_row.values[0], rate_row.values[j]
                if a is None or b is None:
                    out.append(Check(name, d.name, "", "no data", False))
                    continue
                unit = "/h" if rate_row.unit == "/h" else ""
                allowed = max(limit * a, RATE_FLOOR)
                out.append(
                    Check(
                        name,
                        d.name,
                        f"may be at most {limit * 100:g}% higher (and {RATE_FLOOR:g}{unit} more)",
                        f"{a:.1f}{unit} -> {b:.1f}{unit} ({b - a:+.1f})",
                        b - a > allowed + 1e-9,
                    )
                )
            else:
                a, b = count_value(datas[0].totals, name), count_value(d.totals, name)
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


def recovery_check(base: RunData, d: RunData, limit: float) -> Check:
    """The first storm's time to get every lost client back: a candidate
    that never got them all back, where the baseline did, regressed."""
    name = "storm_recovery_s"
    a, b = first_storm(base), first_storm(d)
    ta = None if a is None else a.get("recovery_100_s")
    if a is None or b is None or ta is None:
        why = "no storm in both runs" if a is None or b is None else "the baseline never recovered"
        return Check(name, d.name, "", f"no data ({why})", False)
    tb = b.get("recovery_100_s")
    allowed = f"at most {limit * 100:g}% longer"
    if tb is None:
        back = f"{b.get('recovered', 0)} of {b.get('lost', 0)}"
        return Check(name, d.name, allowed, f"{ta:g} s -> never ({back} back by the end)", True)
    rel = (tb - ta) / ta if ta > 0 else 0.0
    return Check(name, d.name, allowed, f"{ta:g} s -> {tb:g} s ({rel * 100:+.1f}%)", rel > limit)


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
    warnings, same = profile_differences(datas)
    notes = [f"{d.name}: {p}" for d in datas for p in d.run.problems]
    notes += same
    for d in datas:
        if d.run.partial:
            notes.append(f"{d.name}: partial run (status {d.run.status})")
        if d.intervals_with_samples < MIN_INTERVALS:
            notes.append(
                f"{d.name}: only {d.intervals_with_samples} intervals with RTT samples; "
                f"latency differences need at least {MIN_INTERVALS} to be called significant"
            )
    if any(d.duration_s < RATE_MIN_S for d in datas):
        notes.append(
            f"a run is shorter than {RATE_MIN_S / 60:g} min: closes, handshake and reconnect "
            "failures are compared as counts, not per hour"
        )
    return Comparison(datas, rows, cis, checks, warnings, notes, resamples, seed)
