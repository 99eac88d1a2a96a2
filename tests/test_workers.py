"""Multi-process runs (soak.run: split, spawn, processes, merge, sinks): how
the load is split, how the workers' measurements merge, and real worker
processes against the reference gateway on 127.0.0.1 (port 0), including a
worker killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner
from hdrh.log import HistogramLogReader

from soak.cli import cli, reference_gateway
from soak.config.overrides import override
from soak.config.profile import WORKERS_AUTO, Profile
from soak.config.stages import Storm, stage_record
from soak.limits import fd_problem, memory_problem, worker_capacity
from soak.metrics import Interval
from soak.recorder import Recorder
from soak.run.merge import StormReplay, absorb, encode_interval, merge_status
from soak.run.processes import Coordinator
from soak.run.runner import Outcome
from soak.run.spawn import LEAD, go, start_workers
from soak.run.split import auto_workers, share, slice_profile
from soak.storm import StormLog, StormTracker
from tests.support.runs import make_profile

ROOT = Path(__file__).resolve().parent.parent

STAGES = """
[run]
seed = 7
[target.stats]
url = "http://127.0.0.1:9/api/stats"
[clients]
max_connecting = 100
[[clients.stages]]
kind = "ramp"
to = 1001
duration = "10s"
[[clients.stages]]
kind = "spike"
add = 11
duration = "5s"
[[clients.stages]]
kind = "churn"
rate = 3.0
duration = "5s"
[[clients.stages]]
kind = "storm"
drop = "50%"
command = "true"
restart_url = "http://127.0.0.1:9/admin/restart"
duration = "5s"
[heartbeat]
interval = "30s"
[thresholds]
rtt_p99 = "250ms"
"""


# -- splitting the load -----------------------------------------------------------------


def test_shares_add_up_and_differ_by_at_most_one() -> None:
    for total in (0, 1, 2, 7, 1001, 50_000):
        for count in (1, 2, 3, 7):
            parts = [share(total, i, count) for i in range(count)]
            assert sum(parts) == total
            assert max(parts) - min(parts) <= 1


def test_slice_profile_splits_every_stage_and_keeps_parent_work_out() -> None:
    p = make_profile(STAGES)
    parts = [slice_profile(p, i, 3) for i in range(3)]
    for k, stage in enumerate(p.clients.stages):
        # every kind's fields (0 where a kind has none), as run.json shows them
        whole = stage_record(stage)
        pieces = [stage_record(q.clients.stages[k]) for q in parts]
        assert all(type(q.clients.stages[k]) is type(stage) for q in parts)
        assert sum(x["to"] for x in pieces) == whole["to"]
        assert sum(x["add"] for x in pieces) == whole["add"]
        assert sum(x["rate"] for x in pieces) == pytest.approx(whole["rate"])
        assert [x["duration"] for x in pieces] == [whole["duration"]] * 3
    assert sum(q.peak_clients for q in parts) == p.peak_clients
    assert sum(q.clients.max_connecting for q in parts) == 100
    # the storm's drop happens in every worker; the command, the restart,
    # the stats poll and the verdicts are the parent's
    for q in parts:
        storm = q.clients.stages[-1]
        assert isinstance(storm, Storm)
        assert (storm.drop, storm.command, storm.restart_url) == (0.5, None, None)
        assert q.target.stats is None
        assert q.thresholds == ()
        assert q.run.workers == 1
    assert len({q.run.seed for q in parts}) == 3
    assert len({q.clients.client_id_prefix for q in parts}) == 3


def test_auto_workers_follows_descriptors_and_heartbeat_rate() -> None:
    def ramp(n: int, interval: str = "30s", impaired: str = "") -> Profile:
        body = f"""
