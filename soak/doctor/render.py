"""``soak doctor``'s output: readable text grouped by section, or JSON."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

import click

from soak.doctor.findings import ERROR, INFO, SECTIONS, WARNING, Finding, exit_code

_COLOURS = {ERROR: "red", WARNING: "yellow", INFO: "green"}
_TITLES = {
    "input": "Inputs",
    "consistency": "Heartbeat consistency (gateway, proxy, clients)",
    "environment": "Environment for the planned run",
}


def summary_line(findings: Sequence[Finding]) -> str:
    n = Counter(f.severity for f in findings)
    code = exit_code(findings)
    verdict = {0: "ok", 1: "warnings", 2: "errors"}[code]
    return (
        f"soak doctor: {n[ERROR]} error(s), {n[WARNING]} warning(s), {n[INFO]} info: "
        f"{verdict} (exit {code})"
    )


def render_text(findings: Sequence[Finding], *, color: bool = False) -> str:
    lines: list[str] = []
    for section in SECTIONS:
        items = [f for f in findings if f.section == section]
        if not items:
            continue
        title = _TITLES[section]
        lines.append(click.style(title, bold=True) if color else title)
        for f in sorted(items, key=lambda f: (f.severity != ERROR, f.severity != WARNING)):
            tag = f"{f.severity.upper():<7}"
            if color:
                tag = click.style(tag, fg=_COLOURS[f.severity], bold=f.severity == ERROR)
            lines.append(f"  {tag} [{f.code}] {f.message}")
            if f.fix:
                lines.append(f"          fix: {f.fix}")
        lines.append("")
    if not findings:
        lines.append("nothing to check")
    lines.append(summary_line(findings))
    return "\n".join(lines) + "\n"


def render_json(findings: Sequence[Finding]) -> str:
    n = Counter(f.severity for f in findings)
    doc = {
        "exit_code": exit_code(findings),
        "counts": {s: n[s] for s in (ERROR, WARNING, INFO)},
        "findings": [f.to_json() for f in findings],
    }
    return json.dumps(doc, indent=2) + "\n"
