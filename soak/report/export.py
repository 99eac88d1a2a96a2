"""Writing a report out: the PNGs and report.html (into the run directory by
default), and the JSON and CSV exports."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from soak.report.draw import write_charts
from soak.report.html import render
from soak.report.report import Report, build


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
