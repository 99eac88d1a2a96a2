"""The impairment model, sans I/O: it never touches a socket or a clock.

A :class:`Link` is one proxied connection. The proxy tells it when a chunk
arrives (``release_time(direction, now, nbytes)``) and gets back when to
forward it, or ``None`` to discard it. ``check(now)`` applies the
connection-wide impairments that are due (NAT idle timeout, black hole,
reset); ``next_deadline()`` says when to call it again. ``events()`` drains
the impairments applied so far, as JSON-ready dicts.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from soak.proxy.config import DIRECTIONS, Bandwidth, ImpairmentConfig, Latency
from soak.proxy.frames import Dropper, FrameFilter, kinds_of

State = Literal["open", "silent", "reset"]
Event = dict[str, Any]
_I = TypeVar("_I", Latency, Bandwidth)

# mean of paretovariate(3) is 1.5: scaling (X - 1) by 2 makes the tail's mean 1
_PARETO_SHAPE = 3.0
_PARETO_SCALE = 2.0


def selected(seed: int, name: str, conn: int, fraction: float) -> bool:
    """Whether impairment ``name`` picks connection ``conn``. Deterministic:
    the same seed picks the same connections in every run."""
    if fraction >= 1.0:
        return True
    if fraction <= 0.0:
        return False
    return random.Random(f"{seed}/{name}/{conn}").random() < fraction


def sample_delay(latency: Latency, rng: random.Random) -> float:
    """One one-way delay, never below zero."""
    if latency.jitter == 0:
        return latency.delay
    if latency.dist == "uniform":
        d = latency.delay + rng.uniform(-latency.jitter, latency.jitter)
    elif latency.dist == "normal":
        d = rng.gauss(latency.delay, latency.jitter)
    else:
        tail = rng.paretovariate(_PARETO_SHAPE) - 1.0
        d = latency.delay + latency.jitter * _PARETO_SCALE * tail
    return max(0.0, d)


@dataclass
class _Direction:
    last_release: float = -math.inf  # no chunk may leave before this
    tat: float = -math.inf  # GCRA theoretical arrival time of the bandwidth limit


class Link:
    """One connection's impairments. ``now`` is seconds since the proxy
    started; ``conn`` numbers connections from 0 in accept order."""

    def __init__(
        self, config: ImpairmentConfig, conn: int, now: float, rng: random.Random | None = None
    ) -> None:
        self.config = config
        self.conn = conn
        self.opened = now
        self.state: State = "open"
        self.last_activity = now
        self.rng = rng if rng is not None else random.Random(f"{config.seed}/{conn}")
        self._dirs = {d: _Direction() for d in DIRECTIONS}
        rule = config.drop_heartbeat
        self._filters: dict[str, FrameFilter] = {}
        hb_scope = config.drop_heartbeat_scope
        if rule is not None and selected(config.seed, "drop_heartbeat", conn, hb_scope.fraction):
            dropper = Dropper(rule, random.Random(f"{config.seed}/{conn}/heartbeats"))
            self._filters = {
                d: FrameFilter(dropper, kinds_of(config.heartbeat_dialect))
                for d in DIRECTIONS
                if d in config.drop_heartbeat_directions
            }
        self._events: list[Event] = []
        self._announced: set[tuple[str, str]] = set()
        seed = config.seed
        self._latency = [
            lat
            for i, lat in enumerate(config.latency)
            if selected(seed, f"latency{i}", conn, lat.scope.fraction)
        ]
        self._bandwidth = [
            bw
            for i, bw in enumerate(config.bandwidth)
            if selected(seed, f"bandwidth{i}", conn, bw.scope.fraction)
        ]
        nat = config.nat_idle
        self._nat = nat if nat and selected(seed, "nat_idle", conn, nat.scope.fraction) else None
        bh = config.black_hole
        self._black_hole_at = (
            max(bh.at, now) if bh and selected(seed, "black_hole", conn, bh.fraction) else None
        )
        rst = config.reset
        # a reset hits the connections that exist at that time, not later ones
        self._reset_at = (
            rst.at
            if rst and rst.at >= now and selected(seed, "reset", conn, rst.fraction)
            else None
        )
        self.check(now)

    @property
    def forwarding(self) -> bool:
        return self.state == "open"

    def note(self, now: float, event: str, **fields: Any) -> None:
        """Record something the proxy saw that is not an impairment (an
        upstream that could not be reached), in the same event stream."""
        self._events.append({"t": now, "conn": self.conn, "event": event, **fields})

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    # -- connection-wide ----------------------------------------------------

    def _nat_due(self) -> float | None:
        if self._nat is None:
            return None
        # an idle timer that ran out before the window opened fires at its start
        due = max(self.last_activity + self._nat.timeout, self._nat.scope.start)
        return due if due < self._nat.scope.end else None

    def _dues(self) -> list[tuple[float, str]]:
        dues = [
            (self._nat_due(), "nat_idle_drop"),
            (self._black_hole_at, "black_hole"),
            (self._reset_at, "reset"),
        ]
        return sorted((t, name) for t, name in dues if t is not None)

    def next_deadline(self) -> float:
        """When ``check`` may next change the state (``inf``: never)."""
        if self.state != "open":
            return math.inf
        dues = self._dues()
        return dues[0][0] if dues else math.inf

    def check(self, now: float) -> State:
        """Apply what is due at ``now``. Once silent or reset, a connection
        stays so: a NAT that forgot a mapping cannot reset it later."""
        if self.state == "open":
            for t, name in self._dues():
                if t > now:
                    break
                event: Event = {"t": t, "conn": self.conn, "impairment": name}
                if name == "nat_idle_drop":
                    assert self._nat is not None
                    event["idle"] = self._nat.timeout
                self._events.append(event)
                self.state = "reset" if name == "reset" else "silent"
                break
        return self.state

    # -- per chunk ----------------------------------------------------------

    def filter(self, direction: str, now: float, data: bytes) -> bytes:
        """The bytes of ``data`` to forward once heartbeats are dropped (and
        incomplete frames held back until they are complete)."""
        f = self._filters.get(direction)
        if f is None or self.state != "open":
            return data
        # outside its window the filter still parses, but neither counts nor drops
        f.active = self.config.drop_heartbeat_scope.covers(now)
        out = f.feed(data)
        for kind, n in f.dropped:
            self._events.append(
                {
                    "t": now,
                    "conn": self.conn,
                    "impairment": "heartbeat_drop",
                    "direction": direction,
                    "kind": kind,
                    "n": n,
                }
            )
        f.dropped.clear()
        return out

    def touch(self, direction: str, now: float) -> None:
        """Bytes arrived but nothing is to be forwarded yet: the connection
        was not idle (for a NAT idle timeout)."""
        if self.check(now) == "open":
            self.last_activity = now

    def release_time(self, direction: str, now: float, nbytes: int) -> float | None:
        """When a chunk of ``nbytes`` arriving at ``now`` from ``direction``
        may be forwarded, or ``None`` if it is to be discarded."""
        if self.check(now) != "open":
            return None
        self.last_activity = now
        d = self._dirs[direction]
        t = now
        bw = self._first(self._bandwidth, direction, now)
        if bw is not None:
            self._announce(bw, direction, now, rate=bw.rate, burst=bw.burst)
            # GCRA: the chunk conforms once the bucket has room for it
            d.tat = max(d.tat, now) + nbytes / bw.rate
            t = max(now, d.tat - bw.burst / bw.rate)
        lat = self._first(self._latency, direction, now)
        if lat is not None:
            self._announce(lat, direction, now, delay=lat.delay, jitter=lat.jitter, dist=lat.dist)
            t += sample_delay(lat, self.rng)
        # never reorder: a chunk waits for the one before it
        d.last_release = max(t, d.last_release)
        return d.last_release

    @staticmethod
    def _first(items: list[_I], direction: str, now: float) -> _I | None:
        for item in items:
            if direction in item.directions and item.scope.covers(now):
                return item
        return None

    def _announce(
        self, item: Latency | Bandwidth, direction: str, now: float, **fields: Any
    ) -> None:
        """Log a per-chunk impairment once per connection and direction."""
        kind = "latency" if isinstance(item, Latency) else "bandwidth"
        if (kind, direction) in self._announced:
            return
        self._announced.add((kind, direction))
        self._events.append(
            {"t": now, "conn": self.conn, "impairment": kind, "direction": direction, **fields}
        )
