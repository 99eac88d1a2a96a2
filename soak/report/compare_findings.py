"""The findings of a comparison, per side: for each candidate, what is new
in it, what went away (the baseline had it, the candidate does not) and
what both have. Findings are matched by their key (``false_timeouts``,
``storms``, ``intermediary:7.0s``, ...; see :mod:`soak.findings`), so "189
false timeouts" in A and "3 false timeouts" in B are the same finding,
still there."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

from soak.facts import Finding
from soak.report.compare_data import RunData


@dataclass
class FindingsDiff:
    run: str  # the candidate's name
    baseline: str
    new: list[Finding] = field(default_factory=list)  # in the candidate only
    gone: list[Finding] = field(default_factory=list)  # the baseline's, not in the candidate
    both: list[Finding] = field(default_factory=list)  # the candidate's, the baseline has too


def diff(base: RunData, d: RunData) -> FindingsDiff:
    ours = {f.key for f in base.findings}
    theirs = {f.key for f in d.findings}
    return FindingsDiff(
        d.name,
        base.name,
        new=[f for f in d.findings if f.key not in ours],
        gone=[f for f in base.findings if f.key not in theirs],
        both=[f for f in d.findings if f.key in ours],
    )


def diffs(datas: list[RunData]) -> list[FindingsDiff]:
    return [diff(datas[0], d) for d in datas[1:]]


# how each part is said, in order
PARTS = (
    ("new", "new in {run}"),
    ("gone", "gone in {run} (the baseline {baseline} had it)"),
    ("both", "in both"),
)


def text_lines(datas: list[RunData]) -> list[str]:
    """The comparison's findings as text lines."""
    lines = [f"findings of {datas[0].name} (baseline): {len(datas[0].findings)}"]
    for x in diffs(datas):
        lines.append(f"findings of {x.run} against {x.baseline}:")
        if not (x.new or x.gone or x.both):
            lines.append("  none in either run")
        for attr, title in PARTS:
            for f in getattr(x, attr):
                head = title.format(run=x.run, baseline=x.baseline)
                lines.append(f"  {head}: {f.text} [{f.severity}]")
    return lines


def html(datas: list[RunData]) -> str:
    out = ["<h2 id='findings'>Findings</h2>"]
    for x in diffs(datas):
        items = []
        for attr, title in PARTS:
            for f in getattr(x, attr):
                head = title.format(run=x.run, baseline=x.baseline)
                items.append(
                    f"<li class='{escape(f.severity)}'><b>{escape(head)}</b>: {escape(f.text)} "
                    f"<span class='sev'>{escape(f.severity)}</span></li>"
                )
        out.append(f"<h3>{escape(x.run)} against {escape(x.baseline)}</h3>")
        out.append(
            f"<ol class='findings'>{''.join(items)}</ol>"
            if items
            else "<p class='clean'>No findings in either run.</p>"
        )
    return "".join(out)


def to_json(datas: list[RunData]) -> dict[str, Any]:
    return {
        "runs": {d.name: [f.record() for f in d.findings] for d in datas},
        "against_baseline": {
            x.run: {
                "new": [f.key for f in x.new],
                "gone": [f.key for f in x.gone],
                "both": [f.key for f in x.both],
            }
            for x in diffs(datas)
        },
    }
