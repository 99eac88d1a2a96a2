"""Live Prometheus metrics of a run (``soak run --metrics-port PORT``).

Fed once per interval from the interval the run has just written (in a
``--workers`` run, the parent's: the workers' figures merged), and once a
second with the live gauges, so the hot path pays nothing. Served as
Prometheus text by soak.httpd at ``/metrics`` from the run's own loop.

- Counters (``soak_*_total``) are the run's running totals: ``rate()`` and
  ``increase()`` work on them, and restarts of a shard reset them as
  Prometheus expects of a restarted process.
- Latencies are classic histograms in seconds (``_bucket{le}``, ``_sum``,
  ``_count``), never percentiles, so ``histogram_quantile`` over
  ``sum by (le)`` aggregates shards and workers correctly. The buckets
  (:func:`buckets`) are geometric, x1.25 from 0.1 ms to 120 s, plus every
  latency threshold of the profile as its own bound, so "the share under
  250 ms" is a ratio of two counts, not an interpolation. The counts come
  from the HdrHistograms at their resolution (3 significant digits): a
  sample within 0.1% above a bound may be counted in it, as the summary's
  percentiles count it. ``_sum`` adds each sub-bucket's middle value
  times its count (hdrh's mean; as exact as that resolution).
- Labels: ``run`` (the run's directory name) and ``shard`` on every series,
  and bounded reasons (close reason and category, handshake failure cause,
  histogram). A family keeps at most :data:`MAX_LABEL_VALUES` values; the
  rest are added up under ``other``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from soak import __version__
from soak.config.profile import Profile
from soak.config.thresholds import LATENCY
from soak.httpd import Request, Response
from soak.metrics import COUNTERS, Interval
from soak.run.source import Sink

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_LABEL_VALUES = 50
FACTOR = 1.25
LOWEST_S = 0.0001
HIGHEST_S = 120.0

# HdrHistogram name -> (metric name, help)
HISTOGRAMS = {
    "rtt": ("soak_heartbeat_rtt_seconds", "Heartbeat RTT from the scheduled send to the pong."),
    "rtt_service": (
        "soak_heartbeat_service_rtt_seconds",
        "Heartbeat RTT from the actual send to the pong.",
    ),
    "connect": ("soak_connect_duration_seconds", "TCP + TLS + upgrade + protocol handshake."),
    "reconnect": ("soak_reconnect_outage_seconds", "Connection lost to the next one ready."),
    "lag": ("soak_tester_send_lag_seconds", "How late the tester sent heartbeats (its own lag)."),
    "loop_lag": ("soak_tester_loop_lag_seconds", "How late the tester's event loop woke."),
}
# counter -> metric name without _total, where soak's name is not the metric's
RENAMED = {
    "pings": "heartbeats_sent",
    "pongs": "heartbeat_pongs",
    "late": "heartbeats_late",
    "missed": "heartbeats_missed",
    "skipped": "heartbeats_skipped",
    "abandoned": "heartbeats_abandoned",
    "handshake_failure_total": "handshake_failures_all",
    "gc_collections": "tester_gc_collections",
}
FAMILIES = {
    "closes": ("soak_closes", "reason", "Connections closed, by soak's reason."),
    "closes_by_category": ("soak_closes_by_category", "category", "Closes by whose fault."),
    "handshake_failures": ("soak_handshake_failures", "cause", "Failed connects, by cause."),
    "dropped_samples": (
        "soak_dropped_samples",
        "histogram",
        "Samples a histogram could not hold (counted, not lost in silence).",
    ),
}


def buckets(extra: Iterable[float] = ()) -> list[float]:
    """The upper bounds in seconds: x1.25 from 0.1 ms to 120 s, plus ``extra``."""
    out = []
    n = math.ceil(math.log(HIGHEST_S / LOWEST_S) / math.log(FACTOR))
    for i in range(n + 1):
        out.append(float(f"{LOWEST_S * FACTOR**i:.6g}"))
    return sorted(set(out) | {float(x) for x in extra if x > 0})


def threshold_bounds(profile: Profile) -> list[float]:
    """Every latency threshold's limit, in seconds: each its own bucket bound."""
    return [th.limit for th in profile.thresholds if LATENCY.match(th.name)]


