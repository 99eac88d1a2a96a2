"""Per-interval HdrHistograms (integer microseconds) and counters.

Memory stays flat for any run length: only the current interval and the
run's running totals are kept. The recorder writes each finished interval to
disk and forgets it.

A sample that cannot be recorded (``record_value`` returns False when the
value is beyond the histogram's range) is counted in ``dropped_samples`` and
reported, never dropped in silence.
"""

from __future__ import annotations

import base64
import ctypes
import sys
import weakref
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from hdrh import codec
from hdrh.histogram import HdrHistogram

from soak import availability
from soak.availability import Span, share

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
# server_gap:   time between two heartbeats of the server on one connection
#               (its RFC 6455 pings or the dialect's own: Engine.IO's "2")
# rtt_wire:     kernel receive time of the pong - the ping's send call (soak.wire)
# rx_delay:     kernel receive time -> soak reading it (the tester's fault)
# tx_delay:     a ping built -> the kernel's transmit time (the tester's fault)
# read_lag:     the batch receiver's wakeup -> its read of this socket: data
#               left unread while the batch read others (the tester's fault)
HISTOGRAMS = (
    "rtt",
    "rtt_service",
    "connect",
    "reconnect",
    "lag",
    "loop_lag",
    "server_gap",
    "rtt_wire",
    "rx_delay",
    "tx_delay",
    "read_lag",
)

# An interval whose p99 heartbeat send lateness (ms), or p99 read lag, is above
# this is one where the tester itself was the bottleneck; its RTT says more about us than the
# target. intervals.jsonl flags it as "tester_bottleneck".
TESTER_BOTTLENECK_LAG_MS = 5.0

