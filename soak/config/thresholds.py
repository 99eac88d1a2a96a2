"""``[thresholds]`` and ``--threshold``: what a run must achieve, and the
names a threshold may have. Parsed in soak.config.tables.thresholds."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    name: str  # as written, e.g. "rtt_p99"
    limit: float  # seconds for latencies, a fraction for rates, a count otherwise
    text: str  # as written, e.g. "250ms", for messages
    # how the run's value must compare with the limit; in a profile it is
    # "<=" (">=" for heartbeat_success), on the command line it is written
    op: str = "<="

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.limit)


OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda v, lim: v < lim,
    "<=": lambda v, lim: v <= lim,
    "==": lambda v, lim: v == lim,
    ">=": lambda v, lim: v >= lim,
    ">": lambda v, lim: v > lim,
}

# latency thresholds: <histogram>_p<digits> or <histogram>_max, e.g. rtt_p99,
# rtt_p999 (99.9th), connect_p50, lag_max
LATENCY = re.compile(r"^(rtt|rtt_service|connect|reconnect|lag)_(p\d+|max)$")
COUNTS = (
    "false_timeouts",
    "missed",
    "zombies",
    "handshake_failures",
    "reconnect_failed",
    "dropped_samples",
    "intermediary_closes",
)
THRESHOLD_HELP = (
    "valid thresholds: <histogram>_p<NN> (p99, p999 = 99.9th, ...) or <histogram>_max "
    "for rtt, rtt_service, connect, reconnect and lag; heartbeat_success (a percentage); "
    "counts: " + ", ".join(COUNTS)
)
# common names, for "did you mean" suggestions
THRESHOLD_NAMES = (
    "rtt_p50",
    "rtt_p99",
    "rtt_p999",
    "rtt_max",
    "rtt_service_p99",
    "connect_p99",
    "lag_p99",
    "heartbeat_success",
    *COUNTS,
)


def percentile_of(name: str) -> float | None:
    """``"p99"`` -> 99.0, ``"p999"`` -> 99.9, ``"p50"`` -> 50.0, ``"max"`` -> None."""
    if name == "max":
        return None
    digits = name[1:]
    if len(digits) <= 2 or digits == "100":  # "p100" is the 100th, not the 10.0th
        return float(digits)
    return float(digits[:2] + "." + digits[2:])
