"""``soak report RUN_DIR``: charts, one self-contained HTML page, and
optional JSON/CSV exports of a results directory.

A run killed before writing ``summary.json`` still gets a report: the
summary is computed from ``intervals.jsonl`` and the ``.hlog`` files and
the page says PARTIAL.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soak.metrics import HISTOGRAMS, percentiles_ms, read_totals
from soak.profile import Threshold
from soak.report.charts import Chart, all_charts, interval_percentiles, write_charts
from soak.report.load import Run, load_run
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

    @property
    def storms(self) -> list[dict[str, Any]] | None:
        """summary.json's per-storm summaries; None when it has none (no
        summary.json, or one written before storms were measured)."""
        storms = self.summary.get("storms")
        if not isinstance(storms, list):
            return None
        return [s for s in storms if isinstance(s, dict)]

    @property
    def partial(self) -> bool:
        return self.run.partial

    def top_close_reasons(self, n: int = TOP_CLOSE_REASONS) -> list[tuple[str, int]]:
        closes = (self.summary.get("totals") or {}).get("closes") or {}
        items = [(str(k), int(v)) for k, v in closes.items() if isinstance(v, int | float)]
        return sorted(items, key=lambda kv: (-kv[1], kv[0]))[:n]


def compute_summary(run: Run, merged_rtt: Any = None) -> dict[str, Any]:
    """What summary.json would have said, from the intervals and hlogs of a
    run that did not write one; the profile's thresholds (from run.json) are
    judged on what the run measured before it ended."""
    tot = read_totals(run.intervals)
    latency: dict[str, Any] = {}
    hists: dict[str, Any] = {}
    for name in HISTOGRAMS:
        merged = merged_rtt if (name == "rtt" and merged_rtt is not None) else run.merged(name)
        hists[name] = merged
        latency[name] = percentiles_ms(merged)
    checks = judge(_thresholds(run), tot, hists)
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


def load_storms(run: Run) -> list[dict[str, Any]]:
    """storms.jsonl: one ``Storm.series()`` dict per line. A line that is not
    JSON, or not a storm series (an int ``index`` and ``attempts``,
    ``in_flight`` and ``recovered_pct`` lists), is skipped and recorded in
    the run's problems. [] when the file is missing or empty."""
    path = run.path / "storms.jsonl"
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        run.problems.append(f"{path}: unreadable: {exc.strerror or exc}")
        return []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            run.problems.append(f"{path}: line {n}: not JSON, skipped")
            continue
        if not _is_storm_series(rec):
            run.problems.append(f"{path}: line {n}: not a storm series, skipped")
            continue
        out.append(rec)
    return out


def _is_storm_series(rec: Any) -> bool:
    if not isinstance(rec, dict):
        return False
    index = rec.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        return False
    bucket = rec.get("bucket_s", 0.1)
    if not isinstance(bucket, int | float) or isinstance(bucket, bool) or not 0 < bucket <= 60:
        return False
    return all(isinstance(rec.get(k), list) for k in ("attempts", "in_flight", "recovered_pct"))


def build(path: str | Path) -> Report:
    """Read a run and compute everything the report shows. Raises RunError
    for a directory that is not a run."""
    run = load_run(path)
    rtt = interval_percentiles(run.iter_histograms("rtt"))
    if run.summary is not None:
        summary, computed = run.summary, False
    else:
        summary, computed = compute_summary(run, rtt.merged), True
    evidence: list[dict[str, Any]] = []
    total_ft = 0
    for ev in run.events():
        if ev.get("event") == "close" and ev.get("reason") == "false_timeout":
            total_ft += 1
            if len(evidence) < EVIDENCE_ROWS:
                evidence.append(ev)
    storms = load_storms(run)
    charts = all_charts(run, rtt, storms)
    return Report(run, summary, computed, charts, evidence, total_ft, storm_series=storms)


# -- exports -----------------------------------------------------------------


def export_json(report: Report, path: Path) -> None:
    path.write_text(json.dumps(report.summary, indent=2, sort_keys=False) + "\n", "utf-8")


def flatten(rec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"closes": {"a": 1}}`` -> ``{"closes.a": 1}``."""
    out: dict[str, Any] = {}
    for k, v in rec.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def export_csv(report: Report, path: Path) -> None:
    rows = [flatten(r) for r in report.run.intervals]
    columns: dict[str, None] = {}
    for r in rows:
        for k in r:
            columns.setdefault(k, None)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if v is None else v for k, v in r.items()})


def write_report(
    path: str | Path,
    out: Path | None = None,
    export_json_path: Path | None = None,
    export_csv_path: Path | None = None,
) -> tuple[Report, Path]:
    """Build the report of a run: PNGs and report.html into ``out`` (the run
    directory by default), and the exports asked for. Returns the report and
    the HTML's path."""
    from soak.report.html import render

    report = build(path)
    target = Path(out) if out is not None else report.run.path
    report.pngs = write_charts(report.charts, target)
    html_path = target / "report.html"
    html_path.write_text(render(report), encoding="utf-8")
    if export_json_path is not None:
        export_json(report, export_json_path)
    if export_csv_path is not None:
        export_csv(report, export_csv_path)
    return report, html_path