# Plain counters kept per interval, in the order intervals.jsonl shows them.
COUNTERS = (
    "pings",  # heartbeats sent
    "pongs",  # answered within the timeout
    "late",  # answered after the timeout (already counted in missed)
    "missed",  # no answer within the timeout
    "skipped",  # grid slots the tester was too late to send (tester fault)
    "held",  # grid slots not sent: the dialect's in-flight cap was reached
    "abandoned",  # pending when the connection ended
    "duplicate_pongs",
    "unknown_pongs",
    "zombies",  # connections declared dead after max_missed misses
    "false_timeouts",  # server heartbeat timeouts of clients that were alive
    "justified_timeouts",  # server heartbeat timeouts of clients that were silent
    "server_pings",  # the server's heartbeats (RFC 6455 or the dialect's), answered if asked
    "server_missed",  # a server heartbeat that did not come within its interval + timeout
    "clock_steps",  # wall-clock steps seen while mapping kernel timestamps (soak.wire)
    "kernel_timestamped",  # connections read with the kernel's receive times
    "tx_timestamped",  # heartbeats whose send time is the kernel's transmit time
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


# one encode buffer per (counts length, word size), reused: see encode_histogram
_ENCODE_BUFFERS: dict[tuple[int, int], Any] = {}


def encode_histogram(h: HdrHistogram) -> bytes:
    """``h.encode()`` (V2, zlib, base64: the same bytes) without its garbage.

    hdrh's encoder allocates its varint buffer as ``c_byte * n`` with ``n``
    from the histogram's largest value, so nearly every interval's encode
    makes a new ctypes array type: ~3 KB of objects in a reference cycle
    (the type, its StgDict, its getset descriptors), which only the cycle
    collector frees, and during a run the collector is held back
    (soak.gcctl). Measured (docs/benchmarks.md, "An hour of 10,000
    clients"): this was the tester's whole RSS slope, ~1 KB per second at
    10,000 clients. Here the buffer has the one length that fits every
    histogram of this shape, made once and reused: no new type, no garbage.
    Not reentrant (one buffer per shape); the encoders of a process run in
    its one Trio thread."""
    enc = h.encoder
    payload = enc.payload
    word = payload.word_size
    key = (payload.counts_len, word)
    buf = _ENCODE_BUFFERS.get(key)
    if buf is None:
        # the worst case varint length: one byte more than a word per counter
        buf = (ctypes.c_byte * (codec.payload_header_size + payload.counts_len * (word + 1)))()
        _ENCODE_BUFFERS[key] = buf
    used = h.get_counts_array_index(h.max_value) + 1 if h.total_count else 0
    head = codec.payload_header_size
    varint_len = codec.encode(
        ctypes.addressof(payload.counts),
        used,
        word,
        ctypes.addressof(buf) + head,
        len(buf) - head,
    )
    payload.payload.payload_len = varint_len
    ctypes.memmove(ctypes.addressof(buf), ctypes.addressof(payload.payload), head)
    compressed = zlib.compress(ctypes.string_at(buf, head + varint_len))
    enc.header.length = len(compressed)
    header = ctypes.string_at(ctypes.addressof(enc.header), codec.ext_header_size)
    return base64.b64encode(header + compressed)


def reset_histogram(h: HdrHistogram) -> None:
    """``h`` as :func:`new_histogram` makes it, its counts array kept: what
    a recycled interval's histograms need (see :meth:`Metrics.recycle`).
    hdrh's ``reset()`` zeroes the ~23,000 counts one by one in Python
    (~1 ms each); this is one memset."""
    ctypes.memset(h.counts, 0, ctypes.sizeof(h.counts))
    h.total_count = 0
    h.min_value = sys.maxsize
    h.max_value = 0
    h.start_time_stamp_msec = 0
    h.end_time_stamp_msec = 0
    h.tag = None


def to_us(seconds: float) -> int:
    return int(seconds * 1_000_000 + 0.5) if seconds > 0 else 0


# marks a Tally field as a counter family (counts by a key: a close reason, a cause)
FAMILY = {"family": True}


@dataclass(slots=True, eq=False, kw_only=True)
class Tally:
    """What adds up: of one interval, of a worker's interval, or of the whole
    run. One type for all three, with one wire form (what a worker sends
    the parent: :meth:`to_wire`, :meth:`absorb`) and one file form (the
    intervals.jsonl fields: :meth:`record_fields`; summary.json's totals:
    :meth:`totals`; read back by :func:`read_totals`).

    Adding a counter family is one line here: a ``Counter`` field marked
    ``FAMILY``; the wire form, the file forms, the reader and the sums
    follow."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    closes: Counter[str] = field(default_factory=Counter, metadata=FAMILY)  # by reason
    closes_by_code: Counter[str] = field(default_factory=Counter, metadata=FAMILY)
    closes_by_category: Counter[str] = field(default_factory=Counter, metadata=FAMILY)
    handshake_failures: Counter[str] = field(default_factory=Counter, metadata=FAMILY)  # by cause
    dropped_samples: Counter[str] = field(default_factory=Counter, metadata=FAMILY)  # by histogram
    hist: dict[str, HdrHistogram] = field(
        default_factory=lambda: {name: new_histogram() for name in HISTOGRAMS}
    )
    gc_pause_max: float = 0.0
    gc_pause_total: float = 0.0
    # client-seconds connected (at most the target) and planned: availability
    # (soak.availability)
    connected_s: float = 0.0
    target_s: float = 0.0

    def family(self, name: str) -> Counter[str]:
        c: Counter[str] = getattr(self, name)
        return c

    # -- adding up -------------------------------------------------------------------

    def add(self, other: Tally) -> None:
        """Fold ``other`` into this tally (histograms merge losslessly)."""
        counts = self.counts
        for k, v in other.counts.items():
            counts[k] = counts.get(k, 0) + v
        for name in FAMILIES:
            self.family(name).update(other.family(name))
        for name, h in other.hist.items():
            if h.get_total_count():
                self.hist[name].add(h)
        self.gc_pause_max = max(self.gc_pause_max, other.gc_pause_max)
        self.gc_pause_total += other.gc_pause_total
        self.connected_s += other.connected_s
        self.target_s += other.target_s

    # -- the wire form ---------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        """JSON-ready: non-zero counters, the families, the non-empty
        histograms encoded (V2, base64)."""
        wire: dict[str, Any] = {"counts": {k: v for k, v in self.counts.items() if v}}
        for name in FAMILIES:
            wire[name] = dict(self.family(name))
        wire["hist"] = {
            name: encode_histogram(h).decode("ascii")
            for name, h in self.hist.items()
            if h.get_total_count()
        }
        wire["gc_pause_max"] = self.gc_pause_max
        wire["gc_pause_total"] = self.gc_pause_total
        wire["connected_s"] = self.connected_s
        wire["target_s"] = self.target_s
        return wire

    def absorb(self, wire: dict[str, Any]) -> None:
        """Add a tally's wire form to this one."""
        counts = self.counts
        for k, v in wire["counts"].items():
            counts[k] = counts.get(k, 0) + v
        for name in FAMILIES:
            self.family(name).update(wire[name])
        for name, payload in wire["hist"].items():
            self.hist[name].add(decode_histogram(payload))
        self.gc_pause_max = max(self.gc_pause_max, wire["gc_pause_max"])
        self.gc_pause_total += wire["gc_pause_total"]
        self.connected_s += wire.get("connected_s", 0.0)
        self.target_s += wire.get("target_s", 0.0)

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Tally:
        tally = cls()
        tally.absorb(wire)
        return tally

    # -- the file forms --------------------------------------------------------------

    def record_fields(self) -> dict[str, Any]:
        """This tally's part of an intervals.jsonl line, in the line's order.
        Latencies in milliseconds."""
        c = self.counts
        rec: dict[str, Any] = {name: c[name] for name in COUNTERS}
        rec["heartbeat_success"] = heartbeat_success(c["pongs"], c["missed"])
        for name in RECORD_HISTOGRAMS:
            h = self.hist[name]
            n = h.get_total_count()
            rec[f"{name}_count"] = n
            # every key in every line, null when there was no sample: readers
            # (and the golden file) never have to guess whether a key exists
            p = h.get_percentile_to_value_dict([50.0, 99.0]) if n else {}
            rec[f"{name}_p50_ms"] = p[50.0] / 1000.0 if n else None
            rec[f"{name}_p99_ms"] = p[99.0] / 1000.0 if n else None
            rec[f"{name}_max_ms"] = h.get_max_value() / 1000.0 if n else None
        # the tester, not the target, limited this interval's numbers: its
        # heartbeats went out late, or their answers waited to be read
        rec["tester_bottleneck"] = any(
            p99 is not None and p99 > TESTER_BOTTLENECK_LAG_MS
            for p99 in (rec["lag_p99_ms"], rec["read_lag_p99_ms"])
        )
        for name in FAMILIES:
            rec[name] = dict(sorted(self.family(name).items()))
        rec["gc_pause_max_ms"] = round(self.gc_pause_max * 1000.0, 3)
        rec["gc_pause_total_ms"] = round(self.gc_pause_total * 1000.0, 3)
        return rec

    def totals(self) -> dict[str, Any]:
        """summary.json's ``totals`` (but ``permanent_failure``, which is
        the run's, not a sum)."""
        t: dict[str, Any] = dict(self.counts)
        return _totals_form(t, {name: self.family(name) for name in FAMILIES})


FAMILIES = tuple(f.name for f in fields(Tally) if f.metadata.get("family"))
# the histograms an intervals.jsonl line summarises, in its order
RECORD_HISTOGRAMS = (
    "rtt",
    "rtt_service",
    "rtt_wire",
    "rx_delay",
    "tx_delay",
    "lag",
    "loop_lag",
    "read_lag",
    "connect",
)


def _totals_form(t: dict[str, Any], families: dict[str, Counter[str]]) -> dict[str, Any]:
    t["heartbeat_success"] = heartbeat_success(t.get("pongs", 0), t.get("missed", 0))
    for name, c in families.items():
        t[name] = dict(sorted(c.items()))
    t["dropped_samples_total"] = sum(families["dropped_samples"].values())
    return t


def read_totals(records: Iterable[dict[str, Any]], *, missing: int | None = 0) -> dict[str, Any]:
    """summary.json's totals from intervals.jsonl records (a run killed
    before it wrote a summary). Tolerant: a value that is not a number, or a
    family that is not an object, is skipped. A counter no record holds is
    ``missing`` (None: left out)."""
    tot: dict[str, Any] = {} if missing is None else dict.fromkeys(COUNTERS, missing)
    families: dict[str, Counter[str]] = {name: Counter() for name in FAMILIES}
    for rec in records:
        for k in COUNTERS:
            v = rec.get(k)
            if isinstance(v, int | float) and not isinstance(v, bool):
                tot[k] = tot.get(k, 0) + v
        for name, c in families.items():
            d = rec.get(name)
            if isinstance(d, dict):
                for key, v in d.items():
                    if isinstance(v, int | float):
                        c[str(key)] += int(v)
    return _totals_form(tot, families)


@dataclass(slots=True, eq=False)
class Interval(Tally):
    """Everything measured during one reporting interval: its tally, and the
    gauges sampled when it ends."""

    index: int
    start: float  # seconds since the run started
    end: float = field(init=False, default=0.0)  # until it ends, its start
    connected: int = 0
    connecting: int = 0
    target: int = 0
    rss_bytes: int = 0

    def __post_init__(self) -> None:
        self.end = self.start

    def record(self, extra: dict[str, Any]) -> dict[str, Any]:
        """The intervals.jsonl line for this interval: position, gauges, the
        tally, then ``extra``."""
        rec: dict[str, Any] = {
            "i": self.index,
            "t": round(self.start, 3),
            "dt": round(self.end - self.start, 3),
            "connected": self.connected,
            "connecting": self.connecting,
            "target": self.target,
            "connected_s": round(self.connected_s, 3),
            "target_s": round(self.target_s, 3),
            "availability": _rounded(share(self.connected_s, self.target_s)),
        }
        rec.update(self.record_fields())
        rec["rss_bytes"] = self.rss_bytes
        rec.update(extra)
        return rec


def _rounded(v: float | None) -> float | None:
    return None if v is None else round(v, 6)


class Metrics:
    """The current interval plus the run's total. Not thread-safe; all
    callers run in one Trio thread."""

    def __init__(self, start: float = 0.0) -> None:
        self.current = Interval(0, start)
        self.total = Tally()
        self.intervals_done = 0
        # set once a refusal is known to be permanent (a wrong token): what
        # it said, when, after how many failures; the run stopped reconnecting
        self.permanent_failure: dict[str, Any] | None = None
        # the finished intervals' client-seconds: the run's availability
        self.availability = availability.Running()
        # the histograms of a written interval, reset, for the next one
        # (recycle): without them each interval allocates and frees its ten
        # (~1.9 MB), and the RSS swings by as much from one sample to the next
        self._spare: dict[str, HdrHistogram] | None = None

    # -- hot path ----------------------------------------------------------------

    def record(self, name: str, seconds: float) -> None:
        us = int(seconds * 1_000_000 + 0.5) if seconds > 0 else 0
        if not self.current.hist[name].record_value(us):
            self.current.dropped_samples[name] += 1

    def count(self, name: str, n: int = 1) -> None:
        self.current.counts[name] += n

    def unrecorded(self, name: str) -> None:
        """A sample of ``name`` that cannot be recorded (its clock was not
        to be trusted): counted in ``dropped_samples``, not recorded."""
        self.current.dropped_samples[name] += 1

    def close(self, reason: str, category: str, code: int | None, n: int = 1) -> None:
        cur = self.current
        cur.closes[reason] += n
        cur.closes_by_category[category] += n
        cur.closes_by_code[str(code)] += n

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
        started), fold it into the total and start the next one."""
        done = self.current
        done.end = now
        self.total.add(done)
        self.availability.add(Span(done.start, now - done.start, done.connected_s, done.target_s))
        self.intervals_done += 1
        spare, self._spare = self._spare, None
        if spare is None:
            self.current = Interval(done.index + 1, now)
        else:
            self.current = Interval(done.index + 1, now, hist=spare)
        return done

    def recycle(self, done: Interval) -> None:
        """``done`` (returned by :meth:`rotate`) is written and nothing
        refers to its histograms any more: they become the next interval's,
        reset. The caller must not use ``done``'s histograms after this."""
        if done is self.current or self._spare is not None:
            return
        for h in done.hist.values():
            reset_histogram(h)
        self._spare = done.hist
        done.hist = {}

    def so_far(self, name: str) -> int:
        """A counter's run total including the current interval."""
        return self.total.counts[name] + self.current.counts[name]


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
