"""`soak compare` on availability, recovery and failures, and its
fair-profile warnings: runs written by hand with known figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from soak.metrics import new_histogram
from soak.report.compare import DEFAULT_LIMITS, LimitSpecError, compare, parse_limits
from soak.report.compare_profile import same_experiment
from soak.report.compare_text import render_text
from soak.results import hlog, jsonl
from soak.results.reader import load_run

PROFILE: dict[str, Any] = {
    "path": "profiles/x.toml",
    "run": {"label": "x", "report_interval": 1.0, "results_dir": "results"},
    "target": {"url": "ws://127.0.0.1:8765/ws", "protocol": "json", "stats": None},
    "clients": {
        "stages": [
            {"kind": "ramp", "duration": 0.0, "to": 200, "command": None},
            {"kind": "storm", "duration": 45.0, "command": "kill -USR2 4242", "restart_url": None},
        ]
    },
    "heartbeat": {"interval": 10.0, "timeout": 5.0, "max_missed": 3},
    "reconnect": {"initial_delay": 1.0, "max_attempts": 20},
}


def write_run(
    root: Path,
    label: str,
    *,
    profile: dict[str, Any] | None = None,
    totals: dict[str, Any] | None = None,
    availability: dict[str, Any] | None = None,
    duration: float = 10.0,
) -> Path:
    """A run of ten 1 s intervals of RTT samples; summary.json says
    ``duration`` seconds and holds ``availability`` (if any)."""
    path = root / label
    path.mkdir(parents=True)
    prof = json.loads(json.dumps(profile or PROFILE))
    prof["run"]["label"] = label
    jsonl.write_document(path / "run.json", {"tool": "soak", "label": label, "profile": prof})
    lines = [hlog.header("rtt", 0.0)]
    for i in range(10):
        h = new_histogram()
        for v in range(100, 200):
            assert h.record_value(v)
        lines.append(hlog.line(float(i), 1.0, h))
    (path / "rtt.hlog").write_text("".join(lines))
    jsonl.write_lines(
        path / "intervals.jsonl", [{"i": i, "t": float(i), "dt": 1.0} for i in range(10)]
    )
    tot = {"pongs": 1000, "missed": 0, "false_timeouts": 0, "zombies": 0, "heartbeat_success": 1.0}
    tot.update(totals or {})
    doc: dict[str, Any] = {"label": label, "status": "completed", "duration_s": duration}
    doc["totals"] = tot
    if availability is not None:
        doc["availability"] = availability
    jsonl.write_document(path / "summary.json", doc)
    return path


def avail(value: float, recovered: int, r100: float | None) -> dict[str, Any]:
    storm = {
        "index": 1,
        "start_s": 45.0,
        "lost": 200,
        "recovered": recovered,
        "gave_up": 0,
        "recovered_share": recovered / 200,
        "recovery_95_s": r100,
        "recovery_100_s": r100,
    }
    return {
        "availability": value,
        "connected_client_s": 0.0,
        "target_client_s": 0.0,
        "below": {"share": 0.95, "longest_s": 0.0, "from_s": None},
        "storm_recovery": recovered / 200,
        "storms": [storm],
    }


# -- the verdict ----------------------------------------------------------------------


@pytest.mark.slow
def test_the_gateway_that_went_away_is_a_regression(tmp_path: Path) -> None:
    fails = {"handshake_failure_total": 0, "reconnect_attempts": 200, "reconnects": 200}
    a = write_run(tmp_path, "a", totals=fails, availability=avail(0.91, 200, 15.9))
    gone = {"handshake_failure_total": 1222, "reconnect_attempts": 1222, "reconnects": 0}
    b = write_run(tmp_path, "b", totals=gone, availability=avail(0.5, 0, None))
    c = compare([load_run(a), load_run(b)], resamples=100)
    checks = {k.name: k for k in c.checks}
    assert checks["availability"].regression
    assert checks["availability"].shown == "-41.000 pp"
    assert checks["storm_recovery"].regression
    assert checks["storm_recovery_s"].regression
    assert checks["storm_recovery_s"].shown == "15.9 s -> never (0 of 200 back by the end)"
    assert checks["handshake_failures"].regression
    assert checks["handshake_failures"].shown == "0.0 -> 1222.0 (+1222.0)"
    assert checks["reconnect_failures"].regression
    # RTT, false timeouts, heartbeats and zombies did not move
    for name in ("rtt_p99", "false_timeouts", "heartbeat_success", "zombies"):
        assert not checks[name].regression
    text = render_text(c)
    assert "verdict: REGRESSION: availability (b)" in text
    assert "storm_recovery (b)" in text
    assert "note: a run is shorter than 10 min" in text


@pytest.mark.slow
def test_rates_per_hour_for_long_runs_and_small_increases_are_noise(tmp_path: Path) -> None:
    av = avail(0.999, 200, 10.0)
    a = write_run(
        tmp_path,
        "a",
        totals={"handshake_failure_total": 10, "reconnect_attempts": 5, "reconnects": 5},
        availability=av,
        duration=7200.0,
    )
    b = write_run(
        tmp_path,
        "b",
        totals={"handshake_failure_total": 24, "reconnect_attempts": 9, "reconnects": 5},
        availability={**av, "storms": [{**av["storms"][0], "recovery_100_s": 14.0}]},
        duration=7200.0,
    )
    c = compare([load_run(a), load_run(b)], resamples=100)
    rows = {r.key: r for r in c.rows}
    assert rows["handshake_failures"].unit == "/h"
    assert rows["handshake_failures"].values == [5.0, 12.0]
    assert rows["reconnect_failures"].values == [0.0, 2.0]
    checks = {k.name: k for k in c.checks}
    # +7/h and +2/h: under the floor of 10
    assert not checks["handshake_failures"].regression
    assert not checks["reconnect_failures"].regression
    # 10 s -> 14 s is +40%, within 50%
    assert not checks["storm_recovery_s"].regression
    assert checks["storm_recovery_s"].shown == "10 s -> 14 s (+40.0%)"
    assert not c.regression
    assert not any("shorter than" in n for n in c.notes)
    tight = parse_limits(["storm_recovery_s=30%"])
    c = compare([load_run(a), load_run(b)], tight, resamples=100)
    assert {k.name for k in c.checks if k.regression} == {"storm_recovery_s"}


@pytest.mark.slow
def test_runs_from_before_availability_show_no_data(tmp_path: Path) -> None:
    a = write_run(tmp_path, "a")
    b = write_run(tmp_path, "b")
    c = compare([load_run(a), load_run(b)], resamples=100)
    checks = {k.name: k for k in c.checks}
    for name in ("availability", "storm_recovery", "storm_recovery_s", "reconnect_failures"):
        assert not checks[name].regression
        assert checks[name].shown.startswith("no data"), name
    assert "availability" not in {r.key for r in c.rows}


def test_limits_for_the_new_checks() -> None:
    limits = parse_limits(["availability=0.5", "handshake_failures=20%", "storm_recovery=1pp"])
    assert limits["availability"] == 0.5
    assert limits["handshake_failures"] == pytest.approx(0.2)
    assert limits["storm_recovery"] == 1.0
    assert DEFAULT_LIMITS["storm_recovery"] == 0.0
    with pytest.raises(LimitSpecError, match="relative limit like 10%"):
        parse_limits(["reconnect_failures=3"])
    with pytest.raises(LimitSpecError, match='"availability=x"'):
        parse_limits(["availability=x"])


# -- fair-profile warnings ----------------------------------------------------------


def test_same_experiment_is_a_command_text_or_a_port() -> None:
    key = "clients.stages[1].command"
    assert same_experiment(key, "kill -USR2 1", "kill -USR2 2")
    assert not same_experiment(key, "kill -USR2 1", None)
    assert same_experiment("target.url", "ws://h:1/ws", "ws://h:2/ws")
    assert same_experiment("target.url", "ws://h/ws", "ws://h:2/ws")
    assert not same_experiment("target.url", "ws://h:1/ws", "ws://g:1/ws")
    assert not same_experiment("target.url", "ws://h:1/ws", "ws://h:1/v2")
    assert same_experiment("clients.stages[0].restart_url", "http://h:1/r", "http://h:9/r")
    assert not same_experiment("heartbeat.interval", 1.0, 1.0 + 1e-9)


def _variant(**changes: Any) -> dict[str, Any]:
    prof: dict[str, Any] = json.loads(json.dumps(PROFILE))
    for dotted, value in changes.items():
        node: Any = prof
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[int(last) if last.isdigit() else last] = value
    return prof


@pytest.mark.slow
def test_a_pid_and_a_port_are_notes_not_warnings(tmp_path: Path) -> None:
    a = write_run(tmp_path, "a")
    other = _variant(target__url="ws://127.0.0.1:9999/ws")
    other["clients"]["stages"][1]["command"] = "kill -USR2 777"
    b = write_run(tmp_path, "b", profile=other)
    c = compare([load_run(a), load_run(b)], resamples=100)
    assert c.warnings == []
    (note,) = [n for n in c.notes if "differs from the baseline" in n]
    assert note == (
        "'b' differs from the baseline only where the experiment is the same: "
        'clients.stages[1].command "kill -USR2 4242" vs "kill -USR2 777"; '
        'target.url "ws://127.0.0.1:8765/ws" vs "ws://127.0.0.1:9999/ws"'
    )


@pytest.mark.slow
def test_other_differences_warn_with_both_values(tmp_path: Path) -> None:
    a = write_run(tmp_path, "a")
    other = _variant(
        clients__stages__0__to=100, heartbeat__interval=30.0, reconnect__max_attempts=5
    )
    other["clients"]["stages"][1]["command"] = "kill -USR2 777"
    b = write_run(tmp_path, "b", profile=other)
    c = compare([load_run(a), load_run(b)], resamples=100)
    (warning,) = c.warnings
    assert warning == (
        "WARNING: 'b' ran a different profile from the baseline 'a' "
        "(clients.stages[0].to 200 vs 100; heartbeat.interval 10.0 vs 30.0; "
        "reconnect.max_attempts 20 vs 5): the comparison may not be fair"
    )
    assert any(n.startswith("'b' differs from the baseline also where") for n in c.notes)
    host = write_run(tmp_path, "host", profile=_variant(target__url="ws://127.0.0.2:8765/ws"))
    c = compare([load_run(a), load_run(host)], resamples=100)
    (warning,) = c.warnings
    assert 'target.url "ws://127.0.0.1:8765/ws" vs "ws://127.0.0.2:8765/ws"' in warning
