"""The comparison's table: one :class:`Row` per metric, the runs side by
side (latency, counts, availability, storms, intermediaries), and the
rules for rates per hour."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from soak.report.compare_data import RunData, run_storms

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


# a run shorter than this has its failures compared as counts, not per hour
RATE_MIN_S = 600.0


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
    rows += wire_rows(datas)
    hb: list[float | None] = []
    for d in datas:
        v = d.totals.get("heartbeat_success")
        hb.append(None if v is None else float(v) * 100)
    rows.append(Row("heartbeat_success", "heartbeat success", "%", hb))
    for k in ("false_timeouts", "zombies"):
        rows.append(Row(k, k.replace("_", " "), "", [count_value(d.totals, k) for d in datas]))
    rows += availability_rows(datas)
    hourly = per_hour(datas)
    cats = sorted({c for d in datas for c in (d.totals.get("closes_by_category") or {})})
    for cat in cats:
        per_h: list[float | None] = []
        for d in datas:
            n = float((d.totals.get("closes_by_category") or {}).get(cat, 0))
            per_h.append(_rate(n, d, hourly))
        if hourly:
            rows.append(Row(f"closes_per_hour.{cat}", f"closes/h {cat}", "/h", per_h))
        else:
            rows.append(Row(f"closes.{cat}", f"closes {cat}", "", per_h))
    unit = "/h" if hourly else ""
    for key, title in (
        ("handshake_failures", "handshake failures"),
        ("reconnect_failures", "reconnect failures"),
    ):
        counts = [failures(d.totals, key) for d in datas]
        values = [
            None if n is None else _rate(n, d, hourly) for n, d in zip(counts, datas, strict=True)
        ]
        rows.append(Row(key, title, unit, values))
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


def wire_rows(datas: Sequence[RunData]) -> list[Row]:
    """rtt_wire (kernel timestamps: the gateway and the network without the
    tester) beside RTT, when a run measured it; from summary.json."""
    figures: dict[str, list[float | None]] = {"p50": [], "p99": []}
    for d in datas:
        h = ((d.run.summary or {}).get("latency_ms") or {}).get("rtt_wire") or {}
        for k in figures:
            v = h.get(k) if h.get("count") else None
            figures[k].append(float(v) if isinstance(v, int | float) else None)
    if all(v is None for v in figures["p50"]):
        return []
    return [Row(f"rtt_wire_{k}", f"RTT wire {k}", "ms", v) for k, v in figures.items()]


def per_hour(datas: Sequence[RunData]) -> bool:
    """Rates per hour mean something only when every run is long enough."""
    return all(d.duration_s >= RATE_MIN_S for d in datas)


def _rate(n: float, d: RunData, hourly: bool) -> float | None:
    if not hourly:
        return n
    return n * 3600 / d.duration_s if d.duration_s > 0 else None


def failures(tot: dict[str, Any], key: str) -> float | None:
    """Handshake failures (every cause), or reconnect failures (reconnect
    attempts that did not become a connection)."""
    if key == "handshake_failures":
        return count_value(tot, "handshake_failure_total")
    attempts, ok = count_value(tot, "reconnect_attempts"), count_value(tot, "reconnects")
    return None if attempts is None or ok is None else max(0.0, attempts - ok)


def availability_rows(datas: Sequence[RunData]) -> list[Row]:
    """Availability (%), the worst storm's share of lost clients back by the
    end (%) and the longest stretch below 95% (s); only when a run has them."""
    avs = [d.availability for d in datas]
    if all(a is None for a in avs):
        return []

    def pick(a: dict[str, Any] | None, key: str, scale: float = 1.0) -> float | None:
        v = None if a is None else a.get(key)
        return float(v) * scale if isinstance(v, int | float) else None

    below = [None if a is None else (a.get("below") or {}) for a in avs]
    return [
        Row("availability", "availability", "%", [pick(a, "availability", 100) for a in avs]),
        Row(
            "storm_recovery",
            "storm recovery (worst share back)",
            "%",
            [pick(a, "storm_recovery", 100) for a in avs],
        ),
        Row(
            "below_longest_s",
            "longest stretch below 95%",
            "s",
            [pick(b, "longest_s") for b in below],
        ),
    ]


def first_storm(d: RunData) -> dict[str, Any] | None:
    storms = (d.availability or {}).get("storms") or []
    return storms[0] if storms and isinstance(storms[0], dict) else None


def intermediary_rows(datas: Sequence[RunData]) -> list[Row]:
    """The closes named as an intermediary idle timeout (soak.intermediary)
    and the first timeout's length: only when a run has any; "-" (None)
    where a run's summary.json predates them."""
    per_run: list[list[dict[str, Any]] | None] = []
    for d in datas:
        found = (d.run.summary or {}).get("intermediaries")
        per_run.append(
            # idle timeouts only: a hop's reload (intermediary_reload) is in
            # the "closes intermediary" row, not here
            [x for x in found if isinstance(x, dict) and x.get("reason") != "intermediary_reload"]
            if isinstance(found, list)
            else None
        )
    if not any(per_run):
        return []
    closes = [
        None if f is None else float(sum(count_value(x, "closes") or 0 for x in f)) for f in per_run
    ]
    first = [None if not f else count_value(f[0], "timeout_s") for f in per_run]
    return [
        Row("intermediary_closes", "intermediary closes", "", closes),
        Row("intermediary1_timeout", "intermediary 1 idle timeout", "s", first),
    ]


# The storm compared is each run's FIRST storm: in the usual A/B test the
# same event (a gateway restart at the same moment of the same profile)
# starts it in both runs, so the first storms are like for like; the "worst"
# storm could be a different event in each run.
STORM_RECOVERY = ("p50", "p90", "p100")


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
            values.append(count_value(rec, k) if isinstance(rec, dict) else None)
        rows.append(Row(f"storm1_recovery_{k}", f"storm 1 recovery {k}", "s", values))
    rows.append(
        Row(
            "storm1_peak_attempts_per_100ms",
            "storm 1 peak attempts per 100 ms",
            "",
            [None if f is None else count_value(f, "peak_attempts_per_100ms") for f in firsts],
        )
    )
    return rows


def count_value(tot: dict[str, Any], key: str) -> float | None:
    v = tot.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
