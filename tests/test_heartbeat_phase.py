"""Where each client's heartbeat grid starts: ``phase = "connect"`` starts
it when the connection is ready (as a browser's timer does), so clients
that connect at different moments heartbeat at different phases, and those
that reconnect together after a storm heartbeat together."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import pytest
import trio
import trio.testing

from soak.gateway import Gateway, GatewayConfig
from tests.support.runs import Opener, make_profile, run_in_memory

PROFILE = """
[run]
report_interval = "10s"
[[clients.stages]]
kind = "ramp"
to = 4
duration = "4s"
[[clients.stages]]
kind = "hold"
duration = "20s"
[heartbeat]
interval = "5s"
timeout = "2s"
phase = "{phase}"
"""


class Recording(trio.abc.Stream):
    """The client's end of an in-memory connection, noting when it sends."""

    def __init__(self, inner: trio.abc.Stream, sends: list[float]) -> None:
        self.inner = inner
        self.sends = sends

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sends.append(trio.current_time())
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("phase", ["connect", "aligned"])
async def test_connect_phase_starts_each_grid_at_its_connection(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, phase: str
) -> None:
    gateway = Gateway(GatewayConfig())
    sends: dict[int, list[float]] = defaultdict(list)
    t0 = trio.current_time()

    def make(nursery: trio.Nursery) -> Opener:
        async def open_stream() -> trio.abc.Stream:
            client_side, server_side = trio.testing.memory_stream_pair()
            nursery.start_soon(gateway.handle_stream, server_side)
            return Recording(client_side, sends[len(sends)])

        return open_stream

    outcome, _ = await run_in_memory(make_profile(PROFILE.format(phase=phase)), tmp_path, make)
    assert outcome.summary["totals"]["missed"] == 0
    assert len(sends) == 4
    phases = set()
    for times in sends.values():
        # the upgrade request first, then the pings, then the close
        upgrade, pings = times[0] - t0, [t - t0 for t in times[1:-1]]
        assert len(pings) >= 4
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert gaps == pytest.approx([5.0] * len(gaps), abs=0.01)
        if phase == "connect":
            assert pings[0] == pytest.approx(upgrade, abs=0.01)  # at once, then every 5 s
        phases.add(round(pings[0] % 5.0, 2))
    # clients connected 1 s apart: four phases; aligned: one
    assert len(phases) == (4 if phase == "connect" else 1)
