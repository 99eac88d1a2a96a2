"""``[impairment]`` as written, one type per impairment table, and what the
proxy makes of it (:meth:`Impairment.proxy_config`).

``soak run`` reads these from a profile, ``soak proxy`` from its options;
both with the parsers in soak.config.tables.impairment. A setting left out
is None; an impairment's own :class:`Window` overrides the shared
``direction`` and ``fraction`` for that impairment alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from soak.config.kinds import DURATION, FRACTION, RATE, Toml, at_least, one_of
from soak.proxy.config import (
    Bandwidth,
    ImpairmentConfig,
    Latency,
    NatIdle,
    Scope,
    TimedDrop,
)
from soak.proxy.frames import DropHeartbeat

# the impairment tables ([impairment.NAME], soak proxy's --scope NAME:...):
# the keys of the impairment itself, each with the flat [impairment] key
# that sets it too
TABLES: dict[str, dict[str, str]] = {
    "latency": {"delay": "latency", "jitter": "jitter", "dist": "jitter_dist"},
    "bandwidth": {"rate": "bandwidth"},
    "nat_idle": {"timeout": "nat_idle"},
    "black_hole": {"at": "black_hole_at"},
    "reset": {"at": "reset_at"},
    "drop_heartbeat": {"nth": "drop_heartbeat", "p": "drop_heartbeat_p"},
}
# ... and the keys of its scope: black holes and resets happen at one time
SCOPED: dict[str, tuple[str, ...]] = {
    "latency": ("fraction", "from", "until", "direction"),
    "bandwidth": ("fraction", "from", "until", "direction"),
    "nat_idle": ("fraction", "from", "until"),
    "drop_heartbeat": ("fraction", "from", "until", "direction"),
    "black_hole": ("fraction",),
    "reset": ("fraction",),
}
# the flat [impairment] settings, in the order run.json shows them
FLAT = (
    "latency",
    "jitter",
    "jitter_dist",
    "direction",
    "fraction",
    "bandwidth",
    "nat_idle",
    "black_hole_at",
    "reset_at",
    "drop_heartbeat",
    "drop_heartbeat_p",
    "seed",
)
DISTS = ("uniform", "normal", "pareto")
DIRECTIONS = ("up", "down", "both")

# how each flat setting and scope key is written (the parsers are
# soak.config.tables.impairment.setting's, one for one)
SETTINGS: dict[str, Toml] = {
    "latency": DURATION,
    "jitter": DURATION,
    "jitter_dist": one_of(DISTS),
    "direction": one_of(DIRECTIONS),
    "fraction": FRACTION,
    "bandwidth": RATE,
    "nat_idle": DURATION,
    "black_hole_at": DURATION,
    "reset_at": DURATION,
    "drop_heartbeat": at_least(1),
    "drop_heartbeat_p": FRACTION,
    "seed": at_least(0),
    "from": DURATION,
    "until": DURATION,
}


def _impairment_schema() -> dict[str, Any]:
    """[impairment]: its flat settings, and one table per impairment with
    the impairment's own keys and its scope's."""
    props: dict[str, Any] = {key: dict(SETTINGS[key].schema) for key in FLAT}
    for name, own in TABLES.items():
        keys = {key: dict(SETTINGS[flat].schema) for key, flat in own.items()}
        keys.update({key: dict(SETTINGS[key].schema) for key in SCOPED[name]})
        table = {"type": "object", "properties": keys, "additionalProperties": False}
        props[name] = {"anyOf": [table, props[name]]} if name in props else table
    return {"type": "object", "properties": props, "additionalProperties": False}


IMPAIRMENT = Toml(_impairment_schema())


@dataclass(frozen=True)
class Window:
    """One impairment's own scope; None: the shared setting (fraction,
    direction), the whole run (from, until). Seconds since the start."""

    fraction: float | None = None
    start: float | None = None  # "from"
    until: float | None = None
    direction: str | None = None

    def updated(self, before: Window) -> Window:
        """This window's settings over ``before``'s (two --scope options for
        one impairment)."""
        return Window(
            before.fraction if self.fraction is None else self.fraction,
            before.start if self.start is None else self.start,
            before.until if self.until is None else self.until,
            before.direction if self.direction is None else self.direction,
        )


@dataclass(frozen=True)
class LatencyImpairment:
    """``[impairment.latency]`` (or flat ``latency``, ``jitter``,
    ``jitter_dist``): a delay and its jitter; neither set: no delay."""

    delay: float | None = None
    jitter: float | None = None
    dist: str = "uniform"
    window: Window = field(default_factory=Window)


@dataclass(frozen=True)
class BandwidthImpairment:
    """``[impairment.bandwidth]``: at most ``rate`` bytes per second."""

    rate: float
    window: Window = field(default_factory=Window)


@dataclass(frozen=True)
class NatIdleImpairment:
    """``[impairment.nat_idle]``: a mapping idle for ``timeout`` is forgotten."""

    timeout: float
    window: Window = field(default_factory=Window)


@dataclass(frozen=True)
class DropHeartbeatImpairment:
    """``[impairment.drop_heartbeat]``: the ``nth`` heartbeat of each
    connection, and/or each with probability ``p``."""

    nth: int | None = None
    p: float = 0.0
    window: Window = field(default_factory=Window)


@dataclass(frozen=True)
class TimedImpairment:
    """``[impairment.black_hole]``, ``[impairment.reset]``: once, at ``at``."""

    at: float
    fraction: float | None = None


@dataclass(frozen=True)
class Impairment:
    """``[impairment]``: the network between the clients and the target,
    made worse by soak's in-process proxy (see soak.proxy). Seconds, bytes/s."""

    latency: LatencyImpairment | None = None
    bandwidth: BandwidthImpairment | None = None
    nat_idle: NatIdleImpairment | None = None
    black_hole: TimedImpairment | None = None
    reset: TimedImpairment | None = None
    drop_heartbeat: DropHeartbeatImpairment | None = None
    direction: str = "both"  # for latency and bandwidth
    fraction: float = 1.0  # for every impairment without its own
    seed: int = 1

    def record(self) -> dict[str, Any]:
        """The flat form run.json has always shown: every setting, and every
        impairment's own scope as ``NAME_KEY`` (None: not set)."""
        lat = self.latency or LatencyImpairment()
        hb = self.drop_heartbeat or DropHeartbeatImpairment()
        flat: dict[str, Any] = {
            "latency": lat.delay,
            "jitter": lat.jitter,
            "jitter_dist": lat.dist,
            "direction": self.direction,
            "fraction": self.fraction,
            "bandwidth": self.bandwidth.rate if self.bandwidth else None,
            "nat_idle": self.nat_idle.timeout if self.nat_idle else None,
            "black_hole_at": self.black_hole.at if self.black_hole else None,
            "reset_at": self.reset.at if self.reset else None,
            "drop_heartbeat": hb.nth,
            "drop_heartbeat_p": hb.p,
            "seed": self.seed,
        }
        for name, keys in SCOPED.items():
            flat.update({f"{name}_{key}": None for key in keys})
        for name, window in self.windows().items():
            flat.update(window_fields(name, window))
        return flat

    def active(self) -> set[str]:
        """The impairments that do something, by table name."""
        lat, hb = self.latency, self.drop_heartbeat
        out = {n for n in ("bandwidth", "nat_idle", "black_hole", "reset") if getattr(self, n)}
        if lat is not None and (lat.delay is not None or lat.jitter is not None):
            out.add("latency")
        if hb is not None and (hb.nth is not None or hb.p > 0):
            out.add("drop_heartbeat")
        return out

    def windows(self) -> dict[str, Window]:
        """The impairments with a scope, by table name."""
        out: dict[str, Window] = {}
        for name in ("latency", "bandwidth", "nat_idle", "drop_heartbeat"):
            item = getattr(self, name)
            if item is not None:
                out[name] = item.window
        for name in ("black_hole", "reset"):
            timed = getattr(self, name)
            if timed is not None:
                out[name] = Window(fraction=timed.fraction)
        return out

    def proxy_config(self) -> ImpairmentConfig:
        """What the proxy does, with every shared setting resolved. Raises
        ValueError for an inconsistent impairment."""

        def dirs(window: Window, shared: str) -> tuple[str, ...]:
            d = window.direction or shared
            return ("up", "down") if d == "both" else (d,)

        def scope(name: str, window: Window) -> Scope:
            start = 0.0 if window.start is None else window.start
            end = math.inf if window.until is None else window.until
            share = self.fraction if window.fraction is None else window.fraction
            try:
                return Scope(start, end, share)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None

        def timed(item: TimedImpairment | None) -> TimedDrop | None:
            if item is None:
                return None
            return TimedDrop(item.at, self.fraction if item.fraction is None else item.fraction)

        lat, bw, nat = self.latency, self.bandwidth, self.nat_idle
        hb = self.drop_heartbeat or DropHeartbeatImpairment()
        latency: tuple[Latency, ...] = ()
        if lat is not None and (lat.delay is not None or lat.jitter is not None):
            latency = (
                Latency(
                    lat.delay or 0.0,
                    lat.jitter or 0.0,
                    lat.dist,
                    dirs(lat.window, self.direction),
                    scope("latency", lat.window),
                ),
            )
        bandwidth: tuple[Bandwidth, ...] = ()
        if bw is not None:
            bandwidth = (
                Bandwidth(
                    bw.rate, 0.0, dirs(bw.window, self.direction), scope("bandwidth", bw.window)
                ),
            )
        return ImpairmentConfig(
            latency=latency,
            bandwidth=bandwidth,
            nat_idle=None if nat is None else NatIdle(nat.timeout, scope("nat_idle", nat.window)),
            black_hole=timed(self.black_hole),
            reset=timed(self.reset),
            drop_heartbeat=DropHeartbeat(hb.nth, hb.p) if hb.nth is not None or hb.p > 0 else None,
            seed=self.seed,
            # heartbeat drops count both ways unless told otherwise
            drop_heartbeat_directions=dirs(hb.window, "both"),
            drop_heartbeat_scope=scope("drop_heartbeat", hb.window),
        )


def window_fields(name: str, window: Window) -> dict[str, Any]:
    """A window's settings that are set, as flat ``NAME_KEY`` fields."""
    values = {
        "fraction": window.fraction,
        "from": window.start,
        "until": window.until,
        "direction": window.direction,
    }
    return {f"{name}_{k}": v for k, v in values.items() if k in SCOPED[name] and v is not None}
