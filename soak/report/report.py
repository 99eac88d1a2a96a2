"""What ``soak report RUN_DIR`` shows: :class:`Report`, everything computed
from a results directory (the summary, the charts' data, the evidence).
:mod:`soak.report.export` writes it out.

A run killed before writing ``summary.json`` still gets a report: the
summary is computed from ``intervals.jsonl`` and the ``.hlog`` files and
the page says PARTIAL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soak import availability
from soak.config.thresholds import Threshold, with_defaults
from soak.facts import Facts, Finding, Settings
from soak.findings import findings, from_record, records
from soak.intermediary import CloseSilences, find_idle_timeouts, intermediary_summary
from soak.metrics import HISTOGRAMS, percentiles_ms, read_totals
from soak.report.chart import Chart
from soak.report.charts import all_charts, interval_percentiles
from soak.results.reader import Run, load_run
from soak.summary import judge

EVIDENCE_ROWS = 50
TOP_CLOSE_REASONS = 15


@dataclass
class Report:
    run: Run
    summary: dict[str, Any]
    computed: bool  # True: summary.json was missing, this one is computed
    charts: list[Chart]
    false_timeouts: list[dict[str, Any]]  # the first EVIDENCE_ROWS such close events
    false_timeouts_total: int
    pngs: dict[str, Path] = field(default_factory=dict)
    # storms.jsonl, one 100 ms series per reconnect storm (damaged lines skipped)
    storm_series: list[dict[str, Any]] = field(default_factory=list)
    # the intermediary idle timeouts: summary.json's, or computed from the
    # events when it has none (intermediaries_computed)
    intermediaries: list[dict[str, Any]] = field(default_factory=list)
    intermediaries_computed: bool = False
    # the findings (soak.findings): summary.json's, or computed from the
    # events and intervals when it has none (findings_computed)
    findings: list[Finding] = field(default_factory=list)
    findings_computed: bool = False
    facts: Facts = field(default_factory=Facts)

    @property
    def storms(self) -> list[dict[str, Any]] | None:
        """summary.json's per-storm summaries; None when it has none (no
        summary.json, or one written before storms were measured)."""
        storms = self.summary.get("storms")
        if not isinstance(storms, list):
            return None
        return [s for s in storms if isinstance(s, dict)]

    @property
    def availability(self) -> dict[str, Any] | None:
        """summary.json's availability, or computed from the intervals (a
        killed run); None for a run from before it was measured."""
        av = self.summary.get("availability")
        if isinstance(av, dict):
            return av
        items = availability.spans(self.run.intervals)
        return availability.summarize(items, self.storms or []) if items else None

    @property
    def partial(self) -> bool:
        return self.run.partial

    def top_close_reasons(self, n: int = TOP_CLOSE_REASONS) -> list[tuple[str, int]]:
        closes = (self.summary.get("totals") or {}).get("closes") or {}
        items = [(str(k), int(v)) for k, v in closes.items() if isinstance(v, int | float)]
        return sorted(items, key=lambda kv: (-kv[1], kv[0]))[:n]


def compute_summary(
    run: Run, merged_rtt: Any = None, closes: CloseSilences | None = None
) -> dict[str, Any]:
    """What summary.json would have said, from the intervals and hlogs of a
    run that did not write one; the profile's thresholds (from run.json) are
    judged on what the run measured before it ended. ``closes``: the run's
    close events, for the intermediary idle timeouts."""
    tot = read_totals(run.intervals)
    interval = _heartbeat_interval(run)
    found: list[dict[str, Any]] = []
    if interval is not None:
        found = intermediary_summary(closes or CloseSilences(), interval, tot)
    latency: dict[str, Any] = {}
    hists: dict[str, Any] = {}
    for name in HISTOGRAMS:
        merged = merged_rtt if (name == "rtt" and merged_rtt is not None) else run.merged(name)
        hists[name] = merged
        latency[name] = percentiles_ms(merged)
    items = availability.spans(run.intervals)
    av = availability.summarize(items, []) if items else None
    thresholds = with_defaults(_thresholds(run)) if av is not None else _thresholds(run)
    checks = judge(thresholds, tot, hists, av)
    failed = [c["name"] for c in checks if not c["ok"]]
    last = run.intervals[-1] if run.intervals else None
    duration = (
        float(last.get("t", 0.0)) + float(last.get("dt", 0.0) or 0.0) if last is not None else 0.0
    )
    return {
        "label": run.manifest.get("label"),
        "target": run.manifest.get("target"),
        "status": run.status,
        "partial": True,
        "computed_by_report": True,
        "duration_s": round(duration, 3),
        "intervals": len(run.intervals),
        "totals": tot,
        "latency_ms": latency,
        "thresholds": checks,
        **({"availability": av} if av is not None else {}),
        "intermediaries": found,
        "verdict": (
            f"the run did not finish (run.json says {run.status!r}); on what it measured: "
            + (f"thresholds failed: {', '.join(failed)}" if failed else "every threshold held")
        )
        if checks
        else None,
    }


def _thresholds(run: Run) -> list[Threshold]:
    """The profile's thresholds as run.json recorded them; a malformed entry
    is skipped and noted in the run's problems."""
    profile = run.manifest.get("profile")
    raw = profile.get("thresholds") if isinstance(profile, dict) else None
    out: list[Threshold] = []
    for n, item in enumerate(raw if isinstance(raw, list) else []):
        try:
            th = Threshold(
                str(item["name"]), float(item["limit"]), str(item["text"]), str(item["op"])
            )
            th.holds(0.0)  # an unknown operator raises here
        except (KeyError, TypeError, ValueError):
            run.problems.append(f"run.json: profile.thresholds[{n}]: not a threshold, skipped")
            continue
        out.append(th)
    return out


