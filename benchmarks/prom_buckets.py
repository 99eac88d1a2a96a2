"""How far a p99 computed by Prometheus from soak's live histogram buckets
(``histogram_quantile`` over ``soak_heartbeat_rtt_seconds_bucket``) can be
from the HdrHistogram's own p99, with soak's bucket layout (soak.prom:
x1.25 geometric from 0.1 ms to 120 s, plus the profile's latency thresholds).

Samples from a few RTT shapes go into one HdrHistogram, the buckets are
derived exactly as ``/metrics`` derives them (soak.prom.cumulative), and
the quantile is computed as Prometheus computes it (linear interpolation
inside the bucket that holds the rank; promql/quantile.go)::

    .venv/bin/python benchmarks/prom_buckets.py          # ~10 s, one core

It also times what ``/metrics`` costs the run (one interval's update, one
scrape). Pure computation, no sockets. The error is bounded by the bucket width: at
most +25% or -20% of the bucket that holds the quantile, whatever the shape.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable

from soak.config.load import parse_profile
from soak.metrics import Interval, new_histogram
from soak.prom import LOWEST_S, LiveMetrics, buckets, cumulative


def histogram_quantile(q: float, bounds: list[float], below: list[int], total: int) -> float:
    """Prometheus' histogram_quantile for classic buckets (upper bounds
    ``bounds`` in seconds, cumulative counts ``below``, ``total`` in +Inf)."""
    rank = q * total
    prev_bound, prev_count = 0.0, 0
    for bound, count in zip(bounds, below, strict=True):
        if count >= rank:
            inside = count - prev_count
            if inside == 0:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / inside
        prev_bound, prev_count = bound, count
    return bounds[-1]  # the rank is in +Inf: Prometheus returns the last bound


SHAPES: dict[str, Callable[[random.Random], float]] = {
    # a healthy gateway: median ~20 ms, long right tail
    "lognormal 20ms s=0.6": lambda r: r.lognormvariate(math.log(0.020), 0.6),
    # exact p99 ~73 ms: where a 1-2-5 layout of 16 buckets was measured at +27%
    "lognormal 20ms s=0.55+": lambda r: r.lognormvariate(math.log(0.02), 0.555),
    # a wide tail
    "lognormal 5ms s=1.2": lambda r: r.lognormvariate(math.log(0.005), 1.2),
    # loopback: sub-millisecond with rare GC pauses
    "loopback 0.3ms + 1% 40ms": lambda r: (
        r.expovariate(1 / 0.0003) if r.random() > 0.01 else 0.04 + r.random() * 0.01
    ),
    # two paths: 90% at 15 ms, 10% through a slow region at 180 ms
    "bimodal 15/180ms": lambda r: (
        r.gauss(0.015, 0.002) if r.random() < 0.9 else r.gauss(0.18, 0.02)
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--threshold", type=float, default=0.25, help="seconds (a bucket bound)")
    ap.add_argument(
        "--layout",
        choices=("soak", "1-2-5"),
        default="soak",
        help="soak's buckets, or 15 bounds 1-2-5 from 1 ms to 50 s, for comparison",
    )
    args = ap.parse_args()
    if args.layout == "soak":
        bounds = buckets([args.threshold])
    else:
        bounds = [m * 10.0**e for e in range(-3, 2) for m in (1, 2, 5)]
    shown = f"x1.25 from {LOWEST_S * 1000:g} ms, plus {args.threshold:g} s"
    print(f"{len(bounds)} bounds and +Inf: {shown if args.layout == 'soak' else args.layout}")
    print(f"{'shape':28} {'q':>6} {'HdrHistogram':>13} {'Prometheus':>11} {'error':>7}")
    worst = 0.0
    for name, draw in SHAPES.items():
        rng = random.Random(args.seed)
        h = new_histogram()
        for _ in range(args.samples):
            h.record_value(max(0, int(draw(rng) * 1_000_000 + 0.5)))
        below, _sum = cumulative(h, bounds)
        total = h.get_total_count()
        for q in (0.5, 0.99, 0.999):
            exact = h.get_value_at_percentile(q * 100) / 1e6
            prom = histogram_quantile(q, bounds, below, total)
            err = (prom - exact) / exact
            worst = max(worst, abs(err))
            print(f"{name:28} {q:>6g} {exact * 1000:>10.3f} ms {prom * 1000:>8.3f} ms {err:>+7.1%}")
    print(f"worst |error|: {worst:.1%}")
    cost(args.seed)


def cost(seed: int) -> None:
    """What /metrics costs the run: one interval of six histograms of 5,000
    samples each (median of 20), and one scrape."""
    live = LiveMetrics(parse_profile(COST_PROFILE, "cost.toml", {}), run="r")
    rng = random.Random(seed)
    took = []
    for k in range(20):
        iv = Interval(k, float(k))
        for h in iv.hist.values():
            for _ in range(5000):
                h.record_value(int(rng.lognormvariate(9, 1.5)))
        t = time.perf_counter()
        live.interval(iv, {})
        took.append(time.perf_counter() - t)
    took.sort()
    t = time.perf_counter()
    text = live.render()
    scrape = time.perf_counter() - t
    print(
        f"LiveMetrics.interval: median {took[10] * 1000:.2f} ms, max {took[-1] * 1000:.2f} ms; "
        f"a scrape: {scrape * 1000:.2f} ms, {len(text):,} bytes"
    )


COST_PROFILE = """
[target]
url = "ws://127.0.0.1:9/ws"
[[clients.stages]]
kind = "hold"
duration = "1s"
"""


if __name__ == "__main__":
    main()