def recorded(h: HdrHistogram) -> tuple[Any, Any, Any]:
    """The histogram's non-empty sub-buckets as numpy arrays: the highest
    and the middle value each stands for, and its count, in value order.
    Computed from the counts array as hdrh's ``get_value_from_index`` does,
    all at once: hdrh's own iterator walks every index in Python (~30 ms a
    histogram, which would stall the run's event loop each interval)."""
    counts = np.ctypeslib.as_array(h.counts)[: h.counts_len]
    index = np.flatnonzero(counts).astype(np.int64)
    half_mag, half = h.sub_bucket_half_count_magnitude, h.sub_bucket_half_count
    bucket = (index >> half_mag) - 1
    sub = (index & (half - 1)) + half
    first = bucket < 0
    sub[first] -= half
    bucket[first] = 0
    shift = bucket + h.unit_magnitude
    lowest = sub << shift
    size = np.left_shift(1, shift)
    return lowest + size - 1, lowest + (size >> 1), counts[index].astype(np.int64)


def cumulative(h: HdrHistogram, bounds: list[float]) -> tuple[list[int], float]:
    """Counts of values <= each bound (HdrHistogram of microseconds), by the
    highest value each of its sub-buckets stands for; and the values' sum in
    seconds, by their middle values (as hdrh's mean)."""
    if not h.get_total_count():
        return [0] * len(bounds), 0.0
    highest, middle, counts = recorded(h)
    limits = np.array([b * 1_000_000 for b in bounds])
    below = np.cumsum(counts)[np.searchsorted(highest, limits, side="right") - 1]
    below[np.searchsorted(highest, limits, side="right") == 0] = 0
    return [int(x) for x in below], float((middle * counts).sum()) / 1_000_000


