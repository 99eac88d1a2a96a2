"""What the proxy is asked to do: frozen dataclasses, validated on creation.

Times are seconds since the proxy started. Every per-chunk impairment has a
:class:`Scope`: the arrival times it covers and the fraction of connections
it picks (by connection number and seed, so a rerun picks the same ones).

What a profile's [impairment] or soak proxy's options ask for is read in
soak.config (soak.config.impairment.Impairment); its ``proxy_config()``
resolves it into the :class:`ImpairmentConfig` here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from soak.config.units import parse_rate as parse_rate  # the proxy's rates, re-exported
from soak.proxy.frames import DropHeartbeat

DIRECTIONS = ("up", "down")  # up: client -> server, down: server -> client
DISTRIBUTIONS = ("uniform", "normal", "pareto")


def _fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a fraction in [0, 1], got {value}")


@dataclass(frozen=True)
class Scope:
    """Arrival times in ``[start, end)``, on ``fraction`` of the connections."""

    start: float = 0.0
    end: float = math.inf
    fraction: float = 1.0

    def __post_init__(self) -> None:
        _fraction("fraction", self.fraction)
        if self.start < 0 or self.end <= self.start:
            raise ValueError(f"window: expected 0 <= start < end, got [{self.start}, {self.end})")

    def covers(self, now: float) -> bool:
        return self.start <= now < self.end


def _directions(value: tuple[str, ...]) -> None:
    if not value or any(d not in DIRECTIONS for d in value):
        raise ValueError(f"direction: expected up, down or both, got {'/'.join(value)}")


@dataclass(frozen=True)
class Latency:
    """One-way delay ``delay`` plus jitter drawn from ``dist``:

    - uniform: delay ± jitter (``netem delay 100ms 50ms``);
    - normal: mean delay, standard deviation jitter;
    - pareto: delay plus a heavy tail (shape 3) whose mean is jitter.

    Delays below zero are clipped to zero. Bytes are never reordered: a chunk
    waits for the one before it, as on one TCP stream.
    """

    delay: float
    jitter: float = 0.0
    dist: str = "uniform"
    directions: tuple[str, ...] = DIRECTIONS
    scope: Scope = field(default_factory=Scope)

    def __post_init__(self) -> None:
        if self.delay < 0 or self.jitter < 0:
            raise ValueError(f"latency: expected durations >= 0, got {self.delay}, {self.jitter}")
        if self.dist not in DISTRIBUTIONS:
            raise ValueError(
                f"jitter distribution: expected one of {', '.join(DISTRIBUTIONS)}, got {self.dist}"
            )
        _directions(self.directions)


@dataclass(frozen=True)
class Bandwidth:
    """At most ``rate`` bytes per second, after an allowance of ``burst``
    bytes (a token bucket, computed as GCRA release times)."""

    rate: float
    burst: float = 0.0
    directions: tuple[str, ...] = DIRECTIONS
    scope: Scope = field(default_factory=Scope)

    def __post_init__(self) -> None:
        if not self.rate > 0 or self.burst < 0:
            raise ValueError(f"bandwidth: expected a rate > 0, got {self.rate}")
        _directions(self.directions)


@dataclass(frozen=True)
class TimedDrop:
    """Something that happens once, at time ``at``, to ``fraction`` of the
    connections: a black hole or a reset."""

    at: float
    fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.at < 0:
            raise ValueError(f"time: expected >= 0, got {self.at}")
        _fraction("fraction", self.fraction)


@dataclass(frozen=True)
class NatIdle:
    """A NAT that forgets a mapping idle for ``timeout`` seconds (both
    directions silent), while the scope covers that moment."""

    timeout: float
    scope: Scope = field(default_factory=Scope)

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"nat idle timeout: expected > 0, got {self.timeout}")


@dataclass(frozen=True)
class ImpairmentConfig:
    """Everything the proxy does. The empty config forwards untouched."""

    latency: tuple[Latency, ...] = ()
    bandwidth: tuple[Bandwidth, ...] = ()
    nat_idle: NatIdle | None = None
    black_hole: TimedDrop | None = None
    reset: TimedDrop | None = None
    drop_heartbeat: DropHeartbeat | None = None
    seed: int = 1
    # which heartbeats drop_heartbeat sees: their direction, its window and fraction
    drop_heartbeat_directions: tuple[str, ...] = DIRECTIONS
    drop_heartbeat_scope: Scope = field(default_factory=Scope)
    # whose heartbeats those are: a dialect in soak.proxy.frames.DIALECT_HEARTBEATS
    heartbeat_dialect: str = "json"

    def __post_init__(self) -> None:
        _directions(self.drop_heartbeat_directions)
