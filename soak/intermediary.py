"""Pure: intermediary idle timeouts, named from the closes no close frame explains.

A proxy, load balancer or NAT between soak and the gateway that closes idle
connections does not send a WebSocket close frame: the client sees the TCP
connection end (EOF or RST, 1006), which soak counts as ``transport_eof`` or
``transport_reset``. What gives the intermediary away is *when*: every such
close comes the same number of seconds after the connection went silent.
On an upgraded connection, nginx's ``proxy_read_timeout`` and HAProxy's
``timeout tunnel`` both count from the last byte in either direction
(measured: docs/intermediaries.md); CloudFront's from the last byte the
origin sent.

:class:`CloseSilences` takes the run's ``close`` events (as they go to
``events.jsonl``, or as they are read back) and keeps, for each close
without a close frame, three lengths in logarithmic bins (0.5 % wide, so
memory is bounded however long the run):

- ``server``: seconds since the last frame from the server
  (``last_frame_age_s``);
- ``either``: seconds since the last frame in either direction (the smaller
  of ``last_frame_age_s`` and ``last_sent_age_s``);
- ``age``: how long the connection had been open.

:func:`find_idle_timeouts` looks, in ``server`` and in ``either``, for the
densest window of width ±3 % (at least ±0.1 s), reaching 0.3 s further down
(:data:`LAZY_S`: nginx's lazy timers), and names an idle timeout when

- it holds at least :data:`MIN_CLOSES` closes;
- so many closes in so narrow a window are not chance: a gateway that drops
  connections at random times leaves silences spread evenly between 0 and
  the heartbeat interval (the server answers every heartbeat). Against that
  spread (from 0 to the heartbeat interval, or to the 90th percentile of
  the silences if that is longer), the binomial chance of the window's
  count or more, times the number of such windows in the spread, must be
  below :data:`ALPHA`. Eight closes that all fall in one window are enough,
  five are not;
- its closes came at different times (spread over at least
  :data:`MIN_SPAN_S`): a crash that drops every connection at once, with the
  clients' heartbeats in step, gives one silence length at one instant;
- the connections' ages do not cluster better at another value (that is a
  connection lifetime limit, not an idle timeout).

Closes the profile's ``[target.server_heartbeat]`` already explains (the
gateway's own abrupt heartbeat timeout) are judged ``heartbeat_timeout`` by
:mod:`soak.classify` and are not looked at here. With request-response
heartbeats the server's silence and the silence in either direction are the
same length; the direction is then ``server_or_either``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from soak.closes_named import reattribute
from soak.config.thresholds import Threshold

REASON = "intermediary_idle_timeout"
CATEGORY = "intermediary"
COUNT = "intermediary_closes"  # the threshold's and the totals' name

SERVER = "server"
EITHER = "either"
SERVER_OR_EITHER = "server_or_either"
CLIENT = "client"  # a declared hop reset only by the clients' frames (soak.chain)

MIN_CLOSES = 5
ALPHA = 1e-6
MIN_SPAN_S = 1.0
REL_TOL = 0.03
ABS_TOL = 0.1
# nginx does not move a timer by less than 300 ms (NGX_TIMER_LAZY_DELAY): a
# frame from the gateway within 300 ms of the upgrade leaves the idle timer
# where the upgrade set it, and that connection closes up to 300 ms short
# of proxy_read_timeout after its last frame (measured with
# proxy_read_timeout 1500ms: 4 of 41 closes 1.21-1.41 s after the last
# frame, each on a connection 1.50 s old; docs/intermediaries.md)
LAZY_S = 0.3
_BIN = math.log(1.005)
_FLOOR = 0.001  # seconds: shorter silences share the first bin
# how much more one direction must explain to be named alone
_DIRECTION_MARGIN = 1.1

_DIRECTION_TEXT = {
    SERVER: "silence from the server (no frame from it)",
    EITHER: "silence in both directions (no frame either way)",
    CLIENT: "silence from the clients (no frame from them)",
    SERVER_OR_EITHER: (
        "silence from the server (the run's heartbeats cannot tell that apart "
        "from silence in both directions)"
    ),
}


def tolerance(seconds: float) -> float:
    """Half the width of a cluster's window around ``seconds``."""
    return max(ABS_TOL, REL_TOL * seconds)


def window(seconds: float) -> tuple[float, float]:
    """The silences a timeout of ``seconds`` explains: ± the tolerance, and
    down to :data:`LAZY_S` earlier (an idle timer that was not moved by a
    frame soon after it was set fires that much early)."""
    tol = tolerance(seconds)
    return seconds - tol - LAZY_S, seconds + tol


@dataclass
class _Bin:
    count: int = 0
    total: float = 0.0  # the sum of the values, for their mean
    low: float = math.inf
    high: float = -math.inf
    t_first: float = math.inf
    t_last: float = -math.inf
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, value: float, t: float, reason: str) -> None:
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        self.t_first = min(self.t_first, t)
        self.t_last = max(self.t_last, t)
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


