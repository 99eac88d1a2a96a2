"""What summary.json's ``storms`` and storms.jsonl say about one storm,
every key (soak.storm), and a storm replayed from workers' inputs
(soak.run.merge.StormReplay): times relative to the run's start, rounding,
peaks, recovery, failures, give-ups and the synchronisation indexes."""

from __future__ import annotations

from typing import Any

import pytest

from soak.run.merge import StormReplay
from soak.storm import StormLog, StormTracker, sync_index

T0 = 100.0  # the run started at trio time 100


def one_storm() -> StormTracker:
    """Six losses from 110.0004, three back, two give up: a run that
    started at 99.5, so the storm starts 10.5004 s in."""
    t = StormTracker(heartbeat_interval=1.0, origin=99.5, min_losses=3, window=1.0, quiet=5.0)
    for x in (100.0, 100.1, 100.35):  # first connections, before the storm
        t.ready(x, 0.01, None)
    for x in (110.0004, 110.05, 110.12, 110.2, 110.25, 110.27):
        t.lost(x)
    t.attempt(110.31, 1)
    t.attempt(110.32, 2)
    t.attempt(110.55, 3)
    t.attempt(110.56, 1)  # the bucket keeps its most in flight
    t.failed(110.4, "refused")
    t.failed(110.41, "timeout")
    t.failed(110.42, "refused")
    t.ready(110.6, 0.0123, 110.0004)
    t.ready(110.75, 0.02, 110.05)
    t.ready(110.9, 0.5, 110.2)
    t.gave_up(110.95)
    assert t.tick(111.0) is None  # one client still out
    t.gave_up(111.00049)
    return t


def test_a_storms_summary_every_key() -> None:
    t = one_storm()
    assert t.tick(111.1) is None  # one is still out
    assert t.tick(116.0) is None  # the last activity was under `quiet` ago
    storm = t.tick(116.1)
    assert storm is not None
    [s] = t.summaries()
    hs = s.pop("handshake_ms")
    assert (hs["count"], hs["min"], hs["max"]) == (3, 12.296, 500.223)
    assert s.pop("recovery_s") == {
        "p50": pytest.approx(0.8996),  # 3 of 6 back 0.9 s after the start
        "p90": None,  # two gave up, one is still out: 90% never came back
        "p95": None,
        "p99": None,
        "p100": None,
    }
    assert s == {
        "index": 1,
        "start_s": 10.5,  # 10.5004 s after the run's start, to the millisecond
        "end_s": 11.5,  # 11.50049: the last activity, a give-up
        "lost": 6,
        "recovered": 3,
        "gave_up": 2,
        "attempts": 4,
        "peak_attempts_per_100ms": 2,
        "peak_at_s": 0.3,
        "max_in_flight": 3,
        "failures": {"refused": 2, "timeout": 1},
        # the first connections at phases 0, 0.1, 0.35 of the 1 s heartbeat
        "sync_index_before": round(abs(sum_phases((0.0, 0.1, 0.35))), 4),
        "sync_index_after": round(abs(sum_phases((0.6, 0.75, 0.9))), 4),
    }
    assert s["sync_index_before"] == 0.6185


def sum_phases(phases: tuple[float, ...]) -> complex:
    import cmath
    import math

    return sum(cmath.exp(2j * math.pi * p) for p in phases) / len(phases)


def test_a_storms_100ms_series() -> None:
    t = one_storm()
    [series] = t.series()
    assert series == {
        "index": 1,
        "start_s": 10.5,
        "bucket_s": 0.1,
        # 100 ms buckets from the storm's start (110.0004): the last recovery
        # (110.9) is in bucket 8
        "attempts": [0, 0, 0, 2, 0, 2, 0, 0, 0],
        "in_flight": [0, 0, 0, 2, 0, 3, 0, 0, 0],
        "recovered_pct": [0.0, 0.0, 0.0, 0.0, 0.0, 16.67, 16.67, 33.33, 50.0],
    }


def test_a_storm_of_one_loss_recovers_at_its_time() -> None:
    t = StormTracker(heartbeat_interval=1.0, origin=T0, min_losses=1, window=1.0, quiet=5.0)
    t.lost(105.0)
    t.ready(105.5, 0.01, 105.0)
    [s] = t.summaries()
    assert s["recovery_s"] == {"p50": 0.5, "p90": 0.5, "p95": 0.5, "p99": 0.5, "p100": 0.5}
    assert s["sync_index_after"] is None  # one time: no index
    assert s["end_s"] is None  # not over yet
    assert (s["attempts"], s["peak_attempts_per_100ms"], s["peak_at_s"]) == (0, 0, 0.0)
    assert s["max_in_flight"] == 0
    [series] = t.series()
    assert series["recovered_pct"] == [0.0, 0.0, 0.0, 0.0, 0.0, 100.0]


def test_a_storm_just_started_has_one_empty_bucket() -> None:
    t = StormTracker(heartbeat_interval=1.0, origin=T0, min_losses=2, window=1.0, quiet=5.0)
    t.lost(101.0)
    t.lost(102.0)  # exactly one window later: still inside it
    [series] = t.series()
    assert (series["attempts"], series["in_flight"], series["recovered_pct"]) == ([0], [0], [0.0])
    assert t.tick(102.5) is None  # just started: neither settled nor quiet


