"""Per-interval HdrHistograms (integer microseconds) and counters.

Memory stays flat for any run length: only the current interval and the
run's running totals are kept. The recorder writes each finished interval to
disk and forgets it.

A sample that cannot be recorded (``record_value`` returns False when the
value is beyond the histogram's range) is counted in ``dropped_samples`` and
reported, never dropped in silence.
"""

from __future__ import annotations

import weakref
from collections import Counter
from typing import Any

from hdrh.histogram import HdrHistogram

# 1 us .. 1 h at 3 significant digits (~105 KB each). Values are integer us.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIG_FIGS = 3

# rtt:          scheduled send -> pong (corrected for coordinated omission)
# rtt_service:  actual send -> pong
# connect:      TCP connect + TLS + WebSocket upgrade + protocol handshake
# reconnect:    connection lost -> next connection ready (the user's outage)
# lag:          heartbeat send lateness, actual - scheduled (the tester's fault)
# loop_lag:     how late the tester's event loop woke a sleeping probe task
HISTOGRAMS = ("rtt", "rtt_service", "connect", "reconnect", "lag", "loop_lag")

# An interval whose p99 heartbeat send lateness (ms) is above this is one where
# the tester itself was the bottleneck; its RTT says more about us than the
# target. intervals.jsonl flags it as "tester_bottleneck".
TESTER_BOTTLENECK_LAG_MS = 5.0

# Plain counters kept per interval, in the order intervals.jsonl shows them.
COUNTERS = (
    "pings",  # heartbeats sent
    "pongs",  # answered within the timeout
    "late",  # answered after the timeout (already counted in missed)
    "missed",  # no answer within the timeout
    "skipped",  # grid slots the tester was too late to send (tester fault)
    "abandoned",  # pending when the connection ended
    "duplicate_pongs",
    "unknown_pongs",
    "zombies",  # connections declared dead after max_missed misses
    "false_timeouts",  # server heartbeat timeouts of clients that were alive
    "justified_timeouts",  # server heartbeat timeouts of clients that were silent
    "server_pings",  # RFC 6455 pings from the server, all answered
    "connect_attempts",
    "connects",  # connections that became ready
    "reconnect_attempts",
    "reconnects",  # reconnect attempts that became ready
    "reconnect_failed",  # clients that gave up after max_attempts
    "handshake_failure_total",
    "gc_collections",
)


def _acyclic(h: HdrHistogram) -> HdrHistogram:
    """hdrh makes each histogram and its encoder (which owns the ~180 KB
    counts array) refer to each other, so only the cycle collector could free
    them, and during a run the collector is held back (soak.gcctl): measured
    before this, the tester's RSS grew by ~1.7 MB per reporting interval,
    without bound. With the encoder's reference weak, reference counting
    frees both as soon as the histogram is dropped."""
    h.encoder.histogram = weakref.proxy(h)
    return h


def new_histogram() -> HdrHistogram:
    return _acyclic(HdrHistogram(LOWEST_US, HIGHEST_US, SIG_FIGS))


def decode_histogram(payload: str | bytes) -> HdrHistogram:
    """A histogram from its encoded (V2, base64) form; see :func:`_acyclic`."""
    return _acyclic(HdrHistogram.decode(payload))


def to_us(seconds: float) -> int:
    return int(seconds * 1_000_000 + 0.5) if seconds > 0 else 0


class Interval:
    """Everything measured during one reporting interval."""

    def __init__(self, index: int, start: float) -> None:
        self.index = index
        self.start = start  # seconds since the run started
        self.end = start
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.closes: Counter[str] = Counter()
        self.closes_by_code: Counter[str] = Counter()
        self.closes_by_category: Counter[str] = Counter()
        self.handshake_failures: Counter[str] = Counter()
        self.dropped_samples: Counter[str] = Counter()
        self.hist: dict[str, HdrHistogram] = {name: new_histogram() for name in HISTOGRAMS}
        self.gc_pause_max = 0.0
        self.gc_pause_total = 0.0
        # gauges, sampled when the interval ends
        self.connected = 0
        self.connecting = 0
        self.target = 0
        self.rss_bytes = 0


