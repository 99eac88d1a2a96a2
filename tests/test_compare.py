"""`soak compare`: runs built by hand with known histograms."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from soak.cli import cli
from soak.metrics import new_histogram
from soak.report.bootstrap import EMPTY, Compact, blocks, bootstrap_diff, compact, merge
from soak.report.compare import LimitSpecError, compare, parse_limits
from soak.report.compare_page import chart_series
from soak.report.compare_text import render_text, to_json
from soak.results import hlog, jsonl
from soak.results.reader import load_run
from tests.support.chromium import CHROMIUM, open_in_chromium

PROFILE: dict[str, Any] = {
    "path": "profiles/x.toml",
    "run": {"label": "x", "report_interval": 1.0, "results_dir": "results"},
    "target": {"url": "ws://127.0.0.1:1/ws", "protocol": "json", "stats": None},
    "clients": {"stages": [{"kind": "hold", "duration": 10.0, "to": 10}]},
    "heartbeat": {"interval": 0.5, "timeout": 1.0, "max_missed": 3},
}


def make_run(
    root: Path,
    label: str,
    intervals: list[list[int]],
    *,
    totals: dict[str, Any] | None = None,
    profile: dict[str, Any] | None = None,
    summary: bool = True,
    reconcile: dict[str, Any] | None = None,
) -> Path:
    """A results directory whose rtt.hlog holds exactly ``intervals``
    (values in microseconds), one line per interval of 1 s."""
    path = root / label
    path.mkdir(parents=True)
    prof = json.loads(json.dumps(profile or PROFILE))
    prof["run"]["label"] = label
    prof["run"]["results_dir"] = str(root)
    prof["target"]["url"] = f"ws://127.0.0.1:{len(label) + 1000}/ws"
    manifest = {"tool": "soak", "label": label, "profile": prof, "start": "2026-01-01T00:00:00Z"}
    jsonl.write_document(path / "run.json", manifest)
    lines = [hlog.header("rtt", 0.0)]
    recs = []
    for i, values in enumerate(intervals):
        h = new_histogram()
        for v in values:
            assert h.record_value(v)
        lines.append(hlog.line(float(i), 1.0, h))
        recs.append(
            {
                "i": i,
                "t": float(i),
                "dt": 1.0,
                "pongs": len(values),
                "missed": 0,
                "false_timeouts": 0,
                "zombies": 0,
                "closes_by_category": {},
            }
        )
    (path / "rtt.hlog").write_text("".join(lines))
    jsonl.write_lines(path / "intervals.jsonl", recs)
    tot = {
        "pongs": sum(len(v) for v in intervals),
        "missed": 0,
        "false_timeouts": 0,
        "zombies": 0,
        "heartbeat_success": 1.0,
        "closes_by_category": {"client": len(intervals)},
    }
    tot.update(totals or {})
    if summary:
        doc: dict[str, Any] = {
            "label": label,
            "status": "completed",
            "partial": False,
            "duration_s": float(len(intervals)),
            "totals": tot,
        }
        if reconcile is not None:
            doc["reconcile"] = reconcile
        jsonl.write_document(path / "summary.json", doc)
    return path


# A: 1,000 samples, ten each of 10, 20, ..., 1000 us, spread over 10 intervals
# (interval k holds the values i*10 with i % 10 == k). Below 2048 us an
# HdrHistogram at 3 significant digits is exact, so the percentiles are known:
# p50 = 500 us, p99 = 990 us, p99.9 = max = 1000 us.
def known_a() -> list[list[int]]:
    return [[i * 10 for i in range(1, 101) if i % 10 == k] * 10 for k in range(10)]


def known_b() -> list[list[int]]:  # every value doubled
    return [[v * 2 for v in iv] for iv in known_a()]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, ["compare", *args], catch_exceptions=False)


def lognormal_runs(
    seed: int, n: int, per: int, scale: float = 1.0, interval_sigma: float = 0.0
) -> list[list[int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        f = rng.lognormvariate(0, interval_sigma) if interval_sigma else 1.0
        out.append([max(1, int(1000 * scale * f * rng.lognormvariate(0, 0.5))) for _ in range(per)])
    return out


# -- the table ----------------------------------------------------------------


def test_table_known_percentiles_and_deltas(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", known_a(), reconcile={"max_gap": 3})
    b = make_run(
        tmp_path,
        "b",
        known_b(),
        totals={"false_timeouts": 2, "zombies": 1, "heartbeat_success": 0.998},
        reconcile={"max_gap": -5},
    )
    c = compare([load_run(a), load_run(b)], resamples=200)
    rows = {r.key: r for r in c.rows}
    assert rows["rtt_p50"].values == [0.5, 1.0]
    assert rows["rtt_p99"].values == [0.99, 1.98]
    assert rows["rtt_p99.9"].values == [1.0, 2.0]
    assert rows["rtt_max"].values == [1.0, 2.0]
    assert rows["rtt_p99"].delta(1) == pytest.approx(0.99, abs=1e-12)
    assert rows["rtt_p99"].relative(1) == pytest.approx(1.0, abs=1e-12)
    assert rows["heartbeat_success"].values == [100.0, 99.8]
    assert rows["heartbeat_success"].delta(1) == pytest.approx(-0.2, abs=1e-9)
    assert rows["false_timeouts"].values == [0.0, 2.0]
    assert rows["zombies"].values == [0.0, 1.0]
    # 10 closes in 10 s
    # a 10 s run: counts, not rates per hour
    assert rows["closes.client"].values == [10.0, 10.0]
    assert "closes_per_hour.client" not in rows
    assert rows["drift_max_gap"].values == [3.0, -5.0]
    # the merged compact histograms agree with hdrh's own merge
    for path, data in zip((a, b), c.datas, strict=True):
        h = load_run(path).merged("rtt")
        for q in (50.0, 99.0, 99.9):
            assert data.merged.percentile(q) == h.get_value_at_percentile(q)
        assert data.merged.max == h.get_max_value()
    text = render_text(c)
    line = next(s for s in text.splitlines() if s.startswith("RTT p99 (ms)"))
    assert line.split() == ["RTT", "p99", "(ms)", "0.990", "1.980", "+0.990", "+100.0%"]
    regressions = {k.name for k in c.checks if k.regression}
    assert regressions == {"rtt_p99", "false_timeouts", "zombies", "heartbeat_success"}
    assert c.exit_code == 1


def test_compact_matches_hdrh_on_random_values() -> None:
    rng = random.Random(7)
    h = new_histogram()
    for _ in range(5000):
        h.record_value(int(rng.lognormvariate(8, 1.5)) + 1)
    c = compact(h)
    assert c.total == h.get_total_count()
    for q in (0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0):
        assert c.percentile(q) == h.get_value_at_percentile(q), q
    assert c.max == h.get_max_value()
    assert merge([c, c]).counts == tuple(2 * n for n in c.counts)


def test_killed_run_totals_come_from_the_intervals(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", known_a())
    b = make_run(tmp_path, "b", known_a(), summary=False)
    c = compare([load_run(a), load_run(b)], resamples=100)
    rows = {r.key: r for r in c.rows}
    assert rows["heartbeat_success"].values == [100.0, 100.0]
    assert rows["false_timeouts"].values == [0.0, 0.0]
    assert any("partial run" in n for n in c.notes)
    assert c.exit_code == 0


# -- is it real? -------------------------------------------------------------


@pytest.mark.slow
def test_same_distribution_is_not_significant(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", lognormal_runs(1, 60, 100))
    b = make_run(tmp_path, "b", lognormal_runs(2, 60, 100))
    c = compare([load_run(a), load_run(b)])
    for ci in c.cis["b"]:
        assert ci.low <= 0 <= ci.high, ci
        assert not ci.significant
    assert c.exit_code == 0
    result = invoke(str(a), str(b), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "not significant" in result.output
    assert "verdict: no regression" in result.output


@pytest.mark.slow
def test_clear_2x_shift_is_a_significant_regression(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", lognormal_runs(1, 40, 100))
    b = make_run(tmp_path, "b", lognormal_runs(2, 40, 100, scale=2.0))
    result = invoke(str(a), str(b), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1, result.output
    assert "REGRESSION: rtt_p99 (b)" in result.output
    data = json.loads((tmp_path / "out" / "compare.json").read_text())
    p50, p99, p999 = data["bootstrap"]["b"]
    assert p50["significant"]
    assert p50["ci_ms"][0] > 0
    assert p99["significant"]
    assert p99["ci_ms"][0] > 0
    # 4,000 samples leave 4 above p99.9 in each run: too few to call it
    assert not p999["enough_data"]
    assert not p999["significant"]


@pytest.mark.slow
def test_small_p99_change_in_noisy_runs_is_not_a_regression(tmp_path: Path) -> None:
    # each interval has its own weather (interval_sigma), so p99 moves around;
    # B is A's intervals, shuffled, every value 2% higher
    base = lognormal_runs(11, 40, 50, interval_sigma=0.3)
    shuffled = base[:]
    random.Random(3).shuffle(shuffled)
    a = make_run(tmp_path, "a", base)
    b = make_run(tmp_path, "b", [[v * 102 // 100 for v in iv] for iv in shuffled])
    c = compare([load_run(a), load_run(b)], parse_limits(["rtt_p99=1%"]))
    p99 = next(r for r in c.rows if r.key == "rtt_p99")
    rel = p99.relative(1)
    assert rel is not None
    assert 0.01 < rel < 0.03
    ci = next(ci for ci in c.cis["b"] if ci.q == 99.0)
    assert ci.enough_data
    assert ci.low < 0 < ci.high
    assert not ci.significant
    assert not c.regression
    result = invoke(str(a), str(b), "--max-regression", "rtt_p99=1%", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert "verdict: no regression" in result.output


@pytest.mark.slow
def test_false_alarm_rate_is_near_nominal() -> None:
    """Pairs of noisy runs from one distribution: the 95% CI excludes 0 for
    about 1 in 20 of them, not more."""
    significant = 0
    for s in range(20):
        a = [compact_of(iv) for iv in lognormal_runs(1000 + 2 * s, 40, 50, interval_sigma=0.3)]
        b = [compact_of(iv) for iv in lognormal_runs(1001 + 2 * s, 40, 50, interval_sigma=0.3)]
        p99 = bootstrap_diff(a, b, (99.0,), resamples=300, seed=s)[0]
        significant += p99.significant
    assert significant <= 3


@pytest.mark.slow
def test_bootstrap_is_deterministic_with_a_seed(tmp_path: Path) -> None:
    a = [compact_of(iv) for iv in lognormal_runs(3, 30, 40, interval_sigma=0.3)]
    b = [compact_of(iv) for iv in lognormal_runs(4, 30, 40, interval_sigma=0.3)]
    one = bootstrap_diff(a, b, resamples=300, seed=5)
    two = bootstrap_diff(a, b, resamples=300, seed=5)
    other = bootstrap_diff(a, b, resamples=300, seed=6)
    assert one == two
    assert one != other
    run_a = make_run(tmp_path, "a", lognormal_runs(3, 30, 40, interval_sigma=0.3))
    run_b = make_run(tmp_path, "b", lognormal_runs(4, 30, 40, interval_sigma=0.3))
    outs = [
        invoke(str(run_a), str(run_b), "--seed", "9", "--out", str(tmp_path / f"o{i}")).output
        for i in range(2)
    ]
    assert outs[0].replace("o0", "o1") == outs[1]


def compact_of(values: list[int]) -> Compact:
    h = new_histogram()
    for v in values:
        h.record_value(v)
    return compact(h)


def test_too_few_intervals_are_never_significant(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", known_a()[:3])
    b = make_run(tmp_path, "b", known_b()[:3])
    c = compare([load_run(a), load_run(b)], resamples=100)
    assert not any(ci.significant for ci in c.cis["b"])
    assert not c.regression
    assert any("fewer than" in k.shown or "need at least" in n for k in c.checks for n in c.notes)


# -- warnings and bad input ---------------------------------------------------


@pytest.mark.slow
def test_different_profiles_warn_at_the_top(tmp_path: Path) -> None:
    other = json.loads(json.dumps(PROFILE))
    other["heartbeat"]["interval"] = 5.0
    a = make_run(tmp_path, "a", known_a())
    b = make_run(tmp_path, "b", known_a(), profile=other)
    same = make_run(tmp_path, "same", known_a())  # only label, dir and URL differ
    result = invoke(str(a), str(same), "--out", str(tmp_path / "o1"))
    assert "WARNING" not in result.output
    result = invoke(str(a), str(b), "--out", str(tmp_path / "o2"))
    assert result.exit_code == 0
    assert result.output.startswith("WARNING: 'b' ran a different profile")
    assert "heartbeat.interval" in result.output
    page = (tmp_path / "o2" / "compare.html").read_text()
    assert page.index("WARNING") < page.index("<table")


def test_not_a_run_exits_2(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", known_a())
    (tmp_path / "empty").mkdir()
    result = invoke(str(a), str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert "not a soak run: no run.json" in result.output
    result = invoke(str(a), str(tmp_path / "missing"))
    assert result.exit_code == 2
    assert "not a directory" in result.output


def test_fewer_than_two_runs_is_a_usage_error(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", known_a())
    result = invoke(str(a))
    assert result.exit_code == 2
    assert "at least two runs" in result.output


def test_run_without_rtt_samples_exits_2(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", known_a())
    b = make_run(tmp_path, "b", [[] for _ in range(5)])
    result = invoke(str(a), str(b), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "run 'b' has no RTT samples" in result.output


@pytest.mark.parametrize("spec", ["rtt_p99=10", "rtt_p99", "bogus=1", "zombies=many", "zombies=-1"])
def test_bad_max_regression_exits_2(tmp_path: Path, spec: str) -> None:
    a = make_run(tmp_path, "a", known_a())
    b = make_run(tmp_path, "b", known_a())
    result = invoke(str(a), str(b), "--max-regression", spec)
    assert result.exit_code == 2
    assert "--max-regression" in result.output
    assert spec in result.output
    with pytest.raises(LimitSpecError):
        parse_limits([spec])


def test_limits_parse() -> None:
    lim = parse_limits(["rtt_p99=5%", "rtt_p50=20%", "heartbeat_success=0.5pp", "zombies=3"])
    assert lim == {
        "rtt_p99": 0.05,
        "rtt_p50": 0.2,
        "false_timeouts": 0.0,
        "heartbeat_success": 0.5,
        "zombies": 3.0,
        # the availability defaults (issue 23)
        "availability": 1.0,
        "storm_recovery": 0.0,
        "storm_recovery_s": 0.5,
        "handshake_failures": 0.5,
        "reconnect_failures": 0.5,
    }


# -- charts and the page ------------------------------------------------------


def test_chart_data_and_html(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = make_run(tmp_path, "a", known_a())
    b = make_run(tmp_path, "b", known_b())
    c = compare([load_run(a), load_run(b)], resamples=100)
    series = chart_series(c)
    xs, ys = series["percentiles"]["a"]
    assert ys == [i / 100 for i in range(1, 101)]  # 0.01 .. 1.0 ms
    assert xs[0] == 1.0
    assert xs[50] == pytest.approx(2.0)  # half the samples below 0.51 ms
    assert xs[-1] == pytest.approx(100.0)
    ts, p99 = series["rtt_p99"]["b"]
    assert ts == [float(k) for k in range(10)]
    # interval k holds the values i*20 us with i % 10 == k; its p99 is its largest
    assert p99 == [(100 if k == 0 else k + 90) * 20 / 1000 for k in range(10)]

    monkeypatch.chdir(tmp_path)
    result = invoke(str(a), str(b))
    assert result.exit_code == 1
    out = tmp_path / "compare-a-vs-b"
    page = (out / "compare.html").read_text()
    assert (out / "percentiles.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "rtt_p99.png").exists()
    images = page.split("data:image/png;base64,")[1:]
    assert len(images) == 2
    for img in images:
        assert base64.b64decode(img.split("'")[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "REGRESSION" in page
    assert "<script" not in page
    assert "http" not in page.split("<body>")[1].split("data:")[0]


@pytest.mark.slow
def test_labels_are_escaped_and_three_runs(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", known_a())
    b = make_run(tmp_path, "b", known_a())
    evil = make_run(tmp_path, "c", known_a())
    manifest = json.loads((evil / "run.json").read_text())
    manifest["label"] = "<script>x</script>"
    (evil / "run.json").write_text(json.dumps(manifest))
    result = invoke(str(a), str(b), str(evil), "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # the findings of each side come first (none in these runs), then the table
    assert lines[:5] == [
        "findings of a (baseline): 0",
        "findings of b against a:",
        "  none in either run",
        "findings of <script>x</script> against a:",
        "  none in either run",
    ]
    header = lines[6].split()
    assert header[:2] == ["metric", "a"]
    page = (tmp_path / "o" / "compare.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page


def test_long_runs_are_resampled_in_blocks() -> None:
    ivs = [compact_of(iv) for iv in lognormal_runs(5, 60, 20)]
    blocked = blocks(ivs, 25)
    assert len(blocked) == 20  # blocks of 3 consecutive intervals
    assert merge(blocked) == merge(ivs)
    assert blocks([*ivs[:3], EMPTY], 25) == ivs[:3]
    shifted = [compact_of(iv) for iv in lognormal_runs(6, 60, 20, scale=2.0)]
    for ci in bootstrap_diff(ivs, shifted, (50.0, 99.0), resamples=200, max_units=25):
        assert ci.significant
        assert ci.low > 0


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"
)
@pytest.mark.process
def test_page_opens_in_headless_chromium(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", known_a())
    b = make_run(tmp_path, "b", known_b())
    result = invoke(str(a), str(b), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1
    page = tmp_path / "o" / "compare.html"
    dom = open_in_chromium(page)
    assert 'data-bad="0"' in dom
    assert 'data-images="2"' in dom


# -- reconnect storms -----------------------------------------------------------


def storm(index: int, p50: float, p90: float, p100: float | None, peak: int) -> dict[str, Any]:
    return {
        "index": index,
        "start_s": 10.0 * index,
        "lost": 100,
        "recovered": 100 if p100 is not None else 99,
        "peak_attempts_per_100ms": peak,
        "recovery_s": {"p50": p50, "p90": p90, "p99": p90, "p100": p100},
    }


def with_storms(path: Path, storms: list[dict[str, Any]]) -> Path:
    doc = json.loads((path / "summary.json").read_text())
    doc["storms"] = storms
    (path / "summary.json").write_text(json.dumps(doc))
    return path


def test_storm_rows_compare_the_first_storm(tmp_path: Path) -> None:
    a = with_storms(make_run(tmp_path, "a", known_a()), [storm(1, 1.0, 2.0, 4.0, 200)])
    b = with_storms(
        make_run(tmp_path, "b", known_a()),
        [storm(1, 1.5, 3.0, None, 500), storm(2, 0.1, 0.2, 0.3, 1)],
    )
    c = compare([load_run(a), load_run(b)], resamples=100)
    rows = {r.key: r for r in c.rows}
    assert rows["storms"].values == [1.0, 2.0]
    assert rows["storms"].delta(1) == 1.0
    assert rows["storm1_recovery_p50"].values == [1.0, 1.5]
    assert rows["storm1_recovery_p50"].relative(1) == pytest.approx(0.5)
    assert rows["storm1_recovery_p90"].values == [2.0, 3.0]
    # never fully recovered: no p100
    assert rows["storm1_recovery_p100"].values == [4.0, None]
    assert rows["storm1_peak_attempts_per_100ms"].values == [200.0, 500.0]
    assert rows["storm1_peak_attempts_per_100ms"].delta(1) == 300.0
    lines = {s.split("  ")[0].strip(): s.split() for s in render_text(c).splitlines()}
    assert lines["reconnect storms"][-4:] == ["1", "2", "+1", "+100.0%"]
    assert lines["storm 1 recovery p50 (s)"][-4:] == ["1.000", "1.500", "+0.500", "+50.0%"]
    assert lines["storm 1 recovery p100 (s)"][-4:] == ["4.000", "-", "-", "-"]
    assert lines["storm 1 peak attempts per 100 ms"][-4:] == ["200", "500", "+300", "+150.0%"]
    assert c.exit_code == 0  # storms are shown, not judged
    doc = to_json(c)
    assert {"metric": "storms", "unit": "", "values": [1.0, 2.0]} in doc["table"]


@pytest.mark.slow
def test_missing_storms_show_as_dashes(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", known_a())  # summary.json without storms
    b = with_storms(make_run(tmp_path, "b", known_a()), [storm(1, 1.0, 2.0, 4.0, 200)])
    killed = make_run(tmp_path, "c", known_a(), summary=False)
    quiet = with_storms(make_run(tmp_path, "d", known_a()), [])
    damaged: list[Any] = ["x", {"recovery_s": None}]
    broken = with_storms(make_run(tmp_path, "e", known_a()), damaged)
    runs = [load_run(p) for p in (a, b, killed, quiet, broken)]
    c = compare(runs, resamples=50)
    rows = {r.key: r for r in c.rows}
    assert rows["storms"].values == [None, 1.0, None, 0.0, 1.0]
    assert rows["storms"].delta(1) is None
    assert rows["storm1_recovery_p50"].values == [None, 1.0, None, None, None]
    assert rows["storm1_peak_attempts_per_100ms"].values == [None, 200.0, None, None, None]
    text = render_text(c)
    line = next(s for s in text.splitlines() if s.startswith("storm 1 recovery p90 (s)"))
    # baseline, then value/delta/delta % for each of the four other runs
    assert line.split()[5:] == ["-", "2.000", "-", "-", *["-"] * 9]
    result = invoke(str(a), str(b), "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert "storm 1 recovery p50 (s)" in (tmp_path / "o" / "compare.html").read_text()


def test_no_storm_rows_when_no_run_has_storms(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", known_a())
    b = make_run(tmp_path, "b", known_a())
    c = compare([load_run(a), load_run(b)], resamples=50)
    assert not any(r.key.startswith("storm") for r in c.rows)


# -- where the output goes --------------------------------------------------------


def test_default_out_is_in_the_baseline_results_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --out, the comparison goes next to RUN_A (in the results
    directory that holds it), as a report goes into its run directory; the
    current directory is left alone, and the page's path is printed last."""
    results = tmp_path / "results"
    a = make_run(results, "a", known_a())
    b = make_run(tmp_path / "other", "b", known_a())
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = invoke(str(a), str(b))
    assert result.exit_code == 0, result.output
    out = results / "compare-a-vs-b"
    assert sorted(p.name for p in out.iterdir()) == [
        "compare.html",
        "compare.json",
        "percentiles.png",
        "rtt_p99.png",
    ]
    assert list(cwd.iterdir()) == []
    assert result.output.splitlines()[-1] == f"page: {out / 'compare.html'}"
    help_text = " ".join(invoke("--help").output.split())
    assert "compare-<label A>-vs-<label B> next to RUN_A, in its results directory" in help_text


