"""Control of the garbage collector, for the tester and the reference gateway.

docs/calibration.md found the collector to be the main source of false latency:
with default settings a full collection over thousands of connections'
objects stalls the event loop for hundreds of milliseconds, and every
heartbeat in flight then looks slow. So: raise the young-generation
threshold (collections become rare), freeze long-lived objects out of the
collector's sight as the connection count grows (collections stay short),
and time every collection that still happens, so it shows up as what it is.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

GC_THRESHOLD0 = 50_000  # allocations between young collections (default 700)


class GcControl:
    """Keep collections rare and short, and time every one of them."""

    def __init__(self, on_pause: Callable[[float], None]) -> None:
        self._on_pause = on_pause
        self._started = 0.0
        self._old = gc.get_threshold()
        self._was_enabled = gc.isenabled()

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._on_pause(time.perf_counter() - self._started)

    def __enter__(self) -> GcControl:
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD0, self._old[1], self._old[2])
        gc.callbacks.append(self._callback)
        return self

    def checkpoint(self) -> None:
        """The load is settled: move every object out of the collector's
        sight, so later collections stay short.

        No ``gc.collect()`` first: with thousands of freshly connected
        clients it walks every young object and stalls the event loop for
        hundreds of milliseconds (measured: 445 ms at 19,000 clients), in the
        middle of the heartbeats it is supposed to protect. Freezing costs
        next to nothing. Reference counting still frees all acyclic garbage;
        only cycles that exist right now stay until the run ends."""
        gc.freeze()

    def quiet(self) -> None:
        """No collections from here on (the shutdown: thousands of closes
        allocate quickly and would otherwise trigger full collections while
        the last interval is still being measured)."""
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        gc.set_threshold(*self._old)
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()


class GrowthFreezer:
    """Freezes whenever the connection count has grown by ``step`` since the
    last freeze, so the objects of new connections never pile up into one
    long full collection. Measured without it (19,000 connections): full
    collections of 138-530 ms, each a spike in every heartbeat's RTT."""

    def __init__(self, control: GcControl, step: int = 1000) -> None:
        self.control = control
        self.step = step
        self.frozen_at = 0

    def observe(self, connections: int) -> None:
        if connections >= self.frozen_at + self.step:
            self.control.checkpoint()
            self.frozen_at = connections
        elif connections < self.frozen_at:
            self.frozen_at = connections  # clients left; count growth from here
