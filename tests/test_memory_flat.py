"""A long run must not grow: nothing a run makes per interval or per
heartbeat may be left for the (held back) cycle collector to free."""

from __future__ import annotations

import gc
from collections import Counter
from pathlib import Path

import pytest
import trio

from soak.gateway import Gateway, GatewayConfig
from soak.run.runner import Runner
from tests.support.runs import gateway_opener, make_profile, run_in_memory

PROFILE = """
[run]
report_interval = "1s"
[[clients.stages]]
kind = "ramp"
to = 20
duration = "1s"
[[clients.stages]]
kind = "hold"
duration = "60s"
[heartbeat]
interval = "500ms"
timeout = "1s"
"""


@pytest.mark.slow
async def test_intervals_and_heartbeats_leave_no_cyclic_garbage(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    found: Counter[str] = Counter()

    async def watch(runner: Runner) -> None:
        await trio.sleep(10)  # past the ramp and the first intervals
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            await trio.sleep(30)  # 30 intervals, 1,200 heartbeats
            gc.collect()
            found.update(type(o).__name__ for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()

    outcome, _ = await run_in_memory(
        make_profile(PROFILE), tmp_path, gateway_opener(Gateway(GatewayConfig())), watch
    )
    assert outcome.summary["totals"]["pongs"] > 1000
    # each interval's six histograms (~290 KB each with their encoders) were
    # cyclic garbage: RSS grew ~1.7 MB per interval while the collector was held back
    assert found["HdrHistogram"] == 0, found.most_common(10)
    # and whatever else is cyclic stays small and does not scale with the traffic
    assert sum(found.values()) < 100, found.most_common(10)
