"""The whole engine under MockClock: clients, runner, recorder and the
reference gateway over in-memory streams. Virtual hours pass in seconds."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from soak.gateway import Gateway, GatewayConfig
from soak.metrics import HIGHEST_US, LOWEST_US, SIG_FIGS
from soak.run.runner import Outcome
from tests.support.runs import gateway_opener, make_profile, run_in_memory


async def run_against_gateway(
    profile_body: str, tmp_path: Path, gw_config: GatewayConfig | None = None
) -> tuple[Outcome, Path, Gateway]:
    profile = make_profile(profile_body, results=tmp_path)
    gateway = Gateway(gw_config or GatewayConfig())
    outcome, path = await run_in_memory(profile, tmp_path, gateway_opener(gateway))
    return outcome, path, gateway


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def hlog_total(path: Path) -> int:
    ref = HdrHistogram(LOWEST_US, HIGHEST_US, SIG_FIGS)
    reader = HistogramLogReader(str(path), ref)
    total = 0
    while True:
        h = reader.get_next_interval_histogram()
        if h is None:
            return total
        total += h.get_total_count()


SOAK_24H = """
[run]
label = "sim24h"
report_interval = "60s"
[clients]
max_connecting = 50
[[clients.stages]]
kind = "ramp"
to = 50
duration = "60s"
[[clients.stages]]
kind = "hold"
duration = "23h59m"
[heartbeat]
interval = "2m"
timeout = "10s"
max_missed = 3
# aligned: the 50 heartbeats of a slot share one virtual instant, so the
# mock clock jumps once per slot instead of 50 times (the spread grid is
# covered by the heartbeat unit tests and the real-socket test)
phase = "aligned"
[thresholds]
heartbeat_success = "100%"
missed = 0
"""


@pytest.mark.slow
async def test_simulated_24h_soak(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    outcome, path, gateway = await run_against_gateway(SOAK_24H, tmp_path)
    # the run ends on time (plus the bounded close of every client)
    assert 86400 <= trio.current_time() - start <= 86400 + 3.0
    assert outcome.status == "completed"
    assert outcome.exit_code == 0, outcome.summary["thresholds"]

    intervals = read_jsonl(path / "intervals.jsonl")
    # every interval present, in order, with no gap: 1,440 minutes (the last
    # one also holds the shutdown)
    assert [iv["i"] for iv in intervals] == list(range(len(intervals)))
    assert len(intervals) == 1440
    for a, b in itertools.pairwise(intervals):
        assert b["t"] == a["t"] + a["dt"]
    assert all(iv["connected"] == 50 for iv in intervals[1:-1])

    tot = outcome.summary["totals"]
    # 50 clients x one heartbeat every 2 minutes: the slots at 120 s .. 86400 s
    # (the slot at 0 comes before the ramp connects anyone; the one at the very
    # end goes out TIMER_EARLY before the run ends)
    assert tot["pings"] == 50 * 720
    assert tot["pongs"] == tot["pings"]
    assert tot["missed"] == tot["late"] == tot["zombies"] == 0
    assert tot["connects"] == 50
    assert tot["closes"] == {"client_shutdown": 50}
    # histogram counts add up: per interval lines, hlog files and totals agree
    assert sum(int(iv["pings"]) for iv in intervals) == tot["pings"]
    assert sum(int(iv["rtt_count"]) for iv in intervals) == tot["pongs"]
    assert hlog_total(path / "rtt.hlog") == tot["pongs"]
    assert hlog_total(path / "lag.hlog") == tot["pings"]
    assert hlog_total(path / "connect.hlog") == 50
    # in-memory streams under a virtual clock: no time passes in transit
    assert outcome.summary["latency_ms"]["rtt"]["max"] == 0.0
    # the gateway saw the same traffic
    stats = gateway.stats()
    assert stats["pings_received"] == tot["pings"]
    assert stats["connections"] == 0
