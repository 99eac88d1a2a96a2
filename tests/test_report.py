"""``soak report``: golden runs with known histograms, written by hand."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from soak.cli import cli
from soak.metrics import HISTOGRAMS, new_histogram
from soak.report import compare_page, draw, figures
from soak.report.charts import percentile_points, percentile_values
from soak.report.compare import compare
from soak.report.export import write_report
from soak.report.report import build
from soak.results import hlog, jsonl
from soak.results.reader import load_run
from tests.support.chromium import CHROMIUM, open_in_chromium

WALL0 = 1_795_564_800.0  # 2026-11-25T00:00:00Z, the manifest's start
MANIFEST = {
    "results_format": 1,
    "tool": "soak",
    "tool_version": "0.1.0",
    "label": "gateway 2026.9.6",
    "target": "ws://gw.example:8080/ws",
    "protocol": "json",
    "profile_path": "profiles/golden.toml",
    "host": "testhost",
    "git_commit": "0123456789abcdef0123456789abcdef01234567-dirty",
    "python": "3.11.7",
    "os": "Linux-6.1.0-test-x86_64-with-glibc2.36",
    "server_version": "gw/2026.9.6",
    "command": "soak run profiles/golden.toml --url 'ws://<redacted>@gw.example:8080/ws'",
    "start": "2026-11-25T00:00:00.000+00:00",
    "end": "2026-11-25T00:00:30.000+00:00",
    "status": "completed",
    "exit_code": 1,
}


def interval(i: int, **kw: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "i": i,
        "t": 10.0 * i,
        "dt": 10.0,
        "connected": 100,
        "connecting": 0,
        "target": 100,
        "pings": 1000,
        "pongs": 1000,
        "late": 0,
        "missed": 0,
        "zombies": 0,
        "false_timeouts": 0,
        "heartbeat_success": 1.0,
        "lag_p99_ms": 0.5,
        "loop_lag_max_ms": 1.0,
        "tester_bottleneck": False,
        "closes": {},
        "closes_by_category": {},
    }
    rec.update(kw)
    return rec


def hlog_line(start: float, values: Iterable[int]) -> str:
    h = new_histogram()
    for v in values:
        h.record_value(v)
    return hlog.line(start, 10.0, h)


def make_run(
    root: Path,
    intervals: list[dict[str, Any]],
    rtt: list[list[int]],
    *,
    summary: dict[str, Any] | None = None,
    events: list[dict[str, Any]] | None = None,
    manifest: dict[str, Any] | None = None,
) -> Path:
    d = root / "run"
    d.mkdir()
    jsonl.write_document(d / "run.json", manifest or MANIFEST)
    jsonl.write_lines(d / "intervals.jsonl", intervals)
    for name in HISTOGRAMS:
        lines = [hlog_line(10.0 * i, rtt[i] if name == "rtt" else []) for i in range(len(rtt))]
        (d / f"{name}.hlog").write_text(hlog.header(name, WALL0) + "".join(lines))
    jsonl.write_lines(d / "events.jsonl", events or [])
    if summary is not None:
        jsonl.write_document(d / "summary.json", summary)
    return d


FALSE_TIMEOUT = {
    "t": 12.5,
    "event": "close",
    "client": "soak-000042",
    "reason": "false_timeout",
    "category": "heartbeat_timeout",
    "code": 4000,
    "text": "heartbeat_timeout",
    "why": "last pong 2.000s ago < server timeout 120s <script>",
    "evidence": {
        "age_s": 300.0,
        "last_pong_age_s": 2.0,
        "last_frame_age_s": 2.0,
        "consecutive_missed": 0,
        "pings_pending": 1,
    },
}

SUMMARY = {
    "label": "gateway 2026.9.6",
    "status": "completed",
    "partial": False,
    "verdict": "thresholds failed: false_timeouts",
    "duration_s": 30.0,
    "totals": {
        "pings": 3000,
        "pongs": 3000,
        "missed": 0,
        "heartbeat_success": 1.0,
        "false_timeouts": 1,
        "closes": {"false_timeout": 1, "client_shutdown": 100},
    },
    "latency_ms": {"rtt": {"count": 2000, "p50": 1.0, "p99": 1.98, "max": 2.0}},
    "thresholds": [
        {"name": "false_timeouts", "limit": "0", "value": "1", "ok": False, "text": "x"},
        {"name": "rtt_p99", "limit": "250ms", "value": "1.980ms", "ok": True, "text": "y"},
    ],
}


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    """Interval 0: RTT 1..1000 us; interval 1: 1001..2000 us (the tester was
    the bottleneck); interval 2: no samples. One false timeout."""
    ivs = [
        interval(0),
        interval(
            1,
            tester_bottleneck=True,
            missed=10,
            late=4,
            pongs=990,
            heartbeat_success=0.99,
            false_timeouts=1,
            closes={"false_timeout": 1},
            closes_by_category={"heartbeat_timeout": 1},
        ),
        interval(
            2,
            connected=0,
            server_connections=3,
            closes={"client_shutdown": 100},
            closes_by_category={"client": 100},
        ),
    ]
    rtt = [list(range(1, 1001)), list(range(1001, 2001)), []]
    return make_run(tmp_path, ivs, rtt, summary=SUMMARY, events=[FALSE_TIMEOUT])


def test_chart_data_equals_known_percentiles(golden: Path) -> None:
    rep = build(golden)
    charts = {c.name: c for c in rep.charts}
    rtt = charts["rtt_over_time"]
    assert rtt.x == [0.0, 10.0, 20.0]
    assert rtt.series["p50"] == [0.5, 1.5, None]
    assert rtt.series["p90"] == [0.9, 1.9, None]
    assert rtt.series["p99"] == [0.99, 1.99, None]
    assert rtt.series["p99.9"] == [0.999, 1.999, None]
    assert rtt.series["max"] == [1.0, 2.0, None]
    assert rtt.shaded == [(10.0, 20.0)]
    assert rtt.log_y is False  # 0.5 .. 2 ms is not two decades

    dist = charts["percentile_distribution"]
    assert dist.extra["count"] == 2000
    assert dist.extra["marked"] == {90.0: 1.8, 99.0: 1.98, 99.9: 1.998, 99.99: 2.0}
    assert dist.extra["max_ms"] == 2.0
    assert dist.series["rtt"][0] == 0.001  # the 0th percentile: the smallest value
    assert dist.x[0] == 1.0
    assert dist.log_y is True  # 1 us .. 2 ms: more than two decades
    # x is 1/(1-q), increasing with the percentile
    assert dist.x == sorted(dist.x)

    conn = charts["connections"]
    assert conn.series["connected"] == [100.0, 100.0, 0.0]
    assert conn.series["server_connections"] == [None, None, 3.0]

    hb = charts["heartbeats"]
    assert hb.series["success_pct"] == [100.0, 99.0, 100.0]
    assert hb.series["missed"] == [0.0, 10.0, 0.0]
    assert hb.series["late"] == [0.0, 4.0, 0.0]

    closes = charts["closes"]
    assert closes.series["heartbeat_timeout"] == [0.0, 1.0, 0.0]
    assert closes.series["client"] == [0.0, 0.0, 100.0]
    assert closes.series["false_timeouts"] == [0.0, 1.0, 0.0]

    lag = charts["tester_lag"]
    assert lag.series["lag_p99"] == [0.5, 0.5, 0.5]
    assert lag.shaded == [(10.0, 20.0)]


def test_percentile_points_reach_what_the_count_resolves() -> None:
    assert percentile_points(0) == []
    qs = percentile_points(1000)
    assert qs[0] == 0.0
    assert qs[-1] == pytest.approx(99.9)
    assert {90.0, 99.0} <= set(qs)


@pytest.mark.slow
def test_fast_percentiles_equal_hdrh(tmp_path: Path) -> None:
    import random

    from hdrh.histogram import HdrHistogram

    rng = random.Random(7)
    qs = [0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0]
    for trial in range(60):
        h = new_histogram()
        for _ in range(rng.randint(1, 2000)):
            h.record_value(max(1, int(rng.lognormvariate(7, 2))))
        if trial % 2:
            h = HdrHistogram.decode(h.encode())
        assert percentile_values(h, qs) == h.get_percentile_to_value_dict(qs)
    assert percentile_values(new_histogram(), qs) == {}


def test_log_axis_when_rtt_spans_decades(tmp_path: Path) -> None:
    d = make_run(tmp_path, [interval(0), interval(1)], [[100], [1_000_000]], summary=SUMMARY)
    rtt = {c.name: c for c in build(d).charts}["rtt_over_time"]
    # 1 s is beyond the exact range: HdrHistogram reports its bucket's top
    assert rtt.series["max"] == [0.1, pytest.approx(1000.0, rel=1e-3)]
    assert rtt.log_y is True


@pytest.mark.slow
def test_html_is_self_contained_with_identity_verdicts_and_evidence(golden: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(golden)])
    assert result.exit_code == 0, result.output
    html = (golden / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 7
    for name in (
        "story",
        "rtt_over_time",
        "percentile_distribution",
        "connections",
        "heartbeats",
        "closes",
        "tester_lag",
    ):
        png = golden / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # identity
    for text in (
        "gateway 2026.9.6",
        "ws://gw.example:8080/ws",
        "profiles/golden.toml",
        "2026-11-25T00:00:00.000+00:00",
        "0.1.0",
        "completed",
        # provenance
        "0123456789abcdef0123456789abcdef01234567-dirty",
        "3.11.7",
        "Linux-6.1.0-test-x86_64-with-glibc2.36",
        "gw/2026.9.6",
        "soak run profiles/golden.toml --url &#x27;ws://&lt;redacted&gt;@gw.example:8080/ws&#x27;",
    ):
        assert text in html
    assert "PARTIAL" not in html
    # verdicts
    assert "FAIL</td><td>false_timeouts" in html
    assert "PASS</td><td>rtt_p99" in html
    # evidence, escaped
    assert "soak-000042" in html
    assert "last pong 2.000s ago &lt; server timeout 120s &lt;script&gt;" in html
    assert "<script>" not in html
    # top close reasons, summary table from summary.json
    assert "client_shutdown" in html
    assert "1.98 ms" in html
    # no external resources
    assert "http://" not in html.replace("ws://gw.example", "")
    assert "https://" not in html
    assert "src='data:image/png;base64," in html


@pytest.mark.slow
def test_out_directory(golden: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["report", str(golden), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").exists()
    assert (out / "closes.png").exists()
    assert not (golden / "report.html").exists()


@pytest.mark.slow
def test_killed_run_is_partial_and_computed(tmp_path: Path) -> None:
    manifest = {**MANIFEST, "status": "running", "end": None, "exit_code": None}
    ivs = [interval(0, missed=5, pongs=995), interval(1)]
    d = make_run(tmp_path, ivs, [list(range(1, 1001)), list(range(1001, 2001))], manifest=manifest)
    rep, html_path = write_report(d)
    assert rep.partial
    assert rep.computed
    s = rep.summary
    assert s["partial"] is True
    assert s["totals"]["pings"] == 2000
    assert s["totals"]["pongs"] == 1995
    assert s["totals"]["heartbeat_success"] == 1995 / 2000
    assert s["latency_ms"]["rtt"]["p99"] == 1.98
    assert s["latency_ms"]["rtt"]["count"] == 2000
    assert s["duration_s"] == 20.0
    html = html_path.read_text()
    assert "PARTIAL RUN" in html
    assert "summary.json is missing" in html
    assert "The profile set no thresholds." in html  # this manifest has no profile


@pytest.mark.slow
def test_killed_run_thresholds_are_judged_on_what_it_measured(tmp_path: Path) -> None:
    """run.json keeps the profile's thresholds; a run killed before its
    summary.json is judged by soak report on the intervals it left."""
    thresholds = [
        {"name": "rtt_p99", "limit": 0.001, "text": "1ms", "op": "<="},
        {"name": "heartbeat_success", "limit": 0.999, "text": "99.9%", "op": ">="},
        {"name": "missed", "limit": 10.0, "text": "10", "op": "<="},
        {"name": "zombies", "limit": 0.0, "text": "0", "op": "=="},
        {"name": "broken", "op": "<="},
    ]
    manifest = {
        **MANIFEST,
        "status": "running",
        "end": None,
        "exit_code": None,
        "profile": {"thresholds": thresholds},
    }
    ivs = [interval(0, missed=5, pongs=995), interval(1)]
    d = make_run(tmp_path, ivs, [list(range(1, 1001)), list(range(1001, 2001))], manifest=manifest)
    rep, html_path = write_report(d)
    checks = {c["name"]: c for c in rep.summary["thresholds"]}
    assert [c["ok"] for c in checks.values()] == [False, False, True, True]
    assert checks["rtt_p99"]["value"] == "1.980ms"
    assert checks["heartbeat_success"]["value"] == "99.750%"
    assert rep.summary["verdict"] == (
        "the run did not finish (run.json says 'running'); on what it measured: "
        "thresholds failed: rtt_p99, heartbeat_success"
    )
    assert "run.json: profile.thresholds[4]: not a threshold, skipped" in rep.run.problems
    html = html_path.read_text()
    assert "judged by soak report on what it measured until then" in html
    assert "<td class='fail'>FAIL</td><td>rtt_p99</td>" in html


@pytest.mark.slow
def test_zero_connections_draws_no_data(tmp_path: Path) -> None:
    ivs = [
        interval(i, connected=0, pings=0, pongs=0, heartbeat_success=None, lag_p99_ms=None)
        for i in range(3)
    ]
    d = make_run(tmp_path, ivs, [[], [], []], manifest={**MANIFEST, "status": "completed"})
    result = CliRunner().invoke(cli, ["report", str(d)])
    assert result.exit_code == 0, result.output
    rep = build(d)
    charts = {c.name: c for c in rep.charts}
    assert not charts["rtt_over_time"].has_data
    assert not charts["percentile_distribution"].has_data
    assert charts["percentile_distribution"].extra["count"] == 0
    html = (d / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 7


@pytest.mark.slow
def test_corrupt_hlog_line_is_skipped_and_reported(golden: Path) -> None:
    path = golden / "rtt.hlog"
    lines = path.read_text().splitlines(keepends=True)
    # the first line after the header is interval 0's histogram: tear its payload
    first = next(i for i, text in enumerate(lines) if not hlog.is_header(text))
    lines[first] = lines[first][:40] + "!!!garbage\n"
    path.write_text("".join(lines))
    result = CliRunner().invoke(cli, ["report", str(golden)])
    assert result.exit_code == 0, result.output
    assert f"line {first + 1}: corrupt histogram, skipped" in result.output
    rep = build(golden)
    rtt = {c.name: c for c in rep.charts}["rtt_over_time"]
    assert rtt.series["p50"] == [1.5, None]  # the rest is still drawn
    html = (golden / "report.html").read_text()
    assert "Problems reading the results" in html
    assert f"line {first + 1}: corrupt histogram, skipped" in html


@pytest.mark.parametrize("kind", ["missing", "empty", "not-soak"])
def test_not_a_run_exits_2(tmp_path: Path, kind: str) -> None:
    d = tmp_path / "d"
    if kind != "missing":
        d.mkdir()
    if kind == "not-soak":
        (d / "run.json").write_text('{"tool": "other"}')
    result = CliRunner().invoke(cli, ["report", str(d)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    message = {"missing": "not a directory", "empty": "no run.json", "not-soak": "not a soak"}
    assert message[kind] in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_exports(golden: Path, tmp_path: Path) -> None:
    j, c = tmp_path / "s.json", tmp_path / "s.csv"
    result = CliRunner().invoke(
        cli, ["report", str(golden), "--export-json", str(j), "--export-csv", str(c)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(j.read_text()) == SUMMARY
    with open(c, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert rows[1]["closes.false_timeout"] == "1"
    assert rows[1]["closes_by_category.heartbeat_timeout"] == "1"
    assert rows[2]["closes.client_shutdown"] == "100"
    assert rows[0]["closes.client_shutdown"] == ""
    assert rows[2]["server_connections"] == "3"
    assert rows[1]["tester_bottleneck"] == "True"
    assert "closes" not in rows[0]


@pytest.mark.slow
def test_export_json_of_a_killed_run_is_the_computed_summary(tmp_path: Path) -> None:
    d = make_run(tmp_path, [interval(0)], [list(range(1, 1001))])
    j = tmp_path / "s.json"
    result = CliRunner().invoke(cli, ["report", str(d), "--export-json", str(j)])
    assert result.exit_code == 0, result.output
    data = json.loads(j.read_text())
    assert data["partial"] is True
    assert data["latency_ms"]["rtt"]["p50"] == 0.5


@pytest.mark.slow
def test_html_parses_and_references_nothing_outside(golden: Path) -> None:
    """Without a browser: every tag balanced, every image a data URI, no
    script, stylesheet link or remote URL."""
    from html.parser import HTMLParser

    _, html_path = write_report(golden)

    class Check(HTMLParser):
        void = frozenset({"meta", "img", "br", "link", "hr", "input"})

        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.images: list[str] = []
            self.bad: list[str] = []
            self.links: list[str] = []
            self.ids: set[str] = set()

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if tag in ("script", "link", "iframe", "object"):
                self.bad.append(tag)
            if tag == "img":
                self.images.append(a.get("src") or "")
                assert a.get("alt")
            if a.get("id"):
                self.ids.add(str(a["id"]))
            for key in ("href", "src"):
                v = a.get(key) or ""
                if key == "href" and v.startswith("#"):
                    self.links.append(v[1:])
                elif v and not v.startswith("data:"):
                    self.bad.append(v)
            if tag not in self.void:
                self.stack.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert self.stack, tag
            assert self.stack.pop() == tag

    c = Check()
    c.feed(html_path.read_text())
    c.close()
    assert c.stack == []
    assert c.bad == []
    assert len(c.images) == 7
    # every link is to an anchor on the page (a finding's evidence)
    assert c.links
    assert set(c.links) <= c.ids
    for src in c.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"
)
@pytest.mark.process
def test_html_opens_in_headless_chromium(golden: Path) -> None:
    _, html_path = write_report(golden)
    dom = open_in_chromium(html_path)
    assert 'data-bad="0"' in dom
    assert shutil.which(str(CHROMIUM))


# -- reconnect storms ------------------------------------------------------------


def tracked_storm() -> tuple[dict[str, Any], dict[str, Any]]:
    """One storm measured by soak.storm itself: 4 connections lost at 10.0 s;
    attempts at +0.05 s (4, in flight 1..4) and +0.25 s (2, in flight 1..2);
    two back at +0.12 s, one at +0.31 s, one client gave up at +0.4 s; it
    ends there, at 10.4 s, settled once no loss came for a second."""
    from soak.storm import StormTracker

    tr = StormTracker(heartbeat_interval=30.0, min_losses=4)
    for _ in range(4):
        tr.lost(10.0)
    for n in range(1, 5):
        tr.attempt(10.05, n)
    tr.failed(10.06, "refused")
    tr.ready(10.12, 0.01, 10.0)
    tr.ready(10.12, 0.02, 10.0)
    tr.attempt(10.25, 1)
    tr.attempt(10.25, 2)
    tr.ready(10.31, 0.03, 10.0)
    tr.gave_up(10.4)
    assert tr.tick(10.5) is None  # all back or given up, but a loss only 0.5 s ago
    assert tr.tick(11.0) is not None  # settled
    (storm,) = tr.all_storms()
    return storm.series(), tr.summary_of(storm)


def storm_series(index: int, start: float, attempts: list[int]) -> dict[str, Any]:
    return {
        "index": index,
        "start_s": start,
        "bucket_s": 0.1,
        "attempts": attempts,
        "in_flight": [min(a, 3) for a in attempts],
        "recovered_pct": [100.0 * (i + 1) / len(attempts) for i in range(len(attempts))],
    }


@pytest.mark.slow
def test_storm_timeline_chart_and_table(tmp_path: Path) -> None:
    series, summary = tracked_storm()
    assert series["attempts"] == [4, 0, 2, 0]
    second = storm_series(2, 40.0, [1, 5])
    d = make_run(
        tmp_path,
        [interval(0)],
        [list(range(1, 1001))],
        summary={**SUMMARY, "storms": [summary, {**summary, "index": 2, "start_s": 40.0}]},
    )
    (d / "storms.jsonl").write_text(
        json.dumps(series) + "\n" + '{"index": 3, "attem\n' + "[1, 2]\n" + json.dumps(second)
    )
    result = CliRunner().invoke(cli, ["report", str(d)])
    assert result.exit_code == 0, result.output
    rep = build(d)
    assert f"{d / 'storms.jsonl'}: line 2: not JSON, skipped" in rep.run.problems
    assert f"{d / 'storms.jsonl'}: line 3: not a storm series, skipped" in rep.run.problems
    chart = rep.charts[-1]
    assert [c.name for c in rep.charts].index("storm_timeline") == 7  # chart 8
    assert chart.title == "Reconnect-storm timeline"
    assert chart.x == [0.0, 0.1, 0.2, 0.3]
    assert chart.x_label == "seconds since the storm start (s)"
    assert chart.series == {
        "attempts#1": [4.0, 0.0, 2.0, 0.0],
        "in_flight#1": [4.0, 0.0, 2.0, 0.0],
        "recovered_pct#1": [0.0, 50.0, 50.0, 75.0],
        "attempts#2": [1.0, 5.0, None, None],
        "in_flight#2": [1.0, 3.0, None, None],
        "recovered_pct#2": [50.0, 100.0, None, None],
    }
    assert chart.extra == {
        "storms": [1, 2],
        "start_s": {1: 10.0, 2: 40.0},
        "bucket_s": 0.1,
        "total": 2,
        "omitted": 0,
    }
    assert (d / "storm_timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (d / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 8
    assert "<h3 id='chart-storm_timeline'>Reconnect-storm timeline</h3>" in html
    assert "line 2: not JSON, skipped" in html
    assert "<h2 id='storms'>Reconnect storms (2)</h2>" in html
    row = html.split("<table class='storms'>")[1].split("</tr>")[1]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    # index, start, end, lost, recovered, gave up, peak (4 at +0 s), max in flight,
    # recovery p50 0.12 s, p90/p99/p100 never (3 of 4 came back), sync before/after
    assert cells == [
        "1",
        "10",
        "10.4",
        "4",
        "3",
        "1",
        "4",
        "0",
        "4",
        "0.12",
        *["<span class='muted'>not reached</span>"] * 3,
        "–",
        "0.9998",
        "refused: 1",
    ]


@pytest.mark.slow
def test_storm_timeline_draws_at_most_four_storms(tmp_path: Path) -> None:
    d = make_run(tmp_path, [interval(0)], [[1000]], summary=SUMMARY)
    lines = [json.dumps(storm_series(i, 10.0 * i, [i, 0, i])) for i in range(1, 7)]
    (d / "storms.jsonl").write_text("\n".join(lines) + "\n")
    rep, html_path = write_report(d)
    chart = rep.charts[-1]
    assert chart.title == "Reconnect-storm timeline (first 4 of 6 storms)"
    assert chart.extra["storms"] == [1, 2, 3, 4]
    assert chart.extra["omitted"] == 2
    assert chart.series["attempts#4"] == [4.0, 0.0, 4.0]
    assert "attempts#5" not in chart.series
    html = html_path.read_text()
    assert "first 4 of 6 storms" in html
    # summary.json has no storms: the table says why instead
    assert "storms.jsonl holds 6 storm(s), but there are no storm summaries" in html
    assert rep.run.problems == []


@pytest.mark.parametrize("content", [None, "", "\n"])
@pytest.mark.slow
def test_no_storm_chart_without_storms(tmp_path: Path, content: str | None) -> None:
    d = make_run(tmp_path, [interval(0)], [[1000]], summary={**SUMMARY, "storms": []})
    if content is not None:
        (d / "storms.jsonl").write_text(content)
    rep, html_path = write_report(d)
    assert "storm_timeline" not in [c.name for c in rep.charts]
    assert not (d / "storm_timeline.png").exists()
    html = html_path.read_text()
    assert html.count("data:image/png;base64,") == 7
    assert "No reconnect storm was detected." in html


# -- one drawing style for report and compare -----------------------------------


def test_one_time_axis_rule() -> None:
    """Hours above 3 h of span, minutes above 3 min, seconds below."""
    assert figures.time_unit([]) == (1.0, "s")
    assert figures.time_unit([0.0, 180.0]) == (1.0, "s")
    assert figures.time_unit([0.0, 180.5]) == (60.0, "min")
    assert figures.time_unit([0.0, 3 * 3600.0]) == (60.0, "min")
    assert figures.time_unit([0.0, 3 * 3600.0 + 1]) == (3600.0, "h")
    assert figures.time_unit([7200.0, 7300.0]) == (1.0, "s")  # the span counts, not the end


def test_report_and_compare_draw_time_with_the_same_rule(
    golden: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[list[float]] = []
    rule = figures.time_unit

    def spy(times: Iterable[float]) -> tuple[float, str]:
        ts = list(times)
        asked.append(ts)
        return rule(ts)

    monkeypatch.setattr(figures, "time_unit", spy)
    rep = build(golden)
    draw.draw({c.name: c for c in rep.charts}["connections"])
    assert asked == [[0.0, 10.0, 20.0]]
    ivs = [[1000 + i] for i in range(6)]
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        manifest = {**MANIFEST, "label": name}
        d = make_run(tmp_path / name, [interval(i) for i in range(6)], ivs, manifest=manifest)
        runs.append(load_run(d))
    compare_page.render_charts(compare(runs, resamples=100))
    assert asked[1] == [10.0 * i for i in range(6)] * 2


@pytest.mark.slow
def test_storm_timeline_of_a_single_storm(tmp_path: Path) -> None:
    """One storm is one panel (found running nginx in front of the gateway:
    the report failed with "'Axes' object is not subscriptable")."""
    d = make_run(tmp_path, [interval(0)], [[1000]], summary=SUMMARY)
    (d / "storms.jsonl").write_text(json.dumps(storm_series(1, 10.0, [3, 0, 1])) + "\n")
    rep, _ = write_report(d)
    assert rep.charts[-1].extra["storms"] == [1]
    assert (d / "storm_timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def nginx_closes(n: int = 40) -> list[dict[str, Any]]:
    """Closes 7 s after the server's last frame, as nginx's
    proxy_read_timeout 7s makes them (docs/intermediaries.md)."""
    out = []
    for i in range(n):
        s = 6.95 + (i % 5) * 0.01
        out.append(
            {
                "t": 8.0 + i * 0.5,
                "event": "close",
                "client": f"soak-{i:06d}",
                "reason": "transport_eof",
                "category": "transport",
                "initiator": "transport",
                "code": 1006,
                "text": "",
                "transport": "eof",
                "evidence": {
                    "age_s": s + (i % 7),
                    "last_frame_age_s": s,
                    "last_sent_age_s": s + 0.001,
                },
            }
        )
    return out


@pytest.mark.slow
def test_killed_run_names_the_intermediary_from_its_events(tmp_path: Path) -> None:
    """No summary.json: the report computes the intermediaries from
    events.jsonl with the profile's heartbeat interval, and judges an
    intermediary_closes threshold on them."""
    manifest = {
        **MANIFEST,
        "status": "running",
        "profile": {
            "heartbeat": {"interval": 10.0},
            "thresholds": [{"name": "intermediary_closes", "limit": 5.0, "text": "5", "op": "<="}],
        },
    }
    d = make_run(tmp_path, [interval(0)], [[1000]], events=nginx_closes(), manifest=manifest)
    rep, html_path = write_report(d)
    assert rep.computed
    assert rep.intermediaries_computed
    (found,) = rep.intermediaries
    assert found["closes"] == 40
    assert abs(found["timeout_s"] - 6.97) < 0.02
    assert rep.summary["totals"]["intermediary_closes"] == 40
    (check,) = rep.summary["thresholds"]
    assert check["ok"] is False
    assert check["value"] == "40"
    html = html_path.read_text()
    assert "Intermediary idle timeouts (1)" in html
    assert "Computed by soak report from events.jsonl" in html
    assert "an idle timeout of 7.0 s after silence from the server" in html


def test_a_summary_without_intermediaries_is_completed_from_the_events(tmp_path: Path) -> None:
    """A summary.json from before the analysis: the events decide."""
    manifest = {**MANIFEST, "profile": {"heartbeat": {"interval": 10.0}}}
    d = make_run(
        tmp_path, [interval(0)], [[1000]], summary=SUMMARY, events=nginx_closes(), manifest=manifest
    )
    rep = build(d)
    assert not rep.computed
    assert rep.intermediaries_computed
    assert rep.intermediaries[0]["closes"] == 40
    # and without a heartbeat interval in run.json nothing is guessed
    other = tmp_path / "other"
    other.mkdir()
    d2 = make_run(other, [interval(0)], [[1000]], summary=SUMMARY, events=nginx_closes())
    assert build(d2).intermediaries == []
