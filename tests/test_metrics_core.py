"""The run's numbers as soak.metrics keeps them: seconds to microseconds,
the summary percentiles, the run's availability stretch, totals read back
from intervals.jsonl. Pure."""

from __future__ import annotations

from typing import Any

from soak.metrics import (
    COUNTERS,
    Interval,
    Metrics,
    new_histogram,
    percentiles_ms,
    read_totals,
    to_us,
)


def test_seconds_become_whole_microseconds_rounded_to_the_nearest() -> None:
    assert to_us(2.0) == 2_000_000
    assert to_us(0.9) == 900_000
    assert to_us(0.0015) == 1_500
    assert to_us(0.0000004) == 0  # 0.4 us
    assert to_us(0.0000006) == 1  # 0.6 us
    # a clock that stepped back gives no negative latency
    assert to_us(0.0) == 0
    assert to_us(-0.25) == 0


def test_the_summary_percentiles_are_each_their_own_quantile() -> None:
    """1..10,000 ms, one sample each: p50 is ~5 s, p90 ~9 s, p99 ~9.9 s,
    p99.9 ~9.99 s, p99.99 ~10 s (the histogram keeps 3 significant digits)."""
    h = new_histogram()
    for ms in range(1, 10_001):
        h.record_value(ms * 1000)
    p = percentiles_ms(h)
    assert p["count"] == 10_000
    assert p["min"] == 1.0
    for key, q in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)):
        assert p[key] == h.get_value_at_percentile(q) / 1000.0
        assert abs(p[key] - q * 100.0) <= q * 100.0 * 0.002, key
    assert p["p99.99"] == h.get_value_at_percentile(99.99) / 1000.0
    assert p["p50"] < p["p90"] < p["p99"] < p["p99.9"]
    assert p["max"] >= 10_000.0
    assert percentiles_ms(new_histogram()) == {
        "count": 0,
        "min": None,
        "mean": None,
        "p50": None,
        "p90": None,
        "p99": None,
        "p99.9": None,
        "p99.99": None,
        "max": None,
    }


def test_the_longest_stretch_below_the_availability_share_is_in_seconds() -> None:
    """Three intervals of 2 s, 2 s and 1 s with nobody connected: a 5 s
    stretch from 10 s (the intervals' lengths, not their start times)."""
    m = Metrics(start=10.0)
    for end in (12.0, 14.0, 15.0):
        m.current.target_s = 10.0
        m.rotate(end)
    assert m.availability.stretch()["longest_s"] == 5.0
    assert m.availability.stretch()["from_s"] == 10.0


def test_totals_read_back_leave_out_counters_no_record_holds_when_asked() -> None:
    records: list[dict[str, Any]] = [
        {"pongs": 3, "missed": 1},
        {"pongs": 4, "late": "x"},
        {"pongs": True},
    ]
    tot = read_totals(records, missing=None)
    assert (tot["pongs"], tot["missed"]) == (7, 1)
    assert "late" not in tot
    assert "zombies" not in tot
    zero = read_totals(records)
    assert (zero["pongs"], zero["late"]) == (7, 0)
    assert all(k in zero for k in COUNTERS)


def test_an_intervals_line_gives_its_times_to_the_millisecond() -> None:
    iv = Interval(2, 10.00049)
    iv.end = 11.00151
    iv.connected_s, iv.target_s = 1.23456, 2.46912
    iv.gc_pause_max, iv.gc_pause_total = 0.0012345, 0.0023456
    rec = iv.record({})
    assert (rec["i"], rec["t"], rec["dt"]) == (2, 10.0, 1.001)
    assert (rec["connected_s"], rec["target_s"]) == (1.235, 2.469)
    assert rec["availability"] == 0.5
    assert (rec["gc_pause_max_ms"], rec["gc_pause_total_ms"]) == (1.234, 2.346)


def test_a_sample_that_cannot_be_trusted_is_counted_as_dropped() -> None:
    m = Metrics()
    m.unrecorded("rtt_wire")
    m.unrecorded("rtt_wire")
    assert m.current.dropped_samples == {"rtt_wire": 2}
    assert m.current.hist["rtt_wire"].get_total_count() == 0
