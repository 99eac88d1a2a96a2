"""The workers' merge (soak.run.merge): what the parent makes of its
workers' reports. Pure: messages in, the run's line and tally out."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from soak.metrics import Interval, Metrics
from soak.run.merge import StormReplay, encode_interval, merge_status
from soak.run.processes import WorkerProcesses
from soak.run.spawn import Worker
from soak.storm import StormTracker

T0 = 1000.0


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
    nobody = merge_status([], [])
    assert (nobody["loop_lag_max_ms"], nobody["interval_elapsed"]) == (0.0, 1e-9)


def test_the_live_percentiles_of_merged_histograms_are_in_milliseconds() -> None:
    iv = Interval(3, 0.0)
    for us in (2_000, 2_000, 40_000):
        iv.hist["rtt"].record_value(us)
    p = iv.hist["rtt"].get_percentile_to_value_dict([50.0, 99.0])
    one = {"interval": 3, "rtt_hist": iv.hist["rtt"].encode().decode("ascii")}
    merged = merge_status([one], [True], interval=3)
    assert (merged["rtt_p50_ms"], merged["rtt_p99_ms"]) == (p[50.0] / 1000.0, p[99.0] / 1000.0)
    assert round(merged["rtt_p50_ms"], 1) == 2.0
    assert round(merged["rtt_p99_ms"], 0) == 40.0


def test_without_an_interval_every_workers_histogram_is_merged() -> None:
    """Before the first interval the live line merges what every worker has."""

    def status(us: int, interval: int) -> dict[str, Any]:
        iv = Interval(interval, 0.0)
        iv.hist["rtt"].record_value(us)
        return {"interval": interval, "rtt_hist": iv.hist["rtt"].encode().decode("ascii")}

    merged = merge_status([status(1_000, 1), status(1_000, 2)], [True, True])
    assert round(merged["rtt_p99_ms"], 1) == 1.0
    assert merge_status([status(1_000, 1)], [True], interval=2)["rtt_p99_ms"] is None


class Services:
    """What StormReplay uses of the parent's services."""

    def __init__(self) -> None:
        self.storms = StormTracker(
            heartbeat_interval=1.0, origin=T0, min_losses=3, window=1.0, quiet=5.0
        )
        self.emitted: list[dict[str, Any]] = []

    def emit(self, ev: dict[str, Any]) -> None:
        self.emitted.append(ev)

    def storm_tick(self, now: float) -> None:
        self.storms.tick(now)


def test_a_replayed_storm_starts_at_its_first_loss_to_the_microsecond() -> None:
    sv = Services()
    replay = StormReplay(cast(Any, sv), T0)
    replay.add(0, [["lost", 2.125], ["lost", 2.25]])
    replay.add(1, [["lost", 2.375]])
    replay.replay(3.0)
    assert sv.emitted == [{"t": 2.125, "event": "storm_start", "storm": 1, "lost": 3}]


def test_a_failed_attempt_keeps_a_replayed_storm_going() -> None:
    """A storm ends ``quiet`` seconds after its last activity; a reconnect
    attempt that fails is activity (the clients are still at it)."""
    sv = Services()
    replay = StormReplay(cast(Any, sv), T0)
    replay.add(0, [["lost", 1.0], ["lost", 1.0], ["lost", 1.0], ["failed", 4.0, "refused"]])
    replay.replay(4.0)
    storm = sv.storms.current
    assert storm is not None
    assert storm.last_activity == T0 + 4.0
    assert storm.failures == {"refused": 1}
    assert sv.storms.tick(T0 + 8.5) is None  # 4.5 s after the failure: still going


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