def build(path: str | Path) -> Report:
    """Read a run and compute everything the report shows. Raises RunError
    for a directory that is not a run."""
    run = load_run(path)
    rtt = interval_percentiles(run.iter_histograms("rtt"))
    evidence: list[dict[str, Any]] = []
    total_ft = 0
    facts = Facts(Settings.from_profile_record(run.manifest.get("profile")))
    closes = facts.closes
    for ev in run.events():
        facts.observe(ev)
        if ev.get("event") == "close" and ev.get("reason") == "false_timeout":
            total_ft += 1
            if len(evidence) < EVIDENCE_ROWS:
                evidence.append(ev)
    if run.summary is not None:
        summary, computed = run.summary, False
    else:
        summary, computed = compute_summary(run, rtt.merged, closes), True
    facts.intervals(run.intervals)
    findings_list, found_computed = run_findings(summary, facts, computed)
    if computed:
        summary["findings"] = records(findings_list)
    storms = run.storm_series()
    charts = all_charts(run, rtt, storms, findings_list)
    found = summary.get("intermediaries")
    recomputed = not isinstance(found, list)
    if recomputed:
        interval = _heartbeat_interval(run)
        found = (
            [] if interval is None else [x.record() for x in find_idle_timeouts(closes, interval)]
        )
    assert isinstance(found, list)
    return Report(
        run,
        summary,
        computed,
        charts,
        evidence,
        total_ft,
        storm_series=storms,
        intermediaries=[x for x in found if isinstance(x, dict)],
        intermediaries_computed=recomputed or computed,
        findings=findings_list,
        findings_computed=found_computed,
        facts=facts,
    )


def run_findings(
    summary: dict[str, Any], facts: Facts, computed: bool
) -> tuple[list[Finding], bool]:
    """summary.json's findings, or (a run without them, or a summary soak
    report computed) the findings of ``facts``; and whether they were computed."""
    recorded = summary.get("findings")
    if isinstance(recorded, list) and not computed:
        return [f for f in map(from_record, recorded) if f is not None], False
    return findings(facts, summary), True


def _heartbeat_interval(run: Run) -> float | None:
    """The clients' heartbeat interval, from the profile run.json recorded."""
    profile = run.manifest.get("profile")
    hb = profile.get("heartbeat") if isinstance(profile, dict) else None
    value = hb.get("interval") if isinstance(hb, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def findings_of(run: Run) -> list[Finding]:
    """A run's findings: summary.json's, or (a killed run, or one from
    before findings) computed from its events and intervals."""
    recorded = (run.summary or {}).get("findings")
    if isinstance(recorded, list):
        return [f for f in map(from_record, recorded) if f is not None]
    facts = Facts(Settings.from_profile_record(run.manifest.get("profile")))
    facts.observe_all(run.events()).intervals(run.intervals)
    return findings(facts, run.summary)