[[clients.stages]]
kind = "ramp"
to = {n}
duration = "1m"
[heartbeat]
interval = "{interval}"
{impaired}
"""
        return make_profile(body)

    assert auto_workers(ramp(1000), fd_soft=20_000, cores=2) == 1
    # 50,000 connections need three processes of ~19,900 descriptors
    assert auto_workers(ramp(50_000), fd_soft=20_000, cores=2) == 3
    # 10,000 heartbeats/s: more than one worker's worth, but no more than the cores
    assert auto_workers(ramp(10_000, "1s"), fd_soft=20_000, cores=2) == 2
    assert auto_workers(ramp(10_000, "1s"), fd_soft=20_000, cores=1) == 1
    # with an in-process proxy each client takes three descriptors (its own
    # socket and both ends of the proxy's)
    proxied = ramp(15_000, impaired='[impairment]\nlatency = "10ms"')
    assert worker_capacity(20_000, proxied=True) == (20_000 - 64) // 3 == 6645
    assert auto_workers(proxied, fd_soft=20_000, cores=2) == 3


def test_capacity_messages_say_what_would_fit() -> None:
    assert fd_problem(19_000, 1, 20_000, proxied=False) is None
    msg = fd_problem(50_000, 2, 20_000, proxied=False)
    assert msg is not None
    assert "needs 50,000 connections at its peak" in msg
    assert "2 worker processes hold at most 39,872" in msg
    assert "use --workers 3 or more" in msg
    assert memory_problem(1000, 1 << 30) is None
    msg = memory_problem(100_000, 512 * 2**20)
    assert msg is not None
    assert "only 512 MiB is available: at most 52,428 clients fit" in msg


def test_workers_option_bad_input(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(
        '[target]\nurl = "ws://127.0.0.1:9/ws"\n'
        '[[clients.stages]]\nkind = "ramp"\nto = 50000\nduration = "1s"\n'
    )
    results = tmp_path / "r"
    for bad in ("0", "-1", "two", "65"):
        res = CliRunner().invoke(cli, ["run", str(profile), "--workers", bad])
        assert res.exit_code == 2, res.output
        assert "--workers: expected a number of worker processes from 1 to 64" in res.output
    res = CliRunner().invoke(
        cli, ["run", str(profile), "--workers", "2", "--results-dir", str(results)]
    )
    assert res.exit_code == 2
    assert "use --workers 3 or more" in res.output
    assert "Traceback" not in res.output
    assert not results.exists()
    profile.write_text(profile.read_text() + '[run]\nworkers = "many"\n')
    res = CliRunner().invoke(cli, ["run", str(profile)])
    assert res.exit_code == 2
    assert 'p.toml: run.workers: expected a number of worker processes from 1 to 64, or "auto"' in (
        res.output
    )


def test_profile_workers_auto_and_override() -> None:
    body = '[run]\nworkers = "auto"\n[[clients.stages]]\nkind = "hold"\nduration = "1s"\n'
    p = make_profile(body)
    assert p.run.workers == WORKERS_AUTO
    assert override(p, workers="4").run.workers == 4
    assert override(p, workers="auto").run.workers == WORKERS_AUTO


# -- merging --------------------------------------------------------------------------


def test_intervals_merge_losslessly() -> None:
    a, b = Interval(3, 30.0), Interval(3, 30.0)
    for us in range(100, 1100):
        a.hist["rtt"].record_value(us)
    for us in (5_000, 7_000, 250_000):
        b.hist["rtt"].record_value(us)
    a.counts["pongs"], b.counts["pongs"] = 1000, 3
    b.counts["missed"] = 2
    a.closes["client_shutdown"] = 4
    b.closes["client_shutdown"] = 1
    b.closes["server_1012_service_restart"] = 7
    a.gc_pause_max, b.gc_pause_max = 0.002, 0.001
    merged = Interval(3, 30.0)
    for iv in (a, b):
        # through JSON, as on the pipe
        absorb(merged, json.loads(json.dumps(encode_interval(iv, gave_up=0))))
    rtt = merged.hist["rtt"]
    assert rtt.get_total_count() == 1003
    assert rtt.get_max_value() == b.hist["rtt"].get_max_value()
    assert rtt.get_min_value() == a.hist["rtt"].get_min_value()
    assert merged.counts["pongs"] == 1003
    assert merged.counts["missed"] == 2
    assert merged.closes == {"client_shutdown": 5, "server_1012_service_restart": 7}
    assert merged.gc_pause_max == 0.002


def test_storm_inputs_from_two_workers_replay_into_one_storm() -> None:
    """Six losses in each of two workers: neither alone reaches the 10 that
    make a storm, the run's 12 do. Replayed in time order, the storm is the
    one a single tracker sees, and nothing is replayed past what every
    worker has reported."""
    p = make_profile('[[clients.stages]]\nkind = "hold"\nduration = "1m"\n')
    t0 = 1000.0
    logs = [StormLog(origin=t0) for _ in range(2)]
    direct = StormTracker(heartbeat_interval=30.0, origin=t0)
    script: list[tuple[int, float, str]] = []
    for k in range(6):
        script += [(0, 10.0 + 0.05 * k, "lost"), (1, 10.02 + 0.05 * k, "lost")]
    for k in range(6):
        script += [(0, 12.0 + 0.1 * k, "ready"), (1, 12.05 + 0.1 * k, "ready")]
    script.sort(key=lambda s: s[1])
    for worker, t, kind in script:
        for tracker in (logs[worker], direct):
            if kind == "lost":
                tracker.lost(t0 + t)
            else:
                tracker.attempt(t0 + t - 0.01, 1)
                tracker.ready(t0 + t, 0.01, t0 + 10.0)
                if tracker is direct:
                    direct.tick(t0 + t)  # as a client does after each recovery
    emitted: list[dict[str, Any]] = []

    class FakeShared:
        def __init__(self) -> None:
            self.storms = StormTracker(heartbeat_interval=30.0, origin=t0)

        def emit(self, ev: dict[str, Any]) -> None:
            emitted.append(ev)

        def storm_tick(self, now: float) -> None:
            self.storms.tick(now)

    shared = FakeShared()
    replay = StormReplay(shared, t0)  # type: ignore[arg-type]
    replay.add(1, logs[1].take())
    replay.add(0, logs[0].take())
    replay.replay(10.2)  # worker 0 has not reported past 10.2 s yet
    assert shared.storms.current is None
    replay.replay(100.0)
    assert [e["event"] for e in emitted] == ["storm_start"]
    assert emitted[0]["lost"] == 10
    assert emitted[0]["t"] == pytest.approx(10.0)
    direct.tick(t0 + 100.0)
    shared.storms.tick(t0 + 100.0)
    ours, theirs = shared.storms.summaries(), direct.summaries()
    assert ours[0]["lost"] == theirs[0]["lost"] == 12
    assert ours == theirs
    assert p.run.workers == 1


def test_live_status_adds_up_workers() -> None:
    a: dict[str, Any] = {"connected": 10, "connecting": 1, "target": 12, "pongs": 5, "missed": 1}
    a |= {"rtt_p50_ms": 0.5, "rtt_p99_ms": 2.0, "loop_lag_max_ms": 1.0, "gave_up": 0}
    b: dict[str, Any] = {"connected": 7, "connecting": 0, "target": 7, "pongs": 3, "missed": 0}
    b |= {"rtt_p50_ms": 0.7, "rtt_p99_ms": 9.0, "loop_lag_max_ms": 4.0, "gave_up": 2}
    merged = merge_status([a, b], [True, False])
    assert (merged["connected"], merged["target"]) == (10, 12)  # the dead worker holds none
    assert (merged["pongs"], merged["missed"], merged["gave_up"]) == (8, 1, 2)
    assert (merged["rtt_p99_ms"], merged["loop_lag_max_ms"]) == (9.0, 4.0)


def test_live_rtt_is_the_merged_histograms_of_the_current_interval() -> None:
    """Worker 0 saw 99 fast pongs and worker 1 one slow one: the run's p99 is
    fast (neither worker's own p99 is the run's); a status from an older
    interval is left out."""

    def status(values: list[int], interval: int) -> dict[str, Any]:
        iv = Interval(interval, 0.0)
        for us in values:
            iv.hist["rtt"].record_value(us)
        return {"interval": interval, "rtt_hist": iv.hist["rtt"].encode().decode("ascii")}

    fast, slow, stale = status([1000] * 99, 7), status([50_000], 7), status([900_000] * 50, 6)
    fast["rtt_p99_ms"], slow["rtt_p99_ms"] = 1.0, 50.0
    merged = merge_status([fast, slow, stale], [True, True, True], interval=7)
    assert merged["rtt_p50_ms"] == pytest.approx(1.0, rel=0.01)
    assert merged["rtt_p99_ms"] == pytest.approx(1.0, rel=0.01)
    assert merge_status([fast, slow], [True, True])["rtt_p99_ms"] == pytest.approx(1.0, rel=0.01)


# -- real worker processes ---------------------------------------------------------------


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    intervals = [json.loads(x) for x in (run_dir / "intervals.jsonl").read_text().splitlines()]
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    return summary, intervals, events


@pytest.mark.process
def test_two_workers_against_the_reference_gateway(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli,
        [
            "demo",
            str(ROOT / "profiles" / "smoke.toml"),
            "--workers",
            "2",
            "--results-dir",
            str(tmp_path),
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    (run_dir,) = tmp_path.iterdir()
    summary, intervals, events = read_run(run_dir)
    assert summary["workers"]["count"] == 2
    assert summary["workers"]["planned_clients"] == [10, 10]
    assert summary["workers"]["lost"] == []
    tot = summary["totals"]
    assert tot["connects"] == 20
    assert tot["missed"] == 0
    assert tot["pongs"] > 100
    assert max(iv["connected"] for iv in intervals) == 20
    assert sum(iv["pongs"] for iv in intervals) == tot["pongs"]
    # the merged histogram log holds every sample of both workers
    reader = HistogramLogReader(str(run_dir / "rtt.hlog"), None)
    count = 0
    while (h := reader.get_next_interval_histogram()) is not None:
        count += h.get_total_count()
    assert count == summary["latency_ms"]["rtt"]["count"] == tot["pongs"]
    closes = [e for e in events if e["event"] == "close"]
    assert {e["worker"] for e in closes} == {0, 1}
    assert len({e["client"] for e in closes}) == 20
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["workers"] == 2
    assert manifest["status"] == "completed"
    assert "workers      2 processes, lost: none, late reports 0" in res.output
    # the report of a multi-process run says so
    rep = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert rep.exit_code == 0, rep.output
    assert "<th>tester processes</th><td class='num'>2 workers</td>" in (
        (run_dir / "report.html").read_text()
    )


@pytest.mark.process
async def test_a_worker_killed_mid_run_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    profile = override(
        make_profile(
            """
