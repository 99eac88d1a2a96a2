"""benchmarks/peers.py's pure parts: reading /proc, the steady window, the
ratio, the soak profile it runs (the benchmark itself is run by hand:
`make bench-peers`, docs/benchmarks.md)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from soak.config.load import parse_profile

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def peers() -> Any:
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("peers")
    finally:
        sys.path.remove(str(BENCH))


def test_cpu_is_utime_plus_stime_even_with_a_bracket_in_the_name(peers: Any) -> None:
    tck = os.sysconf("SC_CLK_TCK")
    # a process named "node (x) y": the fields count from the last ")"
    text = f"4242 (node (x) y) S 1 4242 4242 0 -1 4194560 9 0 0 0 {3 * tck} {tck} 0 0 20 0 11 0"
    assert peers.stat_cpu(text) == pytest.approx(4.0)


def test_the_run_queue_delay_is_schedstats_second_field(peers: Any) -> None:
    assert peers.schedstat_wait("123456789 2500000000 77\n") == pytest.approx(2.5)


def test_our_own_process_reads_as_itself(peers: Any) -> None:
    assert peers.proc_cpu(os.getpid()) >= 0.0
    assert peers.proc_wait(os.getpid()) >= 0.0
    assert peers.proc_cpu(2**22 + 1) != peers.proc_cpu(2**22 + 1)  # no such pid: nan


def test_the_steady_window_starts_once_every_client_is_on_its_grid(peers: Any) -> None:
    assert peers.window(10.0, 1.0, 60.0) == (12.0, 59.0)
    assert peers.window(2.0, 0.5, 20.0) == (3.0, 19.0)
    with pytest.raises(SystemExit, match="under 5 s"):
        peers.window(10.0, 1.0, 15.0)


def test_the_ratio_is_soak_over_node_and_none_without_both(peers: Any) -> None:
    assert peers.ratio(150.0, 50.0) == 3.0
    assert peers.ratio(None, 50.0) is None
    assert peers.ratio(150.0, 0.0) is None
    assert peers.ratio(float("nan"), 50.0) is None


def test_the_soak_run_has_the_scenario_of_the_node_client(peers: Any) -> None:
    args = peers.main.__globals__["argparse"].Namespace(
        clients=1234, interval=0.5, ramp=7.0, duration=40.0, max_connecting=99
    )
    profile = parse_profile(peers.soak_profile(args, "ws://127.0.0.1:9/ws"), "peers", {})
    assert profile.peak_clients == 1234
    assert profile.heartbeat.interval == 0.5
    assert profile.heartbeat.phase == "spread"
    assert profile.clients.max_connecting == 99
    assert sum(s.duration for s in profile.clients.stages) == 40.0


def test_bad_flags_are_one_line(peers: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        peers.main(["--clients", "0"])
    assert "--clients and --max-connecting must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="under 5 s"):
        peers.main(["--duration", "12"])
