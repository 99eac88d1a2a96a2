"""The top of report.html: what went wrong (the findings, each linking to
its evidence, with its wall-clock time), the verdict, and the one chart that
tells the run; and two small evidence tables the findings link to
(handshake failures by cause, the tester's memory). Every text from the
results is escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from soak.facts import Finding
from soak.report import page
from soak.report.report import Report
from soak.report.story import STORY_BANDS, STORY_CHART, start_epoch


def clock(wall0: float, t: float) -> str:
    return datetime.fromtimestamp(wall0 + t, UTC).strftime("%H:%M:%S")


def when(f: Finding, wall0: float | None) -> str:
    """A finding's wall-clock time (UTC): its first span's start to its last
    span's end; "" without spans or a start time."""
    if wall0 is None or not f.spans:
        return ""
    a, b = f.spans[0][0], f.spans[-1][1]
    text = (
        clock(wall0, a)
        if clock(wall0, a) == clock(wall0, b)
        else (f"{clock(wall0, a)}-{clock(wall0, b)}")
    )
    return f"{text} UTC"


def finding_item(f: Finding, wall0: float | None) -> str:
    at = when(f, wall0)
    return (
        f"<li class='{escape(f.severity)}'>{escape(f.text)} "
        f"<span class='sev'>{escape(f.severity)}</span>"
        + (f" <span class='when'>{escape(at)}</span>" if at else "")
        + f" <a href='#{escape(f.anchor, quote=True)}'>evidence</a></li>"
    )


def findings_section(report: Report) -> str:
    """The findings, worst first; one line saying so when there are none."""
    found = report.findings
    if not found:
        return (
            "<p class='clean' id='findings'>No findings: no false timeouts, zombies, "
            "reconnect storms, intermediary timeouts, handshake failures, clients that gave "
            "up, server-count drift, tester bottleneck or memory growth.</p>"
        )
    wall0 = start_epoch(report.run.manifest)
    note = ""
    if report.findings_computed:
        note = (
            "<p class='muted'>Findings computed by soak report from events.jsonl and "
            "intervals.jsonl (summary.json has none).</p>"
        )
    items = "".join(finding_item(f, wall0) for f in found)
    return f"<ol class='findings' id='findings'>{items}</ol>{note}"


def verdict_line(report: Report) -> str:
    s = report.summary
    verdict = s.get("verdict")
    if not verdict:
        return ""
    code = report.run.manifest.get("exit_code", s.get("exit_code"))
    tail = f" (exit code {escape(str(code))})" if code is not None else ""
    return f"<p class='verdict'>Verdict: <b>{escape(str(verdict))}</b>{tail}</p>"


def story_chart(report: Report) -> str:
    path = report.pngs.get(STORY_CHART)
    if path is None:
        return ""
    title = next((c.title for c in report.charts if c.name == STORY_CHART), STORY_CHART)
    names = ", ".join(name for _, name in STORY_BANDS)
    return (
        f"<h2 id='chart-{STORY_CHART}'>{escape(title)}</h2>"
        + page.image(path.read_bytes(), title)
        + f"<p class='muted'>Bands: {escape(names)}. The top axis is the wall-clock time "
        "(UTC).</p>"
    )


def handshake_section(report: Report) -> str:
    """Handshake failures by cause, with the first error of each."""
    t = report.summary.get("totals") or {}
    causes = t.get("handshake_failures") if isinstance(t, dict) else None
    if not isinstance(causes, dict) or not causes:
        causes = dict(report.facts.handshake_causes)
    permanent = t.get("permanent_failure") if isinstance(t, dict) else None
    head = f"<h2 id='handshake-failures'>Handshake failures ({sum(_ints(causes)):,})</h2>"
    if not causes and not isinstance(permanent, dict):
        return head + "<p class='muted'>None.</p>"
    first = report.facts.handshake_first
    rows = [
        f"<tr><td>{escape(str(k))}</td><td class='num'>{int(v):,}</td>"
        f"<td>{escape(first.get(str(k), ''))}</td></tr>"
        for k, v in sorted(causes.items(), key=lambda kv: -int(kv[1]))
        if isinstance(v, int)
    ]
    out = head + page.table(("cause", "failures", "first error"), rows, "handshakes")
    if isinstance(permanent, dict):
        out += f"<p>Permanent: {escape(str(permanent.get('error')))}</p>"
    return out


def _ints(d: dict[str, Any]) -> list[int]:
    return [v for v in d.values() if isinstance(v, int) and not isinstance(v, bool)]


def tester_memory(report: Report) -> str:
    """The tester's resident memory: at the start, its peak, at the end,
    and the growth while the load held (what the RSS finding judges)."""
    fit = report.facts.rss
    if fit.first is None or fit.last is None:
        return ""
    rows = [
        ("first interval", _mb(fit.first)),
        ("peak", _mb(fit.peak)),
        ("last interval", _mb(fit.last)),
    ]
    g = fit.growth()
    if g is not None:
        start, end, span = g
        rows.append(
            ("growth while the load held (fitted)", f"{_mb(end - start)} over {span:,.0f} s")
        )
    body = "".join(
        f"<tr><th>{escape(k)}</th><td class='num'>{escape(v)}</td></tr>" for k, v in rows
    )
    return (
        f"<h3 id='tester-memory'>The tester's memory (RSS)</h3><table class='memory'>{body}</table>"
    )


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"
