"""The Runner drives any load source (soak.run.source.LoadSource): a third
one, standing for shards on other machines that report tallies in their
wire form, needs no change to the Runner."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from soak.config.stages import Storm
from soak.metrics import Interval, Tally
from soak.recorder import Recorder
from soak.run.runner import Runner
from soak.run.source import LoadSource, RunContext
from tests.support.runs import WALL0, make_profile

PROFILE = """
[run]
label = "shards"
report_interval = "1s"
[[clients.stages]]
kind = "hold"
duration = "3500ms"
"""


class Shards:
    """Two remote shards: each interval, each reports 10 pongs and 1 churn
    close in the tally's wire form."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.reports = 0
        self._run: RunContext | None = None

    @property
    def run(self) -> RunContext:
        assert self._run is not None
        return self._run

    def manifest(self) -> dict[str, Any]:
        return {"shards": 2}

    async def start(self, run: RunContext, nursery: trio.Nursery) -> None:
        self.calls.append("start")
        self._run = run

    async def drive(self, control: Callable[[], Awaitable[str]]) -> None:
        self.calls.append("drive")
        status = await control()
        self.calls.append(f"control returned {status}")

    def follow(self, t: float) -> None:
        pass

    def storm(self, stage: Storm) -> None:
        pass

    def over(self) -> str | None:
        return None

    def storm_tick(self, now: float) -> None:
        self.run.shared.services.storm_tick(now)

    async def gather(self, at: float) -> None:
        report = Tally()
        report.counts["pongs"] = 10
        report.closes["churn"] = 1
        report.closes_by_code["1000"] = 1
        report.closes_by_category["tester"] = 1
        report.hist["rtt"].record_value(2000)
        wire = json.loads(json.dumps(report.to_wire()))  # as off the network
        for _ in range(2):
            self.run.metrics.current.absorb(wire)
            self.reports += 1

    def gauges(self, iv: Interval) -> None:
        iv.connected = iv.target = 40

    def rotated(self) -> None:
        pass

    def status(self, elapsed: float) -> dict[str, Any]:
        return {}

    def abort(self) -> None:
        pass

    def reap(self) -> None:
        self.calls.append("reap")

    def protocol_summary(self) -> dict[str, Any] | None:
        return None

    def checks(self) -> list[dict[str, Any]]:
        return []

    def summary(self) -> dict[str, Any]:
        return {"shards": {"count": 2, "reports": self.reports}}


async def test_a_third_source_runs_without_a_change_to_the_runner(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    shards = Shards()
    source: LoadSource = shards
    recorder = Recorder(tmp_path, "shards", WALL0)
    runner = Runner(make_profile(PROFILE), recorder, source=source, lag_probe=None, manage_gc=False)
    outcome = await runner.run()
    assert shards.calls == ["start", "drive", "control returned running", "reap"]
    summary = outcome.summary
    assert outcome.status == "completed"
    assert summary["shards"] == {"count": 2, "reports": 6}  # 2 shards x 3 boundaries
    tot = summary["totals"]
    assert tot["pongs"] == 60
    assert tot["closes"] == {"churn": 6}
    assert summary["latency_ms"]["rtt"]["count"] == 6
    lines = (recorder.path / "intervals.jsonl").read_text().splitlines()
    intervals = [json.loads(x) for x in lines]
    assert [iv["pongs"] for iv in intervals] == [20, 20, 20, 0]
    assert [iv["connected"] for iv in intervals] == [40] * 4
    manifest = json.loads((recorder.path / "run.json").read_text())
    assert manifest["shards"] == 2
    assert manifest["status"] == "completed"
