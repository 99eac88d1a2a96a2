"""The gateway's counters, and the ``GET /api/stats`` document made from them.

Every counter is a plain int in one slotted object that the connection tasks
bump in place; only the Trio run's own thread touches it, so no locking. The
document's keys and their order are a public format: ``soak run`` reads them,
and :func:`soak.gateway.cluster.merge_stats` sums them over workers.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from soak.gateway.config import GatewayConfig
from soak.gateway.truth import TruthLog


class Counters:
    """What one gateway process has counted since it started."""

    __slots__ = (
        "accepted_total",
        "closes_by_reason",
        "gc_collections",
        "gc_pause_max",
        "handshake_failures",
        "heartbeats_dropped",
        "http_requests",
        "internal_errors",
        "messages_malformed",
        "messages_other",
        "pings_received",
        "pongs_sent",
        "pongs_withheld",
        "refused_during_restart",
        "restarts",
        "server_pings_sent",
        "stale_sessions_inherited",
        "ws_pings_received",
        "ws_pongs_received",
    )

    def __init__(self) -> None:
        self.accepted_total = 0
        self.closes_by_reason: Counter[str] = Counter()
        self.pings_received = 0
        self.pongs_sent = 0
        self.ws_pings_received = 0
        self.ws_pongs_received = 0
        self.server_pings_sent = 0
        self.messages_other = 0
        self.messages_malformed = 0
        self.http_requests = 0
        self.handshake_failures = 0
        self.internal_errors = 0
        self.gc_collections = 0
        self.gc_pause_max = 0.0
        # What the fault modes did (see soak.gateway.faults).
        self.pongs_withheld = 0
        self.heartbeats_dropped = 0
        self.stale_sessions_inherited = 0
        # Gateway.restart, and the requests its outages refused.
        self.restarts = 0
        self.refused_during_restart = 0

    def gc_pause(self, seconds: float) -> None:
        """Called for every garbage collection (see soak.gcctl): a pause here
        delays every pong, so the stats show it next to the latency."""
        self.gc_collections += 1
        self.gc_pause_max = max(self.gc_pause_max, seconds)


def stats_document(
    counters: Counters,
    *,
    config: GatewayConfig,
    connections: int,
    uptime: float,
    truth: TruthLog,
    refusing_for: float | None,
) -> dict[str, Any]:
    """The JSON-ready snapshot served at ``GET /api/stats``.

    ``refusing_for`` is what the current restart outage has left (seconds),
    or None when there is none.
    """
    c = counters
    return {
        "connections": connections,
        "accepted_total": c.accepted_total,
        "closes_by_reason": dict(c.closes_by_reason),
        "pings_received": c.pings_received,
        "pongs_sent": c.pongs_sent,
        "ws_pings_received": c.ws_pings_received,
        "ws_pongs_received": c.ws_pongs_received,
        "server_pings_sent": c.server_pings_sent,
        "messages_other": c.messages_other,
        "messages_malformed": c.messages_malformed,
        "http_requests": c.http_requests,
        "handshake_failures": c.handshake_failures,
        "internal_errors": c.internal_errors,
        "gc_collections": c.gc_collections,
        "gc_pause_max_ms": round(c.gc_pause_max * 1000, 3),
        "uptime_s": round(uptime, 3),
        "heartbeat": {
            "interval": config.hb_interval,
            "timeout": config.hb_timeout,
            "max_missed": config.max_missed,
        },
        "bugs": config.bug_names,
        "false_kills": truth.false_kills,
        "truth_records": len(truth.records),
        "truth_log_write_errors": truth.write_errors,
        "pongs_withheld": c.pongs_withheld,
        "heartbeats_dropped": c.heartbeats_dropped,
        "stale_sessions_inherited": c.stale_sessions_inherited,
        "restarts": c.restarts,
        "refusing_until": refusing_for,
        "refused_during_restart": c.refused_during_restart,
    }


__all__ = ["Counters", "stats_document"]
