"""The two implementations of the storm inputs (soak.storm.StormInputs): a
worker's StormLog, replayed by its parent into a tracker, gives the storms
a StormTracker fed directly gives."""

from __future__ import annotations

import json
from typing import Any

from soak.run.merge import StormReplay
from soak.storm import StormInputs, StormLog, StormTracker

T0 = 500.0


class FakeShared:
    """What StormReplay uses of soak.client.Services."""

    def __init__(self) -> None:
        self.storms = StormTracker(heartbeat_interval=10.0, origin=T0)
        self.events: list[dict[str, Any]] = []

    def emit(self, ev: dict[str, Any]) -> None:
        self.events.append(ev)

    def storm_tick(self, now: float) -> None:
        self.storms.tick(now)


def first(inputs: StormInputs) -> None:
    """15 losses at once, retries that fail, recoveries, a client that
    gives up, in time order as the clients report them."""
    for k in range(15):
        inputs.lost(T0 + 20.0 + 0.01 * k)
    for k in range(15):
        inputs.attempt(T0 + 21.0 + 0.02 * k, k + 1)
    for k in range(4):
        inputs.failed(T0 + 21.5 + 0.01 * k, "refused" if k % 2 else "timeout")
    for k in range(14):
        now = T0 + 22.0 + 0.05 * k
        inputs.ready(now, 0.02 + 0.001 * k, T0 + 20.0)
        inputs.tick(now)  # as a client does after each recovery
    inputs.gave_up(T0 + 23.0)
    inputs.ready(T0 + 23.5, 0.01, None)  # a first connection: no storm's


def second(inputs: StormInputs) -> None:
    """12 losses within 0.6 s, and all back."""
    for k in range(12):
        inputs.lost(T0 + 60.0 + 0.05 * k)
    for k in range(12):
        inputs.attempt(T0 + 61.0 + 0.01 * k, 1 + k % 3)
    for k in range(12):
        inputs.ready(T0 + 61.2 + 0.01 * k, 0.05, T0 + 60.0)
        inputs.tick(T0 + 61.2 + 0.01 * k)


def test_a_replayed_log_gives_the_storms_of_the_tracker_fed_directly() -> None:
    # the runner ticks the tracker between the two (at 40 s) and at the end
    direct = StormTracker(heartbeat_interval=10.0, origin=T0)
    first(direct)
    direct.tick(T0 + 40.0)
    second(direct)
    direct.tick(T0 + 100.0)
    log = StormLog(origin=T0)
    first(log)
    second(log)
    assert log.tick(T0 + 100.0) is None  # a log detects nothing
    shared = FakeShared()
    replay = StormReplay(shared, T0)  # type: ignore[arg-type]
    replay.add(0, json.loads(json.dumps(log.take())))  # through JSON, as on the pipe
    assert log.take() == []
    replay.replay(40.0)
    shared.storm_tick(T0 + 40.0)
    replay.replay(100.0)
    shared.storm_tick(T0 + 100.0)
    theirs, ours = direct.summaries(), shared.storms.summaries()
    assert len(theirs) == 2
    assert theirs[0]["lost"] == 15
    assert theirs[0]["gave_up"] == 1
    assert theirs[0]["failures"] == {"refused": 2, "timeout": 2}
    assert theirs[0]["max_in_flight"] == 15
    assert theirs[1]["recovered"] == 12
    assert ours == theirs
    assert shared.storms.series() == direct.series()
    assert [e["event"] for e in shared.events] == ["storm_start", "storm_start"]
    assert replay.horizon == 100.0
