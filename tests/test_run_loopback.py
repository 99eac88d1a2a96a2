"""Real sockets on 127.0.0.1: 200 clients against the reference gateway for
a few seconds, then the results directory read back with standard readers,
and its format pinned by a golden file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from soak.facts import Finding
from soak.gateway import Gateway, GatewayConfig
from soak.metrics import HIGHEST_US, HISTOGRAMS, LOWEST_US, SIG_FIGS
from soak.recorder import Recorder, now_wall
from soak.run.runner import Outcome, Runner
from tests.support.runs import make_profile

pytestmark = pytest.mark.process

GOLDEN = Path(__file__).parent / "golden" / "results_format.json"

PROFILE = """
[run]
label = "loopback"
report_interval = "1s"
seed = 7
[clients]
max_connecting = 64
[[clients.stages]]
kind = "ramp"
to = 200
duration = "1s"
[[clients.stages]]
kind = "hold"
duration = "3s"
[heartbeat]
interval = "500ms"
timeout = "2s"
[thresholds]
rtt_p99 = "1s"
heartbeat_success = "99%"
"""


def shape(value: Any) -> Any:
    """The structure of a JSON value: dict keys kept, leaves reduced to their type."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__ if value is not None else "null"


def read_hlog(path: Path) -> list[HdrHistogram]:
    reader = HistogramLogReader(str(path), HdrHistogram(LOWEST_US, HIGHEST_US, SIG_FIGS))
    out = []
    while (h := reader.get_next_interval_histogram()) is not None:
        out.append(h)
    return out


async def test_200_clients_on_loopback(tmp_path: Path) -> None:
    gateway = Gateway(GatewayConfig(host="127.0.0.1", port=0))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            profile = make_profile(PROFILE, url=f"ws://127.0.0.1:{port}/ws", results=tmp_path)
            wall0 = now_wall()
            recorder = Recorder(tmp_path, profile.run.label, wall0)
            outcome = await Runner(profile, recorder, manage_gc=False).run()
            nursery.cancel_scope.cancel()

    assert outcome.exit_code == 0, outcome.summary["thresholds"]
    run_dir = recorder.path
    tot = outcome.summary["totals"]
    assert tot["connects"] == 200
    assert tot["handshake_failure_total"] == 0
    assert tot["missed"] == 0
    assert tot["closes"] == {"client_shutdown": 200}
    assert gateway.stats()["pings_received"] == tot["pings"]

    # intervals.jsonl: one line per second plus the shutdown tail, counts add up
    intervals = [json.loads(x) for x in (run_dir / "intervals.jsonl").read_text().splitlines()]
    assert len(intervals) == 4
    assert max(iv["connected"] for iv in intervals) == 200
    assert sum(iv["pings"] for iv in intervals) == tot["pings"]
    assert sum(iv["pongs"] for iv in intervals) == tot["pongs"] > 0

    # every .hlog decodes with hdrh's own reader; counts and times match
    for name in HISTOGRAMS:
        hists = read_hlog(run_dir / f"{name}.hlog")
        assert len(hists) == len(intervals), name
    rtt = read_hlog(run_dir / "rtt.hlog")
    assert [h.get_total_count() for h in rtt] == [iv["rtt_count"] for iv in intervals]
    # absolute timestamps: StartTime + the interval's offset, in ms
    assert abs(rtt[0].get_start_time_stamp() - wall0 * 1000) < 2
    assert abs(rtt[1].get_start_time_stamp() - (wall0 + 1) * 1000) < 2
    merged = HdrHistogram(LOWEST_US, HIGHEST_US, SIG_FIGS)
    for h in rtt:
        merged.add(h)
    assert merged.get_max_value() / 1000 == outcome.summary["latency_ms"]["rtt"]["max"]

    # events.jsonl: one close per client, with evidence
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    closes = [e for e in events if e["event"] == "close"]
    assert len(closes) == 200
    assert {e["code"] for e in closes} == {1001}

    # the format, pinned: file names, JSON shapes, hlog headers
    found = {
        "files": sorted(p.name for p in run_dir.iterdir()),
        "run.json": shape(json.loads((run_dir / "run.json").read_text())),
        "intervals.jsonl": shape(intervals[1]),
        "events.jsonl close": shape(closes[0]),
        "summary.json": shape(outcome.summary),
        "hlog header": [
            line if "Time:" not in line else line.split(":")[0]
            for line in (run_dir / "rtt.hlog").read_text().splitlines()[:5]
        ],
    }
    # whether the ramp's first interval fell below 95% depends on how fast
    # this machine connects 200 clients: the start of that stretch is a
    # number or null (no stretch), both in the format
    below = found["summary.json"]["availability"]["below"]
    assert below["from_s"] in ("float", "null")
    below["from_s"] = "float or null"
    # a run on a busy machine may find that the tester was its bottleneck:
    # whatever it found, each finding has the one record shape pinned here
    record = shape(Finding("k", "warning", "t", "a", 1, ((0.0, 1.0),)).record())
    assert all(shape(f) == record for f in outcome.summary["findings"])
    found["summary.json"]["findings"] = [record]
    if os.environ.get("SOAK_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    assert found == json.loads(GOLDEN.read_text())


RECONCILE = """
[run]
label = "reconcile"
report_interval = "1s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 20
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "2500ms"
[heartbeat]
interval = "500ms"
timeout = "2s"
"""


async def run_with_stats(tmp_path: Path, stats: str) -> tuple[Outcome, Path, int]:
    """RECONCILE against the reference gateway on loopback; ``stats`` is the
    [target.stats] section, with {port} for the gateway's port."""
    gateway = Gateway(GatewayConfig(host="127.0.0.1", port=0))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            profile = make_profile(
                RECONCILE,
                url=f"ws://127.0.0.1:{port}/ws",
                results=tmp_path,
                target_extra=stats.format(port=port),
            )
            recorder = Recorder(tmp_path, profile.run.label, now_wall())
            outcome = await Runner(profile, recorder, manage_gc=False).run()
            nursery.cancel_scope.cancel()
    return outcome, recorder.path, port


def read_intervals(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "intervals.jsonl").read_text().splitlines()]


