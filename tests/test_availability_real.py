"""Availability on real sockets: the reference gateway, a process of its
own, is killed (SIGKILL: no close frames) by a storm stage's command, which
starts a new gateway on the same port. Every client comes back, the run's
availability counts the outage, and the run passes its (lowered)
availability threshold and the default storm recovery."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from soak.childproc import gateway_process
from soak.recorder import Recorder, now_wall
from soak.run.runner import Runner
from tests.support.runs import make_profile

pytestmark = [pytest.mark.process, pytest.mark.slow]

PROFILE = """
[run]
label = "killed"
report_interval = "1s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 20
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "2s"
[[clients.stages]]
kind = "storm"
duration = "10s"
command = {command}
command_timeout = "5s"
[heartbeat]
interval = "500ms"
timeout = "1s"
[reconnect]
jitter = "full"
initial_delay = "500ms"
max_delay = "1s"
max_attempts = 30
[thresholds]
availability = "50%"
"""


def stop_pid(pid: int) -> None:
    """SIGTERM to a process that is not our child, then wait (bounded) for
    it to be gone; SIGKILL if it is not."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    waiter = subprocess.run(
        ["timeout", "20", "sh", "-c", f"while kill -0 {pid} 2>/dev/null; do sleep 0.1; done"],
        check=False,
    )
    if waiter.returncode != 0:
        os.kill(pid, signal.SIGKILL)


async def test_gateway_killed_and_restarted_by_a_storm_command(tmp_path: Path) -> None:
    pid_file = tmp_path / "second.pid"
    with gateway_process() as gw:
        restart = (
            f"kill -KILL {gw.pid}; "
            f"{shlex.quote(sys.executable)} -m soak gateway --host 127.0.0.1 --port {gw.port} "
            f"> {shlex.quote(str(tmp_path / 'second.log'))} 2>&1 & echo $! > "
            f"{shlex.quote(str(pid_file))}"
        )
        body = PROFILE.format(command=json.dumps(restart))
        profile = make_profile(body, url=gw.url, results=tmp_path / "results")
        recorder = Recorder(tmp_path / "results", profile.run.label, now_wall())
        try:
            with trio.fail_after(60):
                outcome = await Runner(profile, recorder, manage_gc=False).run()
        finally:
            if pid_file.exists() and pid_file.read_text().strip():
                stop_pid(int(pid_file.read_text()))
    summary = outcome.summary
    events = [json.loads(x) for x in (recorder.path / "events.jsonl").read_text().splitlines()]
    (command,) = [e for e in events if e["event"] == "storm_command"]
    assert command["exit_code"] == 0, command
    (storm,) = summary["storms"]
    assert storm["lost"] == storm["recovered"] == 20
    av = summary["availability"]
    (figures,) = av["storms"]
    assert figures["recovered_share"] == 1.0
    assert figures["recovery_100_s"] is not None
    assert 0 < figures["recovery_95_s"] <= figures["recovery_100_s"] < 10.0
    assert av["storm_recovery"] == 1.0
    # the outage cost client-seconds: less than all, more than half
    assert 0.5 < av["availability"] < 1.0
    assert av["below"]["longest_s"] >= 1.0
    assert av["target_client_s"] == pytest.approx(20 * 12.0, rel=0.02)
    recs = [json.loads(x) for x in (recorder.path / "intervals.jsonl").read_text().splitlines()]
    assert sum(r["connected_s"] for r in recs) == pytest.approx(av["connected_client_s"], abs=0.1)
    assert summary["exit_code"] == 0, summary["verdict"]
