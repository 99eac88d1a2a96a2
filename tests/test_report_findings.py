"""report.html and soak compare with findings: the page's order, the links
to the evidence, the story chart's bands, the wall-clock axis, findings
read from summary.json or computed, and each side of a comparison."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import pytest

from soak.facts import Finding
from soak.metrics import HISTOGRAMS, new_histogram
from soak.report import compare_findings, figures
from soak.report.compare_data import RunData
from soak.report.draw import joined
from soak.report.export import write_report
from soak.report.report import build, findings_of
from soak.report.story import STORY_CHART, start_epoch, story
from soak.results import hlog, jsonl
from soak.results.reader import load_run

WALL0 = 1_795_564_800.0  # 2026-11-25T00:00:00Z
PROFILE = {
    "heartbeat": {"interval": 10.0, "timeout": 5.0, "max_missed": 3},
    "reconnect": {"max_attempts": 5},
    "target": {"server_heartbeat": {"interval": 10.0, "timeout": 15.0, "max_missed": 3}},
    "thresholds": [],
}
MANIFEST = {
    "tool": "soak",
    "results_format": 1,
    "label": "gw",
    "target": "ws://gw.example/ws",
    "start": "2026-11-25T00:00:00.000+00:00",
    "status": "completed",
    "exit_code": 0,
    "profile": PROFILE,
}


def interval(i: int, **kw: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"t": 10.0 * i, "dt": 10.0, "connected": 100, "target": 100}
    rec.update({"pings": 100, "pongs": 100, "missed": 0, "false_timeouts": 0, "closes": {}})
    rec.update(kw)
    return rec


def false_timeout(t: float) -> dict[str, Any]:
    return {
        "t": t,
        "event": "close",
        "client": "soak-000007",
        "reason": "false_timeout",
        "initiator": "server",
        "code": 4000,
        "text": "heartbeat_timeout <b>",
        "why": "1 heartbeats missed < server max_missed 3",
        "evidence": {"age_s": 300.0, "last_pong_age_s": 15.2, "consecutive_missed": 1},
    }


def make_run(root: Path, name: str, ivs: list[dict[str, Any]], **files: Any) -> Path:
    d = root / name
    d.mkdir()
    jsonl.write_document(d / "run.json", {**MANIFEST, "label": name})
    jsonl.write_lines(d / "intervals.jsonl", ivs)
    for h in HISTOGRAMS:
        lines = []
        for i in range(len(ivs)):
            hist = new_histogram()
            if h == "rtt":
                for v in range(1, 500):
                    hist.record_value(v * 3)
            lines.append(hlog.line(10.0 * i, 10.0, hist))
        (d / f"{h}.hlog").write_text(hlog.header(h, WALL0) + "".join(lines))
    jsonl.write_lines(d / "events.jsonl", files.get("events", []))
    if files.get("summary") is not None:
        jsonl.write_document(d / "summary.json", files["summary"])
    return d


def incident(root: Path, name: str = "bug", summary: dict[str, Any] | None = None) -> Path:
    ivs = [interval(0), interval(1, false_timeouts=2), interval(2)]
    return make_run(
        root, name, ivs, events=[false_timeout(12.0), false_timeout(13.0)], summary=summary
    )


@pytest.mark.slow
def test_the_page_leads_with_findings_and_ends_with_the_run(tmp_path: Path) -> None:
    # a summary.json from before findings: they are computed
    _, page = write_report(incident(tmp_path, summary={"status": "completed", "verdict": "ok"}))
    html = page.read_text()
    body = html.split("</h1>", 1)[1]
    assert body.lstrip().startswith(
        "<ol class='findings' id='findings'><li class='error'>2 false timeouts: the server&#x27;s "
        "heartbeat check (4000 heartbeat_timeout &lt;b&gt;) closed live connections "
        "15.2 s after their last pong, with 1 of 3 allowed heartbeats missed"
    )
    # its wall-clock time (the interval it happened in) and its evidence
    assert (
        "<span class='when'>00:00:10-00:00:20 UTC</span> <a href='#evidence'>evidence</a>" in html
    )
    order = [
        "id='findings'",
        "class='verdict'",
        "id='chart-story'",
        "id='summary'",
        "<h2>Charts</h2>",
        "id='evidence'",
        "id='problems'",
        "id='run'",
    ]
    at = [html.index(x) for x in order]
    assert at == sorted(at)
    # computed: there is no summary.json
    assert "Findings computed by soak report" in html
    ids = set(re.findall(r"id='([^']+)'", html))
    assert set(re.findall(r"href='#([^']+)'", html)) <= ids


@pytest.mark.slow
def test_a_clean_run_says_so(tmp_path: Path) -> None:
    d = make_run(tmp_path, "clean", [interval(i) for i in range(3)], summary={"findings": []})
    _, page = write_report(d)
    body = page.read_text().split("</h1>", 1)[1].lstrip()
    assert body.startswith("<p class='clean' id='findings'>No findings: ")


def test_summary_findings_are_read_not_recomputed(tmp_path: Path) -> None:
    recorded = Finding("zombies", "error", "3 zombies: as the run said", "chart-heartbeats", 3)
    summary = {"status": "completed", "verdict": "passed", "findings": [recorded.record()]}
    rep = build(incident(tmp_path, summary=summary))
    assert rep.findings == [recorded]
    assert not rep.findings_computed
    assert findings_of(load_run(tmp_path / "bug")) == [recorded]
    # an older summary.json without findings: computed from the files
    rep = build(incident(tmp_path, "old", summary={"status": "completed", "verdict": "passed"}))
    assert [f.key for f in rep.findings] == ["false_timeouts"]
    assert rep.findings_computed


def test_the_story_chart_draws_the_findings_as_bands(tmp_path: Path) -> None:
    rep = build(incident(tmp_path))
    chart = next(c for c in rep.charts if c.name == STORY_CHART)
    assert rep.charts[0] is chart
    assert chart.extra["bands"] == [("false timeouts", 10.0, 20.0)]
    assert chart.series["connected"] == [100.0, 100.0, 100.0]
    assert all(c.extra.get("wall0") == WALL0 for c in rep.charts if c.x_label.startswith("time"))
    found = [
        Finding("storms", "warning", "s", "storms", 1, ((5.0, 8.0),)),
        Finding("zombies", "error", "z", "chart-heartbeats", 1, ((1.0, 2.0),)),
        Finding("tester_bottleneck", "warning", "t", "chart-tester_lag", 1, ((0.0, 10.0),)),
    ]
    bands = story([interval(0)], found).extra["bands"]
    assert bands == [("reconnect storm", 5.0, 8.0), ("tester bottleneck", 0.0, 10.0)]
    assert start_epoch(MANIFEST) == WALL0
    assert start_epoch({"start": "not a time"}) is None
    assert start_epoch({}) is None


def test_bands_close_together_are_drawn_as_one() -> None:
    bands = [("false timeouts", 0.0, 1.0), ("false timeouts", 1.1, 2.0), ("storm", 50.0, 60.0)]
    bands.append(("false timeouts", 30.0, 31.0))
    assert joined(bands, 100.0) == [
        ("false timeouts", 0.0, 2.0),
        ("false timeouts", 30.0, 31.0),
        ("storm", 50.0, 60.0),
    ]


@pytest.mark.slow
def test_the_wall_clock_axis_labels_the_same_ticks() -> None:
    fig, ax = figures.figure()
    with figures.closing(fig):
        times = [0.0, 3600.0 * 23, 3600.0 * 25]
        ax.plot([t / 3600 for t in times], [1, 2, 3])
        figures.wall_clock_axis(ax, 3600.0, WALL0 + 3600, times)
        fig.canvas.draw()
        (top,) = ax.child_axes
        low, high = ax.get_xlim()
        labels = [t.get_text() for t in top.get_xticklabels() if low <= t.get_position()[0] <= high]
    assert "01:00" in labels  # the run started at 01:00 UTC
    assert labels[-1].startswith("11-26 ")  # the next day says which


def rundata(name: str, found: list[Finding]) -> RunData:
    return RunData(cast(Any, None), name, [], [], cast(Any, None), {}, 0.0, None, found)


def test_compare_names_what_is_new_and_what_went_away() -> None:
    ft = Finding("false_timeouts", "error", "359 false timeouts: ...", "evidence", 359)
    storm = Finding("storms", "warning", "a reconnect storm", "storms", 300)
    tester = Finding("tester_bottleneck", "warning", "the tester ...", "chart-tester_lag", 1)
    a, b = rundata("gw-bug", [ft, storm]), rundata("gw-fixed", [storm, tester])
    assert compare_findings.text_lines([a, b]) == [
        "findings of gw-bug (baseline): 2",
        "findings of gw-fixed against gw-bug:",
        "  new in gw-fixed: the tester ... [warning]",
        "  gone in gw-fixed (the baseline gw-bug had it): 359 false timeouts: ... [error]",
        "  in both: a reconnect storm [warning]",
    ]
    data = compare_findings.to_json([a, b])
    assert data["against_baseline"] == {
        "gw-fixed": {"new": ["tester_bottleneck"], "gone": ["false_timeouts"], "both": ["storms"]}
    }
    assert [r["key"] for r in data["runs"]["gw-bug"]] == ["false_timeouts", "storms"]
    page = compare_findings.html([a, rundata("<i>", [])])
    assert "&lt;i&gt; against gw-bug" in page
    assert "<b>gone in &lt;i&gt; (the baseline gw-bug had it)</b>: 359 false timeouts" in page