class Silences:
    """One length per close, in logarithmic bins."""

    def __init__(self) -> None:
        self.bins: dict[int, _Bin] = {}
        self.count = 0
        self.longest = 0.0

    def add(self, value: float, t: float, reason: str) -> None:
        key = round(math.log(max(value, _FLOOR)) / _BIN)
        b = self.bins.get(key)
        if b is None:
            b = self.bins[key] = _Bin()
        b.add(value, t, reason)
        self.count += 1
        self.longest = max(self.longest, value)


@dataclass(frozen=True)
class Cluster:
    seconds: float  # the median of the lengths in the window
    closes: int
    low: float
    high: float
    t_first: float
    t_last: float
    reasons: dict[str, int]


def densest(s: Silences) -> Cluster | None:
    """The window of ±tolerance that holds the most closes (None: no closes)."""
    if not s.bins:
        return None
    keys = sorted(s.bins)
    bins = [s.bins[k] for k in keys]
    centres = [b.total / b.count for b in bins]
    cum = [0]
    for b in bins:
        cum.append(cum[-1] + b.count)
    best: tuple[int, int, int] | None = None  # (count, lo index, hi index)
    for c in centres:
        low, high = window(c)
        lo = bisect.bisect_left(centres, low)
        hi = bisect.bisect_right(centres, high)
        n = cum[hi] - cum[lo]
        if best is None or n > best[0]:
            best = (n, lo, hi)
    assert best is not None
    n, lo, hi = best
    inside = bins[lo:hi]
    # the length: the median of the window (the few early closes of a lazy
    # timer do not pull it down)
    half, seen, median = n / 2, 0, centres[lo]
    for i in range(lo, hi):
        seen += bins[i].count
        if seen >= half:
            median = centres[i]
            break
    reasons: dict[str, int] = {}
    for b in inside:
        for k, v in b.reasons.items():
            reasons[k] = reasons.get(k, 0) + v
    return Cluster(
        seconds=median,
        closes=n,
        low=min(b.low for b in inside),
        high=max(b.high for b in inside),
        t_first=min(b.t_first for b in inside),
        t_last=max(b.t_last for b in inside),
        reasons=dict(sorted(reasons.items())),
    )


class CloseSilences:
    """The closes without a close frame, by silence length. Feed it every
    event of a run (:meth:`observe` ignores all but the ``close`` events it
    can use)."""

    def __init__(self) -> None:
        self.abrupt = 0  # closes without a close frame, not explained otherwise
        self.server = Silences()
        self.either = Silences()
        self.age = Silences()

    def observe(self, ev: Mapping[str, Any]) -> None:
        if ev.get("event") != "close" or not is_unexplained_abrupt(ev):
            return
        evidence = ev.get("evidence")
        if not isinstance(evidence, Mapping):
            return
        server = _number(evidence.get("last_frame_age_s"))
        if server is None:
            return
        t = _number(ev.get("t")) or 0.0
        reason = str(ev.get("reason"))
        self.abrupt += 1
        self.server.add(server, t, reason)
        sent = _number(evidence.get("last_sent_age_s"))
        if sent is not None:
            self.either.add(min(server, sent), t, reason)
        age = _number(evidence.get("age_s"))
        if age is not None:
            self.age.add(age, t, reason)

    def observe_all(self, events: Iterable[Mapping[str, Any]]) -> CloseSilences:
        for ev in events:
            self.observe(ev)
        return self


def is_unexplained_abrupt(ev: Mapping[str, Any]) -> bool:
    """A close with no close frame (EOF or RST) that soak did not judge
    otherwise (not the server's described heartbeat timeout, not our own
    storm reset)."""
    return (
        ev.get("initiator") == "transport"
        and ev.get("category") == "transport"
        and ev.get("transport") in ("eof", "reset")
    )


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


@dataclass(frozen=True)
class IdleTimeout:
    """An intermediary idle timeout, as summary.json carries it."""

    seconds: float
    direction: str  # SERVER, EITHER or SERVER_OR_EITHER
    closes: int
    abrupt_closes: int
    low: float
    high: float
    t_first: float
    t_last: float
    reasons: dict[str, int]
    heartbeat_interval: float

    @property
    def share(self) -> float:
        return self.closes / self.abrupt_closes if self.abrupt_closes else 0.0

    @property
    def below_heartbeat(self) -> bool:
        return self.seconds < self.heartbeat_interval

    def text(self) -> str:
        head = (
            f"an idle timeout of {self.seconds:.1f} s after {_DIRECTION_TEXT[self.direction]} "
            f"closed {self.closes} connections ({self.share:.0%} of the "
            f"{self.abrupt_closes} closes without a close frame)"
        )
        hb = self.heartbeat_interval
        if self.below_heartbeat:
            return (
                f"{head}; heartbeats every {hb:g} s leave the connection silent longer than "
                f"that: send heartbeats more often than every {self.seconds:.1f} s, or raise "
                "the timeout of the proxy, load balancer or NAT in front of the gateway"
            )
        return (
            f"{head}; that is longer than the {hb:g} s heartbeat interval, so these "
            "connections had gone quiet: heartbeats were not sent or not answered"
        )

    def record(self) -> dict[str, Any]:
        return {
            "reason": REASON,
            "category": CATEGORY,
            "timeout_s": round(self.seconds, 3),
            "direction": self.direction,
            "closes": self.closes,
            "abrupt_closes": self.abrupt_closes,
            "share": round(self.share, 4),
            "silence_s": {"min": round(self.low, 3), "max": round(self.high, 3)},
            "first_t_s": round(self.t_first, 3),
            "last_t_s": round(self.t_last, 3),
            "reasons": dict(self.reasons),
            "hop": None,
            "heartbeat_interval_s": self.heartbeat_interval,
            "below_heartbeat": self.below_heartbeat,
            "text": self.text(),
        }


