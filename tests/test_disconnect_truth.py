"""Known answers: soak's verdicts against the reference gateway's own
ground truth, with the incident's bugs switched on. All under MockClock over
in-memory streams, so every number is exact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from soak.gateway import Gateway, GatewayConfig
from soak.gateway.bugs import parse_bugs
from soak.run.runner import Outcome
from tests.support.runs import gateway_opener, make_profile, run_in_memory


def profile_body(  # the profile's body, and its [target] extra
    *, clients: int, hold: str, interval: str, timeout: str, server: str, extra: str = ""
) -> tuple[str, str]:
    return (
        f"""
[run]
label = "truth"
report_interval = "30s"
[clients]
[[clients.stages]]
kind = "ramp"
to = {clients}
duration = "0s"
{extra}
[[clients.stages]]
kind = "hold"
duration = "{hold}"
[heartbeat]
interval = "{interval}"
timeout = "{timeout}"
max_missed = 3
[reconnect]
jitter = "none"
initial_delay = "1s"
max_attempts = 0
""",
        server,
    )


async def run(
    body_and_server: tuple[str, str], gateway: Gateway, tmp_path: Path
) -> tuple[Outcome, list[dict[str, Any]]]:
    body, server = body_and_server
    profile = make_profile(body, results=tmp_path, target_extra=server)
    outcome, path = await run_in_memory(profile, tmp_path, gateway_opener(gateway))
    lines = (path / "events.jsonl").read_text().splitlines()
    return outcome, [json.loads(line) for line in lines]


def server_heartbeat(interval: float, timeout: float, max_missed: int = 3) -> str:
    return (
        f'server_heartbeat = {{ interval = "{interval:g}s", timeout = "{timeout:g}s", '
        f"max_missed = {max_missed} }}\n"
    )


@pytest.mark.slow
async def test_fixed_gateway_survives_one_dropped_heartbeat(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The incident's verification: one heartbeat deliberately dropped; the
    fixed server waits for 3 misses, so nobody is closed."""
    gateway = Gateway(
        GatewayConfig(
            hb_interval=30.0,
            hb_timeout=120.0,
            max_missed=3,
            check_every=5.0,
            bugs=parse_bugs(["drop-heartbeat 1"]),
        )
    )
    body = profile_body(
        clients=20,
        hold="10m",
        interval="30s",
        timeout="10s",
        server=server_heartbeat(30, 120),
    )
    outcome, _ = await run(body, gateway, tmp_path)
    tot = outcome.summary["totals"]
    assert tot["false_timeouts"] == 0
    assert tot["closes"] == {"client_shutdown": 20}  # no close but our own at the end
    assert tot["missed"] == 20  # exactly one missed heartbeat per client
    assert tot["zombies"] == 0
    assert gateway.truth == []  # the gateway closed nobody


@pytest.mark.slow
async def test_ignore_max_missed_false_timeouts_match_the_ground_truth(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The 2026.04 handleTimeout (timeout 15 s < 3 x 10 s interval) with one
    heartbeat dropped per connection kills clients that are alive. soak must
    name exactly the ones the gateway's own log says it killed alive."""
    gateway = Gateway(
        GatewayConfig(
            hb_interval=10.0,
            hb_timeout=15.0,
            max_missed=3,
            check_every=1.0,
            bugs=parse_bugs(["ignore-max-missed", "drop-heartbeat 1"]),
        )
    )
    body = profile_body(
        clients=40,
        hold="2m",
        interval="10s",
        timeout="5s",
        server=server_heartbeat(10, 15),
    )
    outcome, events = await run(body, gateway, tmp_path)
    tot = outcome.summary["totals"]
    killed_alive = [
        r for r in gateway.truth if r["reason"] == "heartbeat_timeout" and r["truly_alive"]
    ]
    killed_silent = [
        r for r in gateway.truth if r["reason"] == "heartbeat_timeout" and not r["truly_alive"]
    ]
    assert len(killed_alive) > 10  # the bug bites often enough to mean something
    assert tot["false_timeouts"] == len(killed_alive)
    assert tot["justified_timeouts"] == len(killed_silent) == 0
    false = [e for e in events if e.get("reason") == "false_timeout"]
    assert len(false) == len(killed_alive)
    for e in false:
        assert e["code"] == 4000
        assert e["why"]
        assert e["evidence"]["consecutive_missed"] < 3
    # the same clients, one by one: (client id, close time) on both sides
    ours = sorted((e["client"], round(e["t"], 3)) for e in false)
    theirs = sorted((r["client_id"], round(r["t"], 3)) for r in killed_alive)
    assert ours == theirs
    # the fixed gateway would have let every one of them live
    assert gateway.stats()["false_kills"] == len(killed_alive)


@pytest.mark.slow
async def test_stale_session_kills_are_attributed_to_the_reconnect(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    gateway = Gateway(
        GatewayConfig(
            hb_interval=5.0,
            hb_timeout=15.0,
            max_missed=3,
            check_every=1.0,
            bugs=parse_bugs(["stale-session"]),
        )
    )
    churn = '[[clients.stages]]\nkind = "churn"\nrate = 0.5\nduration = "20s"\n'
    body = profile_body(
        clients=10,
        hold="1m",
        interval="5s",
        timeout="3s",
        server=server_heartbeat(5, 15),
        extra=churn,
    )
    outcome, events = await run(body, gateway, tmp_path)
    tot = outcome.summary["totals"]
    killed_alive = [
        r for r in gateway.truth if r["reason"] == "heartbeat_timeout" and r["truly_alive"]
    ]
    assert len(killed_alive) >= 5
    assert tot["false_timeouts"] == len(killed_alive)
    false = [e for e in events if e.get("reason") == "false_timeout"]
    assert len(false) == len(killed_alive)
    for e in false:
        # the connection was opened by the reconnect after a churn close (or
        # after an earlier false timeout of the same locked-out client), and
        # its own pongs prove it alive
        assert e["previous_close"]["reason"] in ("client_churn", "false_timeout")
        assert e["evidence"]["age_s"] <= 15.0
        assert e["evidence"]["last_pong_age_s"] is not None
        assert e["evidence"]["last_pong_age_s"] < 5.0


@pytest.mark.slow
async def test_no_pong_makes_exactly_the_expected_zombies(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    gateway = Gateway(
        GatewayConfig(
            hb_interval=10.0,
            hb_timeout=120.0,
            max_missed=3,
            check_every=5.0,
            bugs=parse_bugs(["no-pong 0.1"]),
        )
    )
    body = profile_body(
        clients=20,
        hold="50s",
        interval="10s",
        timeout="5s",
        server=server_heartbeat(10, 120),
    )
    outcome, events = await run(body, gateway, tmp_path)
    tot = outcome.summary["totals"]
    assert tot["zombies"] == 2  # connections 10 and 20 of 20
    assert tot["false_timeouts"] == tot["justified_timeouts"] == 0
    assert not any(k.startswith("server_") for k in tot["closes"])
    zombies = [e for e in events if e.get("reason") == "client_zombie"]
    assert len({e["client"] for e in zombies}) == 2  # two different clients
    for e in zombies:
        # 3 misses: pings at p, p+10, p+20 time out at p+25 -> 25 s = 2.5 intervals
        assert e["detected_after_intervals"] == 2.5
        assert e["detected_after_intervals"] <= 3  # within max_missed intervals
