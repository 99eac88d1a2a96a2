"""[impairment] in a profile: soak run puts its proxy between the clients
and the target, and its measurements recover what was injected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio.testing

from soak.config.load import parse_profile
from soak.errors import ProfileError
from soak.gateway import Gateway, GatewayConfig
from soak.gateway.bugs import parse_bugs
from soak.recorder import Recorder, now_wall
from soak.run.runner import Runner
from tests.support.runs import gateway_opener, make_profile, run_in_memory

PROFILE = """
[run]
label = "impaired"
report_interval = "5s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 5
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "{hold}"
[heartbeat]
interval = "1s"
timeout = "2s"
[impairment]
latency = "{latency}"
direction = "down"
"""


async def test_injected_latency_is_measured_exactly(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    profile = make_profile(PROFILE.format(hold="10s", latency="100ms"), results=tmp_path)
    assert profile.impairment is not None
    outcome, path = await run_in_memory(profile, tmp_path, gateway_opener(Gateway(GatewayConfig())))
    rtt = outcome.summary["latency_ms"]["rtt_service"]
    # every pong is held 100 ms on the way back; nothing else takes time here
    assert rtt["min"] == pytest.approx(100.0, rel=0.001)
    assert rtt["max"] == pytest.approx(100.0, rel=0.001)
    assert outcome.summary["totals"]["missed"] == 0
    events = [json.loads(x) for x in (path / "events.jsonl").read_text().splitlines()]
    impairments = [e for e in events if e["event"] == "impairment"]
    assert impairments
    assert {e["impairment"] for e in impairments} == {"latency"}


@pytest.mark.process
async def test_impairment_on_loopback(tmp_path: Path) -> None:
    gateway = Gateway(GatewayConfig(host="127.0.0.1", port=0))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            profile = make_profile(
                PROFILE.format(hold="2s", latency="50ms"),
                url=f"ws://127.0.0.1:{port}/ws",
                results=tmp_path,
            )
            recorder = Recorder(tmp_path, profile.run.label, now_wall())
            outcome = await Runner(profile, recorder, manage_gc=False).run()
            nursery.cancel_scope.cancel()
    tot = outcome.summary["totals"]
    assert tot["connects"] == 5
    assert tot["pongs"] > 0
    # the proxy never delivers a pong sooner than the latency it injects
    assert outcome.summary["latency_ms"]["rtt_service"]["min"] >= 50.0
    # the gateway saw the clients through the proxy
    assert gateway.stats()["accepted_total"] == 5


def test_impairment_section_errors(tmp_path: Path) -> None:
    base = (
        '[target]\nurl = "ws://127.0.0.1:9/ws"\n'
        '[[clients.stages]]\nkind = "hold"\nduration = "1s"\n'
    )
    for snippet, message in [
        ('[impairment]\nlatency = "fast"\n', "impairment.latency: expected a duration"),
        (
            '[impairment]\nbandwidth = "lots"\n',
            'impairment.bandwidth: expected a rate like "100kB"',
        ),
        (
            '[impairment]\ndirection = "sideways"\n',
            "impairment.direction: expected one of up, down, both",
        ),
        (
            "[impairment]\nfraction = 2\n",
            "impairment.fraction: expected a fraction between 0 and 1",
        ),
        (
            '[impairment]\nlatncy = "1s"\n',
            "impairment.latncy: unknown field (did you mean 'latency'?)",
        ),
    ]:
        with pytest.raises(ProfileError) as info:
            parse_profile(base + snippet, "i.toml", {})
        assert message in str(info.value), snippet


DROP_BODY = """
[run]
label = "drop"
report_interval = "10s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 10
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "1m"
[heartbeat]
interval = "10s"
timeout = "5s"
[impairment]
drop_heartbeat = 1
"""

SERVER = 'server_heartbeat = { interval = "10s", timeout = "15s", max_missed = 3 }\n'


@pytest.mark.parametrize("buggy", [False, True])
async def test_dropped_heartbeat_through_the_proxy(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, buggy: bool
) -> None:
    """The fixed gateway keeps every connection when the proxy drops one
    heartbeat; the incident's gateway (ignore-max-missed, timeout 15 s <
    3 x 10 s) closes them, and soak calls those closes false timeouts."""
    gateway = Gateway(
        GatewayConfig(
            hb_interval=10.0,
            hb_timeout=15.0,
            max_missed=3,
            check_every=1.0,
            bugs=parse_bugs(["ignore-max-missed"] if buggy else []),
        )
    )
    profile = make_profile(DROP_BODY, results=tmp_path, target_extra=SERVER)
    outcome, _ = await run_in_memory(profile, tmp_path, gateway_opener(gateway))
    tot = outcome.summary["totals"]
    killed_alive = [
        r for r in gateway.truth if r["reason"] == "heartbeat_timeout" and r["truly_alive"]
    ]
    if not buggy:
        assert tot["closes"] == {"client_shutdown": 10}
        assert tot["false_timeouts"] == 0
        assert killed_alive == []
    else:
        assert len(killed_alive) > 0
        assert tot["false_timeouts"] == len(killed_alive)
        assert tot["justified_timeouts"] == 0


NAT_BODY = """
[run]
label = "nat"
report_interval = "30s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 10
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "4m"
[heartbeat]
interval = "{interval}"
timeout = "5s"
max_missed = 3
[reconnect]
enabled = false
[impairment]
nat_idle = "30s"
"""


@pytest.mark.parametrize(("interval", "zombies"), [("60s", 10), ("20s", 0)])
async def test_nat_idle_timeout_makes_zombies(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, interval: str, zombies: int
) -> None:
    """A NAT forgetting mappings idle for 30 s: with 60 s heartbeats every
    connection goes silent and is found a zombie within max_missed
    intervals; with 20 s heartbeats nothing dies."""
    gateway = Gateway(GatewayConfig(hb_interval=600.0, hb_timeout=3600.0))
    profile = make_profile(NAT_BODY.format(interval=interval), results=tmp_path)
    outcome, path = await run_in_memory(profile, tmp_path, gateway_opener(gateway))
    tot = outcome.summary["totals"]
    assert tot["zombies"] == zombies
    events = [json.loads(x) for x in (path / "events.jsonl").read_text().splitlines()]
    found = [e for e in events if e.get("reason") == "client_zombie"]
    assert len(found) == zombies
    for e in found:
        assert e["detected_after_intervals"] <= 3
    if zombies:
        drops = [e for e in events if e.get("impairment") == "nat_idle_drop"]
        assert len(drops) == zombies
