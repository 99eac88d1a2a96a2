"""The storm acceptance test: 1,000 clients, a gateway restart with a 5 s
outage, under MockClock. Without jitter the reconnect attempts come in
lockstep at 1, 3 and 7 s after the restart (delays 1, 2, 4 s); with full
jitter the peak attempt rate is at least 3 times lower."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from soak.gateway import Gateway, GatewayConfig
from soak.run.runner import Outcome, Runner
from tests.support.runs import Opener, make_profile, memory_opener, run_in_memory

RESTART_AT = 10.0
OUTAGE = 5.0

PROFILE = """
[run]
label = "storm"
report_interval = "10s"
[clients]
max_connecting = 1000
[[clients.stages]]
kind = "ramp"
to = 1000
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "40s"
[heartbeat]
interval = "30s"
timeout = "10s"
[reconnect]
jitter = "{jitter}"
initial_delay = "1s"
base = 2.0
max_attempts = 5
"""


async def storm_run(tmp_path: Path, jitter: str) -> tuple[Outcome, Path, Gateway]:
    gateway = Gateway(GatewayConfig(hb_interval=30.0, hb_timeout=120.0, check_every=5.0))

    def make(nursery: trio.Nursery) -> Opener:
        nursery.start_soon(gateway.run_checker)
        inner = memory_opener(gateway, nursery)

        async def open_stream() -> trio.abc.Stream:
            if gateway.refusing(trio.current_time()):
                raise ConnectionRefusedError(111, "Connection refused")  # the port is closed
            return await inner()

        return open_stream

    async def restart(runner: Runner) -> None:
        await trio.sleep(RESTART_AT)
        gateway.restart(OUTAGE)

    profile = make_profile(PROFILE.format(jitter=jitter), results=tmp_path)
    outcome, path = await run_in_memory(profile, tmp_path, make, during=restart)
    return outcome, path, gateway


def storm_series(path: Path) -> dict[str, Any]:
    (line,) = (path / "storms.jsonl").read_text().splitlines()
    series: dict[str, Any] = json.loads(line)
    return series


@pytest.mark.slow
async def test_no_jitter_reconnects_in_lockstep(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, path, _ = await storm_run(tmp_path, "none")
    (storm,) = outcome.summary["storms"]
    assert storm["start_s"] == RESTART_AT
    assert storm["lost"] == storm["recovered"] == 1000
    assert storm["gave_up"] == 0
    # refused at +1 s and +3 s (the outage lasts 5 s), accepted at +7 s
    assert storm["failures"] == {"refused": 2000}
    assert storm["attempts"] == 3000
    assert storm["peak_attempts_per_100ms"] == 1000
    series = storm_series(path)
    busy = {b: n for b, n in enumerate(series["attempts"]) if n}
    assert busy == {10: 1000, 30: 1000, 70: 1000}  # 1, 3 and 7 s: gaps of 1, 2 and 4 s
    assert storm["recovery_s"]["p100"] == pytest.approx(7.0, abs=0.01)
    assert series["recovered_pct"][-1] == 100.0
    # the whole crowd reconnected at one instant: heartbeat phases bunched
    assert storm["sync_index_after"] == pytest.approx(1.0)
    tot = outcome.summary["totals"]
    assert tot["closes"]["server_1012_service_restart"] == 1000
    events = [json.loads(x) for x in (path / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds.count("storm_start") == kinds.count("storm_end") == 1


@pytest.mark.slow
async def test_full_jitter_flattens_the_peak(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    none_outcome, _, _ = await storm_run(tmp_path / "none", "none")
    full_outcome, _, _ = await storm_run(tmp_path / "full", "full")
    (lockstep,) = none_outcome.summary["storms"]
    (jittered,) = full_outcome.summary["storms"]
    # full jitter can spend all 5 attempts inside the outage: those give up
    assert jittered["lost"] == jittered["recovered"] + jittered["gave_up"] == 1000
    assert jittered["peak_attempts_per_100ms"] * 3 <= lockstep["peak_attempts_per_100ms"]
    # spread over a few seconds of a 30 s heartbeat circle: less bunched, not spread
    assert jittered["sync_index_after"] < lockstep["sync_index_after"]


STORM_STAGE = """
[run]
label = "drop"
report_interval = "10s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 40
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "5s"
[[clients.stages]]
kind = "storm"
duration = "20s"
drop = "50%"
how = "{how}"
[heartbeat]
interval = "30s"
timeout = "10s"
[reconnect]
jitter = "none"
initial_delay = "1s"
"""


@pytest.mark.parametrize(
    ("storms", "detected"),
    [
        ("", 1),  # 20 losses in one instant: a storm by the default (10 in 1 s)
        ("[storms]\nmin_losses = 21\n", 0),  # more than were lost
        ('[storms]\nmin_losses = 20\nwindow = "100ms"\nquiet = "30s"\n', 1),
    ],
)
@pytest.mark.slow
async def test_storm_detection_follows_the_profile(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, storms: str, detected: int
) -> None:
    gateway = Gateway(GatewayConfig())

    def make(nursery: trio.Nursery) -> Opener:
        return memory_opener(gateway, nursery)

    profile = make_profile(STORM_STAGE.format(how="clean") + storms, results=tmp_path)
    outcome, _ = await run_in_memory(profile, tmp_path, make)
    assert outcome.summary["totals"]["closes"]["client_storm_drop"] == 20
    assert len(outcome.summary["storms"]) == detected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("min_losses = 1", "storms.min_losses: expected a whole number >= 2, got 1"),
        ('window = "0s"', "storms.window: expected a duration"),
        ('quite = "5s"', "storms.quite: unknown field (did you mean 'quiet'?)"),
    ],
)
def test_storm_detection_bad_input(body: str, message: str) -> None:
    from soak.errors import ProfileError

    with pytest.raises(ProfileError, match=re.escape(message)):
        make_profile(STORM_STAGE.format(how="clean") + "[storms]\n" + body + "\n")


@pytest.mark.parametrize("how", ["clean", "abrupt"])
@pytest.mark.slow
async def test_storm_stage_drops_half_the_clients(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, how: str
) -> None:
    gateway = Gateway(GatewayConfig())

    def make(nursery: trio.Nursery) -> Opener:
        nursery.start_soon(gateway.run_checker)
        return memory_opener(gateway, nursery)

    profile = make_profile(STORM_STAGE.format(how=how), results=tmp_path)
    outcome, path = await run_in_memory(profile, tmp_path, make)
    tot = outcome.summary["totals"]
    key = "client_storm_drop" if how == "clean" else "client_storm_reset"
    assert tot["closes"][key] == 20
    (storm,) = outcome.summary["storms"]
    assert storm["start_s"] == 5.0
    assert storm["lost"] == storm["recovered"] == 20
    assert storm["recovery_s"]["p100"] == pytest.approx(1.0, abs=0.01)  # 1 s backoff, no jitter
    assert tot["reconnects"] == 20
    stage_events = [
        json.loads(x)
        for x in (path / "events.jsonl").read_text().splitlines()
        if '"storm_stage"' in x
    ]
    assert stage_events[0]["t"] == 5.0
    assert stage_events[0]["drop"] == 0.5
