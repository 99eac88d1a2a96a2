"""[impairment] in a profile: soak run puts its proxy between the clients
and the target, and its measurements recover what was injected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio.testing

from soak.errors import ProfileError
from soak.gateway import Gateway, GatewayConfig
from soak.profile import parse_profile
from soak.recorder import Recorder, now_wall
from soak.runner import Runner
from tests.conftest import gateway_opener, make_profile, run_in_memory

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