def _qualifies(c: Cluster | None, s: Silences, heartbeat_interval: float) -> bool:
    if c is None or c.closes < MIN_CLOSES or c.t_last - c.t_first < MIN_SPAN_S:
        return False
    low, high = window(c.seconds)
    width = high - low
    spread = max(quantile(s, 0.9), heartbeat_interval, width)
    windows = spread / width
    return windows * binomial_tail(s.count, c.closes, width / spread) < ALPHA


def quantile(s: Silences, q: float) -> float:
    """The ``q`` quantile of the lengths (a bin's mean stands for its values)."""
    rank = q * s.count
    seen = 0
    value = 0.0
    for key in sorted(s.bins):
        b = s.bins[key]
        seen += b.count
        value = b.total / b.count
        if seen >= rank:
            break
    return value


def binomial_tail(n: int, k: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space."""
    if k <= 0:
        return 1.0
    if p >= 1.0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    logp, logq = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    total = 0.0
    for j in range(k, n + 1):
        term = math.exp(
            base - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * logp + (n - j) * logq
        )
        total += term
        if j > k + 50 and term < total * 1e-12:
            break
    return min(total, 1.0)


def _same(a: Cluster, b: Cluster) -> bool:
    return abs(a.seconds - b.seconds) <= tolerance(max(a.seconds, b.seconds))


def find_idle_timeouts(closes: CloseSilences, heartbeat_interval: float) -> list[IdleTimeout]:
    """The idle timeouts the closes show, most closes first (see the module)."""
    found: dict[str, Cluster] = {}
    for direction, s in ((SERVER, closes.server), (EITHER, closes.either)):
        c = densest(s)
        if c is not None and _qualifies(c, s, heartbeat_interval):
            found[direction] = c
    if SERVER in found and EITHER in found and _same(found[SERVER], found[EITHER]):
        srv, eth = found[SERVER], found[EITHER]
        if srv.closes > _DIRECTION_MARGIN * eth.closes:
            found = {SERVER: srv}
        elif eth.closes > _DIRECTION_MARGIN * srv.closes:
            found = {EITHER: eth}
        else:
            found = {SERVER_OR_EITHER: srv}
    age = densest(closes.age)
    out: list[IdleTimeout] = []
    for direction, c in found.items():
        if age is not None and age.closes > c.closes and not _same(age, c):
            continue  # the connections ended at a fixed age, not a fixed silence
        out.append(
            IdleTimeout(
                seconds=c.seconds,
                direction=direction,
                closes=c.closes,
                abrupt_closes=closes.abrupt,
                low=c.low,
                high=c.high,
                t_first=c.t_first,
                t_last=c.t_last,
                reasons=c.reasons,
                heartbeat_interval=heartbeat_interval,
            )
        )
    return sorted(out, key=lambda x: -x.closes)


def analyse(events: Iterable[Mapping[str, Any]], heartbeat_interval: float) -> list[IdleTimeout]:
    """:func:`find_idle_timeouts` over a run's events."""
    return find_idle_timeouts(CloseSilences().observe_all(events), heartbeat_interval)


def intermediary_summary(
    closes: CloseSilences, heartbeat_interval: float, tot: dict[str, Any]
) -> list[dict[str, Any]]:
    """summary.json's ``intermediaries`` list; sets ``tot["intermediary_closes"]``
    (what the ``intermediary_closes`` threshold judges) and moves the closes
    to their own reason in ``tot`` (soak.closes_named)."""
    found = [x.record() for x in find_idle_timeouts(closes, heartbeat_interval)]
    tot[COUNT] = sum(int(x["closes"]) for x in found)
    reattribute(tot, found)
    return found


def intermediary_checks(
    found: list[dict[str, Any]], thresholds: Iterable[Threshold]
) -> list[dict[str, Any]]:
    """The default check: a run in which an intermediary closed connections
    does not pass, unless the profile judges ``intermediary_closes`` itself
    (then its threshold decides, like any other). Nothing when none was found."""
    found = [x for x in found if x.get("reason") == REASON]  # not a reload's
    if not found or any(th.name == COUNT for th in thresholds):
        return []
    n = sum(int(x["closes"]) for x in found)
    return [
        {
            "name": COUNT,
            "limit": "0",
            "value": str(n),
            "ok": False,
            "op": "<=",
            "default": True,
            "text": (
                f"FAIL {COUNT} <= 0 (default): {n}, closed by an intermediary idle timeout "
                f"of {float(found[0]['timeout_s']):.1f} s"
            ),
        }
    ]
