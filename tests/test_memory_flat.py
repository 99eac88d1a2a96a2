"""A long run must not grow: nothing a run makes per interval or per
heartbeat may be left for the (held back) cycle collector to free."""

from __future__ import annotations

import gc
import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest
import trio
from hdrh.histogram import HdrHistogram

from soak.gateway import Gateway, GatewayConfig
from soak.metrics import (
    HIGHEST_US,
    Metrics,
    Tally,
    decode_histogram,
    encode_histogram,
    new_histogram,
    reset_histogram,
)
from soak.results import hlog
from soak.run.runner import Runner
from soak.run.sinks import Channel
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


def _array_types() -> int:
    """ctypes array types alive (cyclic objects: only the collector frees them)."""
    return sum(1 for o in gc.get_objects() if type(o).__name__ == "PyCArrayType")


def _histograms(n: int) -> list[HdrHistogram]:
    """``n`` histograms, each with its own largest value (so each would need
    hdrh's encoder to make a varint buffer of its own length)."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        h = new_histogram()
        for _ in range(50):
            h.record_value(rng.randint(1, 5_000))
        h.record_value(10_000 + 997 * i)  # a distinct maximum
        out.append(h)
    return out


def test_encode_histogram_is_hdrh_encode_byte_for_byte() -> None:
    rng = random.Random(3)
    shapes = [0, 1, 2, 50, 3000]
    for trial in range(60):
        h = new_histogram()
        for _ in range(shapes[trial % len(shapes)]):
            h.record_value(int(rng.lognormvariate(rng.uniform(0, 18), 2)) % HIGHEST_US + 1)
        if trial == 7:
            h.record_value(HIGHEST_US)  # the largest value there is
        assert encode_histogram(h) == h.encode(), trial
        back = decode_histogram(encode_histogram(h))
        assert back.get_total_count() == h.get_total_count()
        assert back.get_max_value() == h.get_max_value()
        assert encode_histogram(back) == back.encode(), trial


def test_encoding_an_interval_makes_no_ctypes_type_for_the_collector() -> None:
    """hdrh's own encode makes a ctypes array type per distinct length (~3 KB
    of cyclic objects each); soak's makes none, through both of the paths a
    run encodes on (the .hlog line, a worker's wire form)."""
    hists = _histograms(40)
    gc.collect()
    gc.disable()
    try:
        before = _array_types()
        for h in hists:
            hlog.line(0.0, 1.0, h)
            t = Tally()
            t.hist["rtt"] = h
            t.to_wire()
        assert _array_types() - before <= 1  # at most the one reused buffer, once
        # the test can tell: hdrh's encoder leaves one type per histogram
        for h in hists:
            h.encode()
        assert _array_types() - before >= len(hists)
    finally:
        gc.enable()
        gc.collect()


def test_a_reset_histogram_is_a_new_one() -> None:
    rng = random.Random(11)
    h = new_histogram()
    for _ in range(500):
        h.record_value(rng.randint(1, HIGHEST_US))
    reset_histogram(h)
    fresh = new_histogram()
    assert encode_histogram(h) == encode_histogram(fresh)
    skip = {"encoder", "counts"}
    assert {k: v for k, v in vars(h).items() if k not in skip} == {
        k: v for k, v in vars(fresh).items() if k not in skip
    }
    assert not any(h.counts)
    values = [rng.randint(1, 10_000_000) for _ in range(300)]
    for v in values:
        h.record_value(v)
        fresh.record_value(v)
    assert encode_histogram(h) == encode_histogram(fresh)
    assert h.get_percentile_to_value_dict([50.0, 99.0]) == fresh.get_percentile_to_value_dict(
        [50.0, 99.0]
    )


def test_recycled_intervals_alternate_two_sets_of_histograms_and_carry_nothing_over() -> None:
    m = Metrics()
    seen: set[int] = set()
    for i in range(50):
        seen.add(id(m.current.hist["rtt"]))
        for _ in range(i + 1):  # interval i: i + 1 samples of (i + 1) ms
            m.record("rtt", (i + 1) / 1000)
        done = m.rotate(float(i + 1))
        h = done.hist["rtt"]
        assert h.get_total_count() == i + 1  # nothing from two intervals before
        alone = new_histogram()
        alone.record_value((i + 1) * 1000)
        assert (h.get_min_value(), h.get_max_value()) == (
            alone.get_min_value(),
            alone.get_max_value(),
        )
        assert done.record({})["rtt_count"] == i + 1
        m.recycle(done)
        assert done.hist == {}
        m.recycle(done)  # twice, or the current interval: nothing happens
        m.recycle(m.current)
    assert len(seen) == 2  # after the first two, no interval allocated histograms
    assert m.total.hist["rtt"].get_total_count() == sum(range(1, 51))


def test_no_path_of_a_run_calls_hdrh_encode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The .hlog line, a worker's interval and its once-a-second status all
    encode through encode_histogram."""

    def refuse(self: HdrHistogram) -> bytes:
        raise AssertionError("HdrHistogram.encode called")

    h = _histograms(1)[0]
    want = h.encode()
    monkeypatch.setattr(HdrHistogram, "encode", refuse)
    hlog.line(0.0, 1.0, h)
    t = Tally()
    t.hist["rtt"] = h
    assert t.to_wire()["hist"]["rtt"] == want.decode("ascii")
    r, w = os.pipe()
    try:
        channel = Channel(w, 0.0)
        channel.metrics = Metrics()
        channel.metrics.current.hist["rtt"] = h
        channel.status({})
        msg = json.loads(os.read(r, 1 << 20))
    finally:
        os.close(r)
        os.close(w)
    assert msg["status"]["rtt_hist"] == want.decode("ascii")
