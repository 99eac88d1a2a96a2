"""``[thresholds]`` and ``--threshold``: what a run must achieve, and the
names a threshold may have. Parsed in soak.config.tables.thresholds."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from soak.config.kinds import DURATION, PERCENT, Toml


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
LATENCY = re.compile(
    r"^(rtt|rtt_service|rtt_wire|rx_delay|tx_delay|read_lag|server_gap|connect|reconnect|lag)"
    r"_(p\d+|max)$"
)
# shares of the planned load (a percentage, judged with >=): the run's
# time-weighted availability and the worst storm's share of lost clients
# back before the end (soak.availability)
SHARES = ("availability", "storm_recovery")
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
    "for rtt, rtt_service, rtt_wire, rx_delay, tx_delay, server_gap, connect, reconnect and lag, "
    "and read_lag (the tester's, batch receive); "
    "heartbeat_success, availability, "
    "storm_recovery (percentages); "
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
    *SHARES,
    *COUNTS,
)

# [thresholds] strict = true: any finding of error severity (soak.findings)
# fails the run, as --strict does
STRICT = "strict"

# [thresholds] in a profile: a table of these names and their limits
THRESHOLDS = Toml(
    {
        "type": "object",
        "properties": {
            STRICT: {"type": "boolean"},
            "heartbeat_success": PERCENT.schema,
            **{name: PERCENT.schema for name in SHARES},
            **{name: {"type": "integer", "minimum": 0} for name in COUNTS},
        },
        "patternProperties": {LATENCY.pattern: DURATION.schema},
        "additionalProperties": False,
    }
)

# Judged in every run unless [thresholds] (or --threshold) names them: a run
# that does not hold its planned load does not pass. 90%: a short run with a
# gateway restart spends a few percent of its client-seconds reconnecting; a
# target that went away for good costs far more. Every storm's lost clients
# must all be back before the run ends.
DEFAULT_THRESHOLDS = (
    Threshold("availability", 0.90, "90%", ">="),
    Threshold("storm_recovery", 1.0, "100%", ">="),
)


def with_defaults(thresholds: tuple[Threshold, ...] | list[Threshold]) -> list[Threshold]:
    """The thresholds to judge: the profile's, then each default it does not name."""
    named = {th.name for th in thresholds}
    return [*thresholds, *(th for th in DEFAULT_THRESHOLDS if th.name not in named)]


def percentile_of(name: str) -> float | None:
    """``"p99"`` -> 99.0, ``"p999"`` -> 99.9, ``"p50"`` -> 50.0, ``"max"`` -> None."""
    if name == "max":
        return None
    digits = name[1:]
    if len(digits) <= 2 or digits == "100":  # "p100" is the 100th, not the 10.0th
        return float(digits)
    return float(digits[:2] + "." + digits[2:])