class LiveMetrics(Collector):
    """The run's figures as Prometheus metrics: :meth:`interval` after each
    interval, :meth:`status` each second, :meth:`event` per event."""

    def __init__(self, profile: Profile, *, run: str, shard: int = 0, shards: int = 1) -> None:
        self.labels = {"run": run, "shard": str(shard)}
        self.info = {**self.labels, "shards": str(shards), "version": __version__}
        self.info["profile"] = profile.path.rsplit("/", 1)[-1]
        self.planned_duration = profile.duration
        self.start_time: float | None = None
        self.bounds = buckets(threshold_bounds(profile))
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.families: dict[str, Counter[str]] = {name: Counter() for name in FAMILIES}
        self.hist_counts = {name: [0] * len(self.bounds) for name in HISTOGRAMS}
        self.hist_total = dict.fromkeys(HISTOGRAMS, 0)
        self.hist_sum = dict.fromkeys(HISTOGRAMS, 0.0)
        self.gauges: dict[str, float | None] = {
            "connected": 0,
            "connecting": 0,
            "target": 0,
            "gave_up": 0,
            "rss_bytes": 0,
            "server_connections": None,
            "connection_gap": None,
        }
        self.events: Counter[str] = Counter()
        self.events_dropped = 0
        self.storm_active = 0
        self.intervals = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # -- fed by the run --------------------------------------------------------------

    def interval(self, iv: Interval, record: dict[str, Any]) -> None:
        self.intervals += 1
        for k, v in iv.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        for name, fam in self.families.items():
            for key, n in iv.family(name).items():
                if key not in fam and len(fam) >= MAX_LABEL_VALUES:
                    key = "other"
                fam[key] += n
        for name in HISTOGRAMS:
            h = iv.hist[name]
            n = h.get_total_count()
            if not n:
                continue
            below, total = cumulative(h, self.bounds)
            for i, c in enumerate(below):
                self.hist_counts[name][i] += c
            self.hist_total[name] += n
            self.hist_sum[name] += total
        g = self.gauges
        g["connected"], g["connecting"], g["target"] = iv.connected, iv.connecting, iv.target
        g["rss_bytes"] = iv.rss_bytes
        g["gave_up"] = record.get("gave_up", g["gave_up"])
        if "server_connections" in record:
            g["server_connections"] = record["server_connections"]
            g["connection_gap"] = record.get("connection_gap")
        self.events_dropped += int(record.get("events_dropped") or 0)

    def status(self, status: dict[str, Any]) -> None:
        for key in ("connected", "connecting", "target", "gave_up"):
            if key in status:
                self.gauges[key] = status[key]

    def event(self, ev: dict[str, Any]) -> None:
        kind = str(ev.get("event", ""))
        if kind in ("storm_start", "storm_end", "worker_lost", "run_ended_early"):
            self.events[kind] += 1
            self.storm_active = self.events["storm_start"] - self.events["storm_end"]

    # -- read by Prometheus ----------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        names, values = list(self.labels), list(self.labels.values())
        info = GaugeMetricFamily("soak_run_info", "The run (value 1).", labels=list(self.info))
        info.add_metric(list(self.info.values()), 1)
        yield info
        yield self._gauge("soak_run_shards", "Shards the run has.", float(self.info["shards"]))
        yield self._gauge("soak_run_planned_duration_seconds", "Planned.", self.planned_duration)
        if self.start_time is not None:
            yield self._gauge("soak_run_start_time_seconds", "Epoch.", self.start_time)
        yield self._gauge("soak_intervals", "Intervals written so far.", self.intervals)
        for key, what in (
            ("connected", "Clients connected now."),
            ("connecting", "Clients connecting now."),
            ("target", "Clients the schedule wants now."),
            ("gave_up", "Clients that stopped reconnecting."),
        ):
            yield self._gauge(f"soak_clients_{key}", what, self.gauges[key])
        yield self._gauge("soak_tester_rss_bytes", "The tester's RSS.", self.gauges["rss_bytes"])
        for key, what in (
            ("server_connections", "The server's own connection count ([target.stats])."),
            ("connection_gap", "The server's count minus ours."),
        ):
            if self.gauges[key] is not None:
                yield self._gauge(f"soak_{key}", what, self.gauges[key])
        for key, v in self.counts.items():
            name = RENAMED.get(key, key)
            c = CounterMetricFamily(f"soak_{name}", f"soak's {key} counter.", labels=names)
            c.add_metric(values, v)
            yield c
        for fam, (name, label, what) in FAMILIES.items():
            c = CounterMetricFamily(name, what, labels=[*names, label])
            for key, n in sorted(self.families[fam].items()):
                c.add_metric([*values, key], n)
            yield c
        for kind, (name, what) in (
            ("storm_start", ("soak_storms", "Reconnect storms detected.")),
            ("worker_lost", ("soak_workers_lost", "Worker processes lost.")),
        ):
            c = CounterMetricFamily(name, what, labels=names)
            c.add_metric(values, self.events[kind])
            yield c
        c = CounterMetricFamily("soak_events_dropped", "Events not written (cap).", labels=names)
        c.add_metric(values, self.events_dropped)
        yield c
        yield self._gauge("soak_storm_active", "1 while a storm lasts.", self.storm_active)
        for hname, (name, what) in HISTOGRAMS.items():
            h = HistogramMetricFamily(name, what, labels=names)
            counts = self.hist_counts[hname]
            pairs = [(_le(b), float(c)) for b, c in zip(self.bounds, counts, strict=True)]
            pairs.append(("+Inf", float(self.hist_total[hname])))
            h.add_metric(values, pairs, self.hist_sum[hname])
            yield h

    def _gauge(self, name: str, what: str, value: float | None) -> GaugeMetricFamily:
        g = GaugeMetricFamily(name, what, labels=list(self.labels))
        g.add_metric(list(self.labels.values()), float(value or 0))
        return g

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def handler(self, request: Request) -> Response:
        """soak.httpd's handler for ``/metrics``."""
        return Response(200, self.render(), CONTENT_TYPE)


def _le(bound: float) -> str:
    return f"{bound:.6g}"


class MetricsSink:
    """A :class:`~soak.run.source.Sink` that shows every interval and event
    to :class:`LiveMetrics` on its way to the real sink."""

    def __init__(self, inner: Sink, live: LiveMetrics) -> None:
        self.inner = inner
        self.live = live
        self.wall0 = inner.wall0
        live.start_time = inner.wall0

    def event(self, ev: dict[str, Any]) -> None:
        self.live.event(ev)
        self.inner.event(ev)

    def write_interval(self, iv: Interval, extra: dict[str, Any]) -> dict[str, Any]:
        record = self.inner.write_interval(iv, extra)
        self.live.interval(iv, record)
        return record

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        self.inner.write_json(name, data)

    def write_lines(self, name: str, records: list[dict[str, Any]]) -> None:
        self.inner.write_lines(name, records)

    def close(self) -> None:
        self.inner.close()