async def test_server_count_polled_next_to_ours(tmp_path: Path) -> None:
    outcome, run_dir, port = await run_with_stats(
        tmp_path,
        '[target.stats]\nurl = "http://127.0.0.1:{port}/api/stats"\n'
        'field = "connections"\ntimeout = "500ms"\n',
    )
    intervals = read_intervals(run_dir)
    assert len(intervals) == 3
    for iv in intervals:
        assert iv["stats_warning"] is None
        assert iv["server_connections"] == iv["client_connections"] == 20
        assert iv["connection_gap"] == 0
    rec = outcome.summary["reconcile"]
    assert rec["url"] == f"http://127.0.0.1:{port}/api/stats"
    assert rec["polls"] == 3
    assert rec["failed_polls"] == 0
    assert rec["max_gap"] == 0


async def test_a_failing_stats_endpoint_warns_and_the_run_goes_on(tmp_path: Path) -> None:
    outcome, run_dir, port = await run_with_stats(
        tmp_path,
        '[target.stats]\nurl = "http://127.0.0.1:{port}/api/stats"\nfield = "server.online"\n',
    )
    assert outcome.exit_code == 0
    intervals = read_intervals(run_dir)
    assert len(intervals) == 3
    for iv in intervals:
        assert iv["server_connections"] is None
        assert iv["pongs"] > 0
        assert iv["stats_warning"].startswith(f"http://127.0.0.1:{port}/api/stats: field ")
        assert 'no key "server"' in iv["stats_warning"]
    assert outcome.summary["reconcile"]["failed_polls"] == 3