def test_a_storm_settles_a_window_after_its_last_loss() -> None:
    t = StormTracker(heartbeat_interval=1.0, origin=T0, min_losses=2, window=1.0, quiet=5.0)
    t.lost(110.0)
    t.lost(110.25)
    t.ready(110.5, 0.01, 110.0)
    t.ready(110.75, 0.01, 110.25)
    t.attempt(110.875, 1)  # a late attempt: activity, but no recovery
    assert t.tick(111.0) is None  # all back, but the last loss was 0.75 s ago
    storm = t.tick(111.25)
    assert storm is not None
    assert t.summaries()[0]["end_s"] == 10.75  # the last recovery, not the last activity


def test_a_give_up_does_not_cancel_a_recovery() -> None:
    t = StormTracker(heartbeat_interval=1.0, origin=T0, min_losses=3, window=1.0, quiet=5.0)
    for x in (110.0, 110.1, 110.2):
        t.lost(x)
    t.ready(110.5, 0.01, 110.0)
    t.ready(110.6, 0.01, 110.1)
    t.gave_up(110.7)
    storm = t.tick(111.25)  # 2 back + 1 gave up = 3 lost: settled
    assert storm is not None
    assert t.summaries()[0]["end_s"] == 10.7


def test_a_storm_that_never_settles_ends_at_its_last_activity() -> None:
    t = StormTracker(heartbeat_interval=1.0, origin=T0, min_losses=2, window=1.0, quiet=5.0)
    t.lost(110.0)
    t.lost(110.1)
    t.failed(112.0, "refused")  # nothing comes back; the last thing seen is a failure
    assert t.tick(116.9) is None
    storm = t.tick(117.0)
    assert storm is not None
    assert t.summaries()[0]["end_s"] == 12.0


def test_sync_index_edges() -> None:
    assert sync_index([1.0, 1.5], 1.0) == pytest.approx(0.0, abs=1e-12)  # two is enough
    assert sync_index([0.25, 0.25], 0.5) == pytest.approx(1.0)
    assert sync_index([1.0, 2.0], 0.0) is None
    assert sync_index([1.0], 1.0) is None


def test_a_workers_storm_log_is_relative_to_the_run_start() -> None:
    log = StormLog(origin=T0)
    assert log.lost(110.0) is None
    log.attempt(110.5, 3)
    log.failed(110.625, "refused")
    log.ready(111.0, 0.25, 110.0)
    log.ready(111.5, 0.3, None)
    log.gave_up(112.0)
    assert log.tick(120.0) is None
    assert log.take() == [
        ["lost", 10.0],
        ["attempt", 10.5, 3],
        ["failed", 10.625, "refused"],
        ["ready", 11.0, 0.25, 10.0],
        ["ready", 11.5, 0.3, None],
        ["gave_up", 12.0],
    ]
    assert log.take() == []


class Services:
    """What StormReplay uses of the parent's services."""

    def __init__(self) -> None:
        self.storms = StormTracker(
            heartbeat_interval=1.0, origin=T0, min_losses=3, window=1.0, quiet=5.0
        )
        self.emitted: list[dict[str, Any]] = []
        self.ticks: list[float] = []

    def emit(self, ev: dict[str, Any]) -> None:
        self.emitted.append(ev)

    def storm_tick(self, now: float) -> None:
        self.ticks.append(now)
        self.storms.tick(now)


def test_replay_keeps_the_order_of_inputs_at_the_same_time() -> None:
    """The third loss starts the storm at 5 s; a connection lost then and back
    at the same instant, reported after it, is the storm's recovery."""
    sv = Services()
    replay = StormReplay(sv, T0)  # type: ignore[arg-type]
    replay.add(0, [["lost", 5.0], ["lost", 5.0]])
    replay.add(1, [["lost", 5.0], ["ready", 5.0, 0.01, 5.0]])
    replay.replay(5.0)  # up to and including 5 s
    storm = sv.storms.current
    assert storm is not None
    assert (storm.lost, storm.recovered) == (3, 1)
    assert sv.emitted == [{"t": 5.0, "event": "storm_start", "storm": 1, "lost": 3}]
    assert sv.ticks == [T0 + 5.0]
    assert replay.horizon == 5.0


def test_replay_adds_up_handshakes_in_flight_per_worker() -> None:
    sv = Services()
    replay = StormReplay(sv, T0)  # type: ignore[arg-type]
    replay.add(0, [["lost", 1.0], ["lost", 1.01], ["lost", 1.02]])
    replay.add(0, [["attempt", 1.1, 2], ["ready", 1.15, 0.01, 1.0]])  # worker 0: 1 left
    replay.add(3, [["ready", 1.16, 0.01, 1.01]])  # worker 3 never said it attempted
    replay.add(1, [["attempt", 1.2, 1], ["failed", 1.3, "refused"], ["gave_up", 1.4]])
    replay.replay(2.0)
    assert replay.in_flight == {0: 1, 3: 0, 1: 1}
    storm = sv.storms.current
    assert storm is not None
    # at 1.2 s: worker 0's 1 left, worker 3's 0, worker 1's 1
    assert storm.in_flight == {1: 2, 2: 2}
    assert storm.failures == {"refused": 1}
    assert storm.last_activity == T0 + 1.4
    assert (storm.recovered, storm.gave_up) == (2, 1)


def test_replay_never_moves_its_horizon_back_or_to_infinity() -> None:
    sv = Services()
    replay = StormReplay(sv, T0)  # type: ignore[arg-type]
    assert replay.horizon == 0.0
    replay.replay(3.0)
    assert replay.horizon == 3.0
    replay.replay(2.0)
    assert replay.horizon == 3.0
    replay.replay(float("inf"))  # the run's end: everything left, horizon kept
    assert replay.horizon == 3.0
