"""Storm stages that run commands, on real sockets and real processes:
a command's output and exit code are recorded; one that fails or hangs is
recorded (and killed) without breaking the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from soak.gateway import Gateway, GatewayConfig
from soak.recorder import Recorder, now_wall
from soak.run.runner import Runner
from tests.support.runs import make_profile

pytestmark = pytest.mark.process

PROFILE = """
[run]
label = "commands"
report_interval = "1s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 5
duration = "0s"
[[clients.stages]]
kind = "storm"
duration = "500ms"
command = "echo storm-now"
[[clients.stages]]
kind = "storm"
duration = "500ms"
command = "false"
[[clients.stages]]
kind = "storm"
duration = "1s"
command = "sleep 5"
command_timeout = "300ms"
[heartbeat]
interval = "200ms"
timeout = "1s"
"""


async def test_storm_commands_are_recorded(tmp_path: Path) -> None:
    gateway = Gateway(GatewayConfig(host="127.0.0.1", port=0))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            profile = make_profile(PROFILE, url=f"ws://127.0.0.1:{port}/ws", results=tmp_path)
            recorder = Recorder(tmp_path, profile.run.label, now_wall())
            outcome = await Runner(profile, recorder, manage_gc=False).run()
            nursery.cancel_scope.cancel()
    assert outcome.exit_code == 0
    events = [json.loads(x) for x in (recorder.path / "events.jsonl").read_text().splitlines()]
    commands = {e["command"]: e for e in events if e["event"] == "storm_command"}
    assert commands["echo storm-now"]["exit_code"] == 0
    assert commands["echo storm-now"]["stdout"] == "storm-now\n"
    assert commands["false"]["exit_code"] == 1
    assert commands["sleep 5"]["error"] == "timed out after 0.3s and was killed"
    assert commands["sleep 5"]["duration_s"] < 5
    # the clients were not disturbed by any of it
    assert outcome.summary["totals"]["missed"] == 0
    assert outcome.summary["totals"]["closes"] == {"client_shutdown": 5}