class Metrics:
    """The current interval plus running totals. Not thread-safe; all
    callers run in one Trio thread."""

    def __init__(self, start: float = 0.0) -> None:
        self.current = Interval(0, start)
        self.totals: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.total_closes: Counter[str] = Counter()
        self.total_closes_by_code: Counter[str] = Counter()
        self.total_closes_by_category: Counter[str] = Counter()
        self.total_handshake_failures: Counter[str] = Counter()
        self.total_dropped: Counter[str] = Counter()
        self.total_hist: dict[str, HdrHistogram] = {n: new_histogram() for n in HISTOGRAMS}
        self.gc_pause_max = 0.0
        self.gc_pause_total = 0.0
        self.intervals_done = 0
        # set once a refusal is known to be permanent (a wrong token): what
        # it said, when, after how many failures; the run stopped reconnecting
        self.permanent_failure: dict[str, Any] | None = None

    # -- hot path ----------------------------------------------------------------

    def record(self, name: str, seconds: float) -> None:
        us = int(seconds * 1_000_000 + 0.5) if seconds > 0 else 0
        if not self.current.hist[name].record_value(us):
            self.current.dropped_samples[name] += 1

    def count(self, name: str, n: int = 1) -> None:
        self.current.counts[name] += n

    def close(self, reason: str, category: str, code: int | None) -> None:
        cur = self.current
        cur.closes[reason] += 1
        cur.closes_by_category[category] += 1
        cur.closes_by_code[str(code)] += 1

    def handshake_failure(self, cause: str) -> None:
        self.current.handshake_failures[cause] += 1
        self.current.counts["handshake_failure_total"] += 1

    def gc_pause(self, seconds: float) -> None:
        cur = self.current
        cur.counts["gc_collections"] += 1
        cur.gc_pause_total += seconds
        cur.gc_pause_max = max(cur.gc_pause_max, seconds)

    # -- interval boundary ---------------------------------------------------------

    def rotate(self, now: float) -> Interval:
        """Close the current interval at ``now`` (seconds since the run
        started), fold it into the totals and start the next one."""
        done = self.current
        done.end = now
        for k, v in done.counts.items():
            self.totals[k] += v
        self.total_closes.update(done.closes)
        self.total_closes_by_code.update(done.closes_by_code)
        self.total_closes_by_category.update(done.closes_by_category)
        self.total_handshake_failures.update(done.handshake_failures)
        self.total_dropped.update(done.dropped_samples)
        for name, h in done.hist.items():
            if h.get_total_count():
                self.total_hist[name].add(h)
        self.gc_pause_max = max(self.gc_pause_max, done.gc_pause_max)
        self.gc_pause_total += done.gc_pause_total
        self.intervals_done += 1
        self.current = Interval(done.index + 1, now)
        return done


def percentiles_ms(h: HdrHistogram) -> dict[str, Any]:
    """The usual summary of one histogram, in milliseconds."""
    n = h.get_total_count()
    keys = ("p50", "p90", "p99", "p99.9", "p99.99")
    if not n:
        return {"count": 0, "min": None, "mean": None, **dict.fromkeys(keys), "max": None}
    # one pass over the counts for all percentiles (each separate lookup is a
    # full pass, ~0.7 ms)
    qs = (50.0, 90.0, 99.0, 99.9, 99.99)
    values = h.get_percentile_to_value_dict(list(qs))
    return {
        "count": n,
        "min": h.get_min_value() / 1000.0,
        "mean": round(h.get_mean_value() / 1000.0, 3),
        **{k: values[q] / 1000.0 for k, q in zip(keys, qs, strict=True)},
        "max": h.get_max_value() / 1000.0,
    }


def heartbeat_success(pongs: int, missed: int) -> float | None:
    """Pongs on time / heartbeats decided (on time + missed). Pings still
    pending, and pings abandoned when a connection ended, are undecided."""
    decided = pongs + missed
    return pongs / decided if decided else None
