"""The workers' merge (soak.run.merge): what the parent makes of its
workers' reports. Pure: messages in, the run's line and tally out."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from soak.metrics import Interval, Metrics
from soak.run.merge import encode_interval, merge_status
from soak.run.processes import WorkerProcesses
from soak.run.spawn import Worker


def status(**kw: Any) -> dict[str, Any]:
    return kw


def test_the_live_line_adds_every_count_of_every_worker() -> None:
    """Each count of the live line is the sum over the workers, dead ones
    included (what they counted happened); the gauges only of the live ones;
    without histograms the worst worker's percentiles; the longest interval
    elapsed and the worst loop lag."""
    a = status(
        connected=10, connecting=1, target=12, pongs=5, missed=1, zombies=1, false_timeouts=2,
        reconnects=3, handshake_failures=4, gave_up=0, rtt_p50_ms=0.5, rtt_p99_ms=2.0,
        loop_lag_max_ms=1.0, interval_elapsed=0.25,
    )  # fmt: skip
    b = status(
        connected=7, connecting=2, target=8, pongs=3, missed=0, zombies=0, false_timeouts=1,
        reconnects=1, handshake_failures=0, gave_up=2, rtt_p50_ms=0.7, rtt_p99_ms=9.0,
        loop_lag_max_ms=4.0, interval_elapsed=0.5,
    )  # fmt: skip
    c = status(connected=100, connecting=100, target=100, pongs=1)  # dead: its gauges are gone
    assert merge_status([a, b, c], [True, True, False]) == {
        "connected": 17,
        "connecting": 3,
        "target": 20,
        "pongs": 9,
        "missed": 1,
        "zombies": 1,
        "false_timeouts": 3,
        "reconnects": 4,
        "handshake_failures": 4,
        "gave_up": 2,
        "rtt_p50_ms": 0.7,
        "rtt_p99_ms": 9.0,
        "loop_lag_max_ms": 4.0,
        "interval_elapsed": 0.5,
    }


def test_a_live_line_of_workers_that_reported_nothing_yet() -> None:
    """A worker that has not reported holds nothing and counted nothing:
    zeros, no percentiles (not a zero latency)."""
    merged = merge_status([{}, {}], [True, True])
    assert merged == {
        "connected": 0,
        "connecting": 0,
        "target": 0,
        "pongs": 0,
        "missed": 0,
        "zombies": 0,
        "false_timeouts": 0,
        "reconnects": 0,
        "handshake_failures": 0,
        "gave_up": 0,
        "rtt_p50_ms": None,
        "rtt_p99_ms": None,
        "loop_lag_max_ms": 0.0,
        "interval_elapsed": 1e-9,
    }
    assert merge_status([], [])["loop_lag_max_ms"] == 0.0


def test_the_live_percentiles_of_merged_histograms_are_in_milliseconds() -> None:
    iv = Interval(3, 0.0)
    for us in (2_000, 2_000, 40_000):
        iv.hist["rtt"].record_value(us)
    one = {"interval": 3, "rtt_hist": iv.hist["rtt"].encode().decode("ascii")}
    merged = merge_status([one], [True], interval=3)
    assert round(merged["rtt_p50_ms"], 1) == 2.0
    assert round(merged["rtt_p99_ms"], 0) == 40.0


def test_a_workers_interval_reaches_the_parent_with_its_gauges_and_tally() -> None:
    """What a worker sends at the end of an interval is what the parent
    reads: its gauges (connected, connecting, target, gave up, memory) and
    its counts, added to the run's interval of the same index."""
    iv = Interval(0, 0.0)
    iv.connected, iv.connecting, iv.target, iv.rss_bytes = 5, 2, 9, 123_456
    iv.counts["pongs"] = 7
    iv.closes["server_1001"] = 2
    msg = encode_interval(iv, gave_up=3)
    assert msg["m"] == "interval"
    w = Worker(index=0, proc=cast(Any, None), planned=9)
    source = WorkerProcesses([w])
    metrics = Metrics()
    source._run = cast(Any, SimpleNamespace(metrics=metrics))
    source._take_interval(w, msg)
    assert (w.reported, w.connected, w.connecting, w.target) == (0, 5, 2, 9)
    assert (w.gave_up, w.rss_bytes) == (3, 123_456)
    assert metrics.current.counts["pongs"] == 7
    assert metrics.current.closes["server_1001"] == 2
