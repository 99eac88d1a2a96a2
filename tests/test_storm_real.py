"""Storms on real sockets: a gateway restart asked for over its admin
endpoint, and one caused by a command (SIGUSR2) against a gateway process
the test starts itself. Every client must come back, and the numbers must
add up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from soak.childproc import gateway_process
from soak.gateway import Gateway, GatewayConfig
from soak.recorder import Recorder, now_wall
from soak.run.runner import Runner
from tests.support.runs import gateway_opener, make_profile, run_in_memory

PROFILE = """
[run]
label = "restart"
report_interval = "1s"
[clients]
max_connecting = 200
[[clients.stages]]
kind = "ramp"
to = {clients}
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "{hold}"
[[clients.stages]]
kind = "storm"
duration = "{storm}"
{action}
[heartbeat]
interval = "1s"
timeout = "1s"
[reconnect]
jitter = "full"
initial_delay = "500ms"
max_delay = "2s"
max_attempts = 10
"""


def check_storm(summary: dict[str, Any], clients: int, deadline: float) -> dict[str, Any]:
    storms = summary["storms"]
    assert isinstance(storms, list)
    (storm,) = storms
    assert storm["lost"] == clients
    assert storm["recovered"] == clients  # every client back
    assert storm["gave_up"] == 0
    recovery = storm["recovery_s"]
    assert recovery["p100"] is not None
    assert recovery["p100"] <= deadline
    return dict(storm)


@pytest.mark.process
async def test_restart_through_the_admin_endpoint(tmp_path: Path) -> None:
    gateway = Gateway(GatewayConfig(host="127.0.0.1", port=0))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            action = f'restart_url = "http://127.0.0.1:{port}/admin/restart?outage=1"'
            # 1,000 clients and the gateway share this process and real time:
            # the hold leaves time for 1,000 handshakes and the storm stage for
            # every client to come back even on a busy machine (how fast they
            # come back is the MockClock tests' business, not a timed test's)
            body = PROFILE.format(clients=1000, hold="6s", storm="15s", action=action)
            profile = make_profile(body, url=f"ws://127.0.0.1:{port}/ws", results=tmp_path)
            recorder = Recorder(tmp_path, profile.run.label, now_wall())
            outcome = await Runner(profile, recorder, manage_gc=False).run()
            nursery.cancel_scope.cancel()
    storm = check_storm(outcome.summary, 1000, deadline=15.0)
    # seconds since the run started: the storm stage at 6 s
    assert 6.0 <= storm["start_s"] < 8.0
    # the counts add up: what was lost came back, once each
    tot = outcome.summary["totals"]
    assert tot["closes"]["server_1012_service_restart"] == 1000
    assert tot["reconnects"] == 1000
    assert storm["failures"] == tot["handshake_failures"]  # all failures were in the storm
    assert gateway.stats()["restarts"] == 1
    events = [json.loads(x) for x in (recorder.path / "events.jsonl").read_text().splitlines()]
    (restart,) = [e for e in events if e["event"] == "storm_restart"]
    assert restart["response"]["connections_closed"] == 1000
    series = json.loads((recorder.path / "storms.jsonl").read_text())
    assert sum(series["attempts"]) == storm["attempts"]
    assert series["recovered_pct"][-1] == 100.0


@pytest.mark.process
async def test_command_storm_against_a_gateway_process(tmp_path: Path) -> None:
    with gateway_process("--restart-outage", "1s") as gw:
        action = f'command = "kill -USR2 {gw.pid}"'
        body = PROFILE.format(clients=100, hold="3s", storm="5s", action=action)
        profile = make_profile(body, url=gw.url, results=tmp_path)
        recorder = Recorder(tmp_path, profile.run.label, now_wall())
        with trio.fail_after(60):
            outcome = await Runner(profile, recorder, manage_gc=False).run()
    check_storm(outcome.summary, 100, deadline=5.0)
    events = [json.loads(x) for x in (recorder.path / "events.jsonl").read_text().splitlines()]
    (command,) = [e for e in events if e["event"] == "storm_command"]
    assert command["exit_code"] == 0


@pytest.mark.slow
async def test_the_incidents_check_reconnected_within_5s(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """After a disconnect, the default policy (1 s initial delay, full
    jitter) has the client back within 5 s."""
    gateway = Gateway(GatewayConfig())
    body = """
[run]
label = "incident-check"
[clients]
[[clients.stages]]
kind = "ramp"
to = 50
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "2s"
[[clients.stages]]
kind = "storm"
duration = "10s"
drop = "100%"
how = "abrupt"
[heartbeat]
interval = "5s"
"""
    profile = make_profile(body, results=tmp_path)
    assert profile.reconnect.jitter == "full"  # the default policy
    outcome, _ = await run_in_memory(profile, tmp_path, gateway_opener(gateway))
    reconnect = outcome.summary["latency_ms"]["reconnect"]
    assert reconnect["count"] == 50
    assert reconnect["max"] < 5000
    assert outcome.summary["storms"][0]["recovered"] == 50
