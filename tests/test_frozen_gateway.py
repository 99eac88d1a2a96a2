"""A frozen gateway (issue 24): ``kill -STOP`` on a ``soak gateway`` child
for longer than heartbeat.timeout x max_missed, then ``kill -CONT``. Every
connection is flagged a zombie within max_missed intervals and closed by
soak with its own reason and category, the clients reconnect after CONT,
the storm is measured, and what the gateway does once it runs again (it
may close clients it thinks went silent) is classified."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from soak.childproc import gateway_process
from soak.recorder import Recorder, now_wall
from soak.run.runner import Runner
from tests.support.runs import make_profile

pytestmark = pytest.mark.process

CLIENTS = 50
INTERVAL, TIMEOUT, MAX_MISSED = 1.0, 1.0, 3
FREEZE_AT, FREEZE_FOR = 3.0, 7.0  # longer than TIMEOUT x MAX_MISSED

PROFILE = f"""
[run]
label = "frozen"
report_interval = "1s"
[clients]
max_connecting = 100
[[clients.stages]]
kind = "ramp"
to = {CLIENTS}
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "22s"
[heartbeat]
interval = "{INTERVAL}s"
timeout = "{TIMEOUT}s"
max_missed = {MAX_MISSED}
[reconnect]
jitter = "full"
initial_delay = "500ms"
max_delay = "2s"
max_attempts = 0
"""


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (path / "events.jsonl").read_text().splitlines()]


async def test_a_frozen_gateway(tmp_path: Path) -> None:
    # the gateway's own heartbeat rule: silent for 3 s is dead, checked every 0.5 s
    truth = tmp_path / "truth.jsonl"
    with gateway_process(
        "--hb-interval", "1s", "--hb-timeout", "2s", "--check-every", "0.5s",
        "--truth-log", str(truth),
    ) as gw:  # fmt: skip
        profile = make_profile(
            PROFILE, url=gw.url, results=tmp_path, target_extra='connect_timeout = "2s"\n'
        )
        recorder = Recorder(tmp_path, profile.run.label, now_wall())
        started = trio.Event()
        origin: list[float] = []

        def status(s: dict[str, Any]) -> None:
            # the run's start in trio time: its events' "t" count from there
            if not origin:
                origin.append(trio.current_time() - s["elapsed"])
                started.set()

        runner = Runner(profile, recorder, manage_gc=False, on_status=status, status_every=0.1)
        marks: dict[str, float] = {}

        async def freeze() -> None:
            await started.wait()
            t0 = origin[0]
            await trio.sleep_until(t0 + FREEZE_AT)
            os.kill(gw.pid, signal.SIGSTOP)
            marks["stop"] = trio.current_time() - t0
            try:
                await trio.sleep(FREEZE_FOR)
            finally:
                os.kill(gw.pid, signal.SIGCONT)
            marks["cont"] = trio.current_time() - t0

        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(freeze)
                outcome = await runner.run()
    summary = outcome.summary
    tot = summary["totals"]
    events = read_events(recorder.path)
    closes = [e for e in events if e["event"] == "close"]
    zombies = [e for e in closes if e["reason"] == "client_zombie"]
    # every connection was flagged, by soak, with its own reason and category
    assert tot["zombies"] == CLIENTS, (tot["closes"], marks)
    assert len(zombies) == CLIENTS, closes[:3]
    assert {(e["category"], e["initiator"]) for e in zombies} == {("client", "client")}
    # ... within max_missed intervals of the freeze (the last ping before
    # it, plus max_missed slots, plus the timeout)
    latest = marks["stop"] + (MAX_MISSED + 1) * INTERVAL + TIMEOUT
    # (soak closes a zombie at once, without waiting for the frozen
    # server's close frame: before, each waited 2 s more, counted connected)
    assert all(marks["stop"] < e["t"] <= latest for e in zombies), (
        marks,
        sorted(e["t"] for e in zombies),
    )
    assert all(e["t"] < marks["cont"] for e in zombies)
    # back after CONT: every client connected at the end, none gave up
    assert tot["reconnect_failed"] == 0
    last = [json.loads(x) for x in (recorder.path / "intervals.jsonl").read_text().splitlines()]
    assert last[-2]["connected"] == CLIENTS, last[-2]
    # the storm: every connection lost in one, every one recovered
    (storm,) = summary["storms"]
    assert storm["lost"] >= CLIENTS
    assert storm["recovered"] == storm["lost"]
    assert storm["recovery_s"]["p100"] is not None
    # what the gateway did after CONT is classified: no close without a category
    assert "unknown" not in tot["closes_by_category"], tot["closes_by_category"]
    # the gateway's own reaction once it runs again, from its truth log: its
    # heartbeat check wakes 7 s late and is skipped (soak.gateway.server:
    # it was the gateway that was silent), the connections are read first,
    # and it kills no one. Before that guard it timed out every connection
    # it had not yet read, some of them truly alive (a false kill).
    gateway = [json.loads(x) for x in truth.read_text().splitlines()]
    timed_out = [r for r in gateway if r["reason"] == "heartbeat_timeout"]
    assert timed_out == []
    # and soak saw only its own closes: the zombies and the end of the run
    assert set(tot["closes_by_category"]) == {"client"}, tot["closes"]
    assert set(tot["closes"]) == {"client_zombie", "client_shutdown"}
    # the reconnects the frozen gateway could not answer are named
    assert set(tot["handshake_failures"]) <= {"timeout"}
    assert storm["failures"] == tot["handshake_failures"]