def test_an_unwritable_out_exits_2(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", known_a())
    b = make_run(tmp_path, "b", known_a())
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "o"
    result = invoke(str(a), str(b), "--out", str(out))
    assert result.exit_code == 2
    assert f"{out}: cannot write the comparison" in result.output
    assert "Traceback" not in result.output
    assert "verdict:" not in result.output  # nothing is claimed that was not written


def with_intermediaries(path: Path, found: list[Any]) -> Path:
    doc = json.loads((path / "summary.json").read_text())
    doc["intermediaries"] = found
    (path / "summary.json").write_text(json.dumps(doc))
    return path


def test_intermediary_rows(tmp_path: Path) -> None:
    """The baseline behind nginx with proxy_read_timeout 7s, the candidate
    with the timeout fixed; an old run without the list shows dashes."""
    nginx = {"timeout_s": 6.999, "closes": 131, "direction": "server_or_either"}
    a = with_intermediaries(make_run(tmp_path, "a", known_a()), [nginx, {"closes": 4}])
    b = with_intermediaries(make_run(tmp_path, "b", known_a()), [])
    old = make_run(tmp_path, "c", known_a())
    c = compare([load_run(a), load_run(b), load_run(old)], resamples=50)
    rows = {r.key: r for r in c.rows}
    assert rows["intermediary_closes"].values == [135.0, 0.0, None]
    assert rows["intermediary_closes"].delta(1) == -135.0
    assert rows["intermediary1_timeout"].values == [6.999, None, None]
    lines = {s.split("  ")[0].strip(): s.split() for s in render_text(c).splitlines()}
    assert lines["intermediary closes"][2:6] == ["135", "0", "-135", "-100.0%"]
    assert {"metric": "intermediary_closes", "unit": "", "values": [135.0, 0.0, None]} in (
        to_json(c)["table"]
    )
    # nobody named one: no rows
    plain = compare([load_run(b), load_run(old)], resamples=50)
    assert not any(r.key.startswith("intermediary") for r in plain.rows)