[run]
report_interval = "1s"
[[clients.stages]]
kind = "ramp"
to = 20
duration = "500ms"
[[clients.stages]]
kind = "hold"
duration = "3500ms"
[heartbeat]
interval = "250ms"
timeout = "1s"
"""
        ),
        results_dir=str(tmp_path),
    )
    with reference_gateway([]) as port:
        p = override(profile, url=f"ws://127.0.0.1:{port}/ws")
        workers = await trio.to_thread.run_sync(start_workers, p, 2)
        origin = time.monotonic() + LEAD
        recorder = Recorder(tmp_path, "killed", time.time() + LEAD)
        go(workers, origin, recorder.wall0)
        killed = False

        def on_interval(record: dict[str, Any]) -> None:
            nonlocal killed
            if record["i"] == 1 and not killed:
                killed = True
                os.kill(workers[1].proc.pid, signal.SIGKILL)

        coordinator = Coordinator(
            p, recorder, workers, origin_monotonic=origin, on_interval=on_interval
        )
        outcome: Outcome = await coordinator.run()
    assert killed
    summary, intervals, events = read_run(recorder.path)
    (lost,) = summary["workers"]["lost"]
    assert lost["worker"] == 1
    assert lost["exit_code"] == -signal.SIGKILL
    assert outcome.exit_code == 1
    assert summary["status"] == "completed"
    assert any(c["name"] == "workers_lost" and not c["ok"] for c in summary["thresholds"])
    assert summary["totals"]["closes"]["worker_lost"] == 10
    (ev,) = [e for e in events if e["event"] == "worker_lost"]
    assert ev["worker"] == 1
    assert ev["clients"] == 10
    # the run went on to its end with the other worker
    assert len(intervals) == 4
    assert intervals[-2]["connected"] == 10
    assert intervals[-2]["pongs"] > 0
    assert summary["workers"]["status"] == {"completed": 1}


@pytest.mark.process
def test_ctrl_c_stops_every_worker_and_leaves_one_readable_directory(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "soak",
            "demo",
            str(ROOT / "profiles" / "smoke.toml"),
            "--workers",
            "2",
            "--duration",
            "1h",
            "--results-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for _ in range(50):
            line = proc.stderr.readline()
            if not line or (line.startswith("[") and "connected=20/20" in line):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    (run_dir,) = tmp_path.iterdir()
    summary, _, events = read_run(run_dir)
    assert summary["status"] == "interrupted"
    assert summary["workers"]["status"] == {"interrupted": 2}
    assert summary["workers"]["lost"] == []
    shutdown = [e for e in events if e.get("reason") == "client_shutdown"]
    assert len(shutdown) == 20
    assert summary["totals"]["closes"] == {"client_shutdown": 20}
