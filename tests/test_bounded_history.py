"""What a run keeps of its past is bounded, whatever its length: a simulated
day of interval records (plain numbers) leaves each history at its bound,
with what went past the bound counted, and the figures made from them the
same as from the whole series."""

from __future__ import annotations

import json
import random
from typing import Any

from soak.facts import MAX_SPANS, Facts, RssFit, rss_growth
from soak.findings import findings
from soak.results.backlog import MAX_LOST_KEPT, Backlog

DAY = 86_400


def record(i: int, dt: float = 1.0, **kw: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "t": dt * i,
        "dt": dt,
        "connected": 100,
        "target": 100,
        "pongs": 100,
        "missed": 0,
        "tester_bottleneck": False,
        "lag_p99_ms": 0.4,
        "rss_bytes": 50_000_000,
    }
    rec.update(kw)
    return rec


def least_squares(points: list[tuple[float, int, int]]) -> tuple[float, float, float]:
    """The reference: the line through every point at the peak target, kept whole."""
    peak = max(p[2] for p in points)
    held = [(t, float(b)) for t, b, target in points if target == peak]
    n = len(held)
    mt = sum(t for t, _ in held) / n
    mb = sum(b for _, b in held) / n
    slope = sum((t - mt) * (b - mb) for t, b in held) / sum((t - mt) ** 2 for t, _ in held)
    t0, t1 = held[0][0], held[-1][0]
    return mb + slope * (t0 - mt), mb + slope * (t1 - mt), t1 - t0


def test_the_rss_line_is_the_least_squares_line_of_the_peak_in_constant_memory() -> None:
    rng = random.Random(5)
    points: list[tuple[float, int, int]] = []
    for i in range(3000):
        # a ramp (targets rising), the hold at 500, a dip to 400 and back
        target = min(500, 10 * (i + 1)) if i < 2000 else (400 if i < 2100 else 500)
        points.append((float(i), 60_000_000 + 300 * i + rng.randint(-50_000, 50_000), target))
    fit = RssFit()
    for p in points:
        fit.add(*p)
    got = fit.growth()
    assert got is not None
    want = least_squares(points)
    assert abs(got[0] - want[0]) < 1.0
    assert abs(got[1] - want[1]) < 1.0
    assert got[2] == want[2]
    assert rss_growth(points) == got
    assert (fit.first, fit.last) == (points[0][1], points[-1][1])
    assert fit.peak == max(b for _, b, _ in points)
    assert fit.n == sum(1 for p in points if p[2] == 500)  # the dip's points are not on it
    # a higher target starts the line again
    fit.add(3000.0, 1, 600)
    assert (fit.n, fit.target, fit.growth()) == (1, 600, None)


def test_a_day_of_intervals_leaves_every_history_at_its_bound() -> None:
    """A day of 10 s records (8,640) in which the tester is the bottleneck
    and a false timeout is seen every other interval (the worst case for
    spans: none touch), RSS climbing 1 KiB a second: the spans kept stop at
    MAX_SPANS, the counts and seconds stay whole, the RSS line is the whole
    day's."""
    n = DAY // 10
    facts = Facts()
    for i in range(n):
        odd = i % 2 == 1
        facts.interval(
            record(
                i,
                dt=10.0,
                tester_bottleneck=odd,
                lag_p99_ms=9.0,
                false_timeouts=1 if odd else 0,
                rss_bytes=100_000_000 + 10 * 1024 * i,
            )
        )
    for spans in (facts.bottleneck, facts.false_timeout_spans):
        assert len(spans.items) == MAX_SPANS
        assert spans.count == n // 2
        assert spans.evicted == n // 2 - MAX_SPANS
        assert spans.seconds == 10 * (n // 2)
        assert spans.items[0] == (10.0, 20.0)
    growth = facts.rss.growth()
    assert growth is not None
    start, end, span = growth
    assert round(end - start) == 10 * 1024 * (n - 1)
    assert span == 10 * (n - 1)
    by_key = {f.key: f for f in findings(facts)}
    tester = by_key["tester_bottleneck"]
    assert tester.count == n // 2
    assert "in 4,320 stretches" in tester.text
    assert len(tester.spans) == MAX_SPANS
    assert len(by_key["false_timeouts"].spans) == MAX_SPANS
    assert by_key["rss_growth"].text.startswith("the tester's memory grew by 88 MB")


def test_touching_spans_merge_even_past_the_bound() -> None:
    facts = Facts()
    for i in range(2 * MAX_SPANS):
        facts.interval(record(i, tester_bottleneck=i % 2 == 0))
    # MAX_SPANS spans kept, the last of them ongoing
    b = facts.bottleneck
    assert (len(b.items), b.count) == (MAX_SPANS, MAX_SPANS)
    for i in range(2 * MAX_SPANS, 2 * MAX_SPANS + 10):
        facts.interval(record(i, tester_bottleneck=True))
    # the next one begins past the bound, then grows: counted once, not kept
    assert (len(b.items), b.count, b.evicted) == (MAX_SPANS, MAX_SPANS + 1, 1)
    assert b.seconds == MAX_SPANS + 10


def chunk_of(record: dict[str, Any]) -> Any:
    def make(events: list[str]) -> dict[str, bytes]:
        return {"events": b"e" * 100 * len(events), "intervals": json.dumps(record).encode()}

    return make


def test_a_long_full_disk_keeps_at_most_max_lost_kept_dropped_intervals() -> None:
    n = 5 * MAX_LOST_KEPT
    b = Backlog(limit=1_000)
    rec: dict[str, Any] = {"events_dropped": 0}
    b.hold(0, 0.0, 1.0, [], rec, chunk_of(rec))
    b.failed(1.0, "No space left on device (ENOSPC)")
    for i in range(1, n):
        r: dict[str, Any] = {"events_dropped": 0, "pad": "p" * 1_000}
        b.hold(i, float(i), i + 1.0, [], r, chunk_of(r))
    assert len(b.lost) == MAX_LOST_KEPT
    assert b.intervals_lost == n - 1
    assert b.counts()["intervals_lost"] == n - 1
    assert b.missing()[1:] == [
        f"intervals 1-{MAX_LOST_KEPT} (1s to {MAX_LOST_KEPT + 1}s into the run): dropped, the "
        "1.0 KiB held in memory was full",
        f"{n - 1 - MAX_LOST_KEPT} later intervals (after interval {MAX_LOST_KEPT}): dropped, "
        f"the 1.0 KiB held in memory was full (the first {MAX_LOST_KEPT:,} dropped are listed)",
    ]
    health = b.health()
    assert health is not None
    assert f"{n - 1} intervals and 0 events dropped" in health
