"""What the proxy is asked to do: frozen dataclasses, validated on creation.

Times are seconds since the proxy started. Every per-chunk impairment has a
:class:`Scope`: the arrival times it covers and the fraction of connections
it picks (by connection number and seed, so a rerun picks the same ones).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

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

    def __post_init__(self) -> None:
        _directions(self.drop_heartbeat_directions)


_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|KiB|MiB|GiB|bit|kbit|Mbit|Gbit)(?:/s)?")
_RATE_UNITS = {
    "B": 1.0,
    "kB": 1e3,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "KiB": 1024.0,
    "MiB": 1024.0**2,
    "GiB": 1024.0**3,
    "bit": 1 / 8,
    "kbit": 1e3 / 8,
    "Mbit": 1e6 / 8,
    "Gbit": 1e9 / 8,
}


def parse_rate(text: str) -> float:
    """``"100kB"`` -> 100000.0 bytes/s, ``"8Mbit"`` -> 1e6, ``"1MiB/s"`` ->
    1048576.0. A unit is required. Raises ValueError otherwise."""
    m = _RATE.fullmatch(text.strip())
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(text)
    return float(m.group(1)) * _RATE_UNITS[m.group(2)]


def parse_hostport(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8765"`` -> ("127.0.0.1", 8765); ``"[::1]:80"`` too.
    Raises ValueError otherwise."""
    host, sep, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(text)
    return host, int(port)


# impairments that can be given their own scope (a profile's
# [impairment.NAME] table, soak proxy's --scope NAME:...), and which of the
# scope's keys each takes: black holes and resets happen at one time
SCOPED = {
    "latency": ("fraction", "from", "until", "direction"),
    "bandwidth": ("fraction", "from", "until", "direction"),
    "nat_idle": ("fraction", "from", "until"),
    "drop_heartbeat": ("fraction", "from", "until", "direction"),
    "black_hole": ("fraction",),
    "reset": ("fraction",),
}


def build_config(
    *,
    latency: float | None = None,
    jitter: float | None = None,
    jitter_dist: str = "uniform",
    direction: str = "both",
    fraction: float = 1.0,
    bandwidth: float | None = None,
    nat_idle: float | None = None,
    black_hole_at: float | None = None,
    reset_at: float | None = None,
    drop_heartbeat: int | None = None,
    drop_heartbeat_p: float = 0.0,
    seed: int = 1,
    **scopes: float | str | None,
) -> ImpairmentConfig:
    """The proxy's configuration from the flat settings that ``soak proxy``'s
    options and a profile's ``[impairment]`` share. ``direction`` and
    ``fraction`` apply to every impairment; ``NAME_fraction``,
    ``NAME_from``, ``NAME_until`` and ``NAME_direction`` (see
    :data:`SCOPED`; None: not set) override them for one. Raises ValueError."""
    from soak.proxy.frames import DropHeartbeat

    allowed = {f"{name}_{key}" for name, keys in SCOPED.items() for key in keys}
    unknown = sorted(set(scopes) - allowed)
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]}")

    def dirs(name: str) -> tuple[str, ...]:
        # the shared direction is for latency and bandwidth: heartbeat drops
        # count both ways unless told otherwise
        shared = "both" if name == "drop_heartbeat" else direction
        d = scopes.get(f"{name}_direction") or shared
        return ("up", "down") if d == "both" else (str(d),)

    def num(key: str, default: float) -> float:
        value = scopes.get(key)
        return default if value is None else float(value)

    def scope(name: str) -> Scope:
        start, end = num(f"{name}_from", 0.0), num(f"{name}_until", math.inf)
        try:
            return Scope(start, end, num(f"{name}_fraction", fraction))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None

    def timed(name: str, at: float | None) -> TimedDrop | None:
        return None if at is None else TimedDrop(at, num(f"{name}_fraction", fraction))

    return ImpairmentConfig(
        latency=(
            Latency(latency or 0.0, jitter or 0.0, jitter_dist, dirs("latency"), scope("latency")),
        )
        if latency is not None or jitter is not None
        else (),
        bandwidth=(Bandwidth(bandwidth, 0.0, dirs("bandwidth"), scope("bandwidth")),)
        if bandwidth is not None
        else (),
        nat_idle=NatIdle(nat_idle, scope("nat_idle")) if nat_idle is not None else None,
        black_hole=timed("black_hole", black_hole_at),
        reset=timed("reset", reset_at),
        drop_heartbeat=DropHeartbeat(drop_heartbeat, drop_heartbeat_p)
        if drop_heartbeat is not None or drop_heartbeat_p > 0
        else None,
        seed=seed,
        drop_heartbeat_directions=dirs("drop_heartbeat"),
        drop_heartbeat_scope=scope("drop_heartbeat"),
    )
