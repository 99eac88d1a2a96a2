"""Pure: the facts a run's findings are made of (:class:`Facts`, told the
run's events and interval records one at a time, in bounded memory), and
the :class:`Finding` record itself, with the few computations and words
the findings share (the RSS line, a storm's figures, times in a sentence).
:mod:`soak.findings` makes the findings.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from soak.config.units import format_duration
from soak.intermediary import CloseSilences

# distinct close signatures kept for the false timeouts; the rest are counted
# together (a server whose close text varies per connection stays bounded)
MAX_SIGNATURES = 20

ERROR = "error"
WARNING = "warning"
SEVERITIES = (ERROR, WARNING)


# spans kept of the intervals with false timeouts, and of those where the
# tester was the bottleneck (beyond: counted, see _Spans)
MAX_SPANS = 200

# the tester's RSS must grow this much while the load holds (and over at
# least RSS_MIN_SPAN_S) to be a finding
RSS_GROWTH_SHARE = 0.25
RSS_GROWTH_BYTES = 32_000_000  # 32 MB
RSS_MIN_POINTS = 5
RSS_MIN_SPAN_S = 60.0
# a storm whose reconnects are at least this in phase is called synchronised
SYNC_IN_PHASE = 0.5


def seconds(v: float) -> str:
    """A time for a sentence: "1.5 s", "42 s", "5m40s", "23h15m"."""
    if v < 60:
        return f"{v:.1f} s" if v < 10 else f"{v:.0f} s"
    return format_duration(round(v) if v < 3600 else round(v / 60) * 60)


def span_text(low: float, high: float, style: str = "range") -> str:
    """Two times: "1.5-1.6 s" (under 100 s, to a tenth), or "from 5m to 5m40s"."""
    if style == "range" and high < 100:
        a, b = f"{low:.1f}", f"{high:.1f}"
        return f"{a} s" if a == b else f"{a}-{b} s"
    if seconds(low) == seconds(high):
        return f"at {seconds(low)}"
    return f"from {seconds(low)} to {seconds(high)}"


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


@dataclass(frozen=True)
class Finding:
    key: str  # one of KINDS, with ":<detail>" for an intermediary
    severity: str  # ERROR or WARNING
    text: str  # one sentence, with its figures
    anchor: str  # the id of its evidence in report.html
    count: int = 0  # how many (connections, intervals, ...): for ranking
    spans: tuple[tuple[float, float], ...] = ()  # when, seconds since the start

    @property
    def kind(self) -> str:
        return self.key.split(":", 1)[0]

    def record(self) -> dict[str, Any]:
        """summary.json's form."""
        return {
            "key": self.key,
            "severity": self.severity,
            "text": self.text,
            "anchor": self.anchor,
            "count": self.count,
            "spans": [[round(a, 3), round(b, 3)] for a, b in self.spans],
        }


def number(v: object) -> float | None:
    """A finite int or float as a float; None for anything else (bools too)."""
    if type(v) is float:
        return v if math.isfinite(v) else None
    if type(v) is int:
        return float(v)
    return None


@dataclass(frozen=True)
class Settings:
    """What the profile says that findings need. ``server_*``: the
    profile's ``[target.server_heartbeat]`` (None without one)."""

    heartbeat_interval: float | None = None
    heartbeat_timeout: float | None = None
    max_missed: int | None = None  # the clients'
    max_attempts: int | None = None  # reconnect attempts before giving up
    server_interval: float | None = None
    server_timeout: float | None = None
    server_max_missed: int | None = None

    @classmethod
    def from_profile_record(cls, profile: Any) -> Settings:
        """From run.json's ``profile`` (or Profile.redacted())."""

        def table(d: Any, key: str) -> Mapping[str, Any]:
            v = d.get(key) if isinstance(d, Mapping) else None
            return v if isinstance(v, Mapping) else {}

        hb, rc = table(profile, "heartbeat"), table(profile, "reconnect")
        sh = table(table(profile, "target"), "server_heartbeat")

        def integer(v: object) -> int | None:
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        return cls(
            heartbeat_interval=number(hb.get("interval")),
            heartbeat_timeout=number(hb.get("timeout")),
            max_missed=integer(hb.get("max_missed")),
            max_attempts=integer(rc.get("max_attempts")),
            server_interval=number(sh.get("interval")),
            server_timeout=number(sh.get("timeout")),
            server_max_missed=integer(sh.get("max_missed")),
        )


class _Spans:
    """Intervals [start, end) merged when they touch, in bounded memory: the
    first :data:`MAX_SPANS` are kept (what a finding and the report show),
    the rest only counted (:attr:`count`, :attr:`seconds` stay whole).
    A run whose flag flips every interval for a day would otherwise keep a
    pair per interval."""

    def __init__(self) -> None:
        self.items: list[tuple[float, float]] = []
        self.count = 0  # spans in all, kept or not
        self.seconds = 0.0  # their length in all
        self._last: tuple[float, float] | None = None  # the latest span, kept or not

    def add(self, a: float, b: float) -> None:
        last = self._last
        self.seconds += b - a
        if last is not None and abs(last[1] - a) < 1e-6:
            self._last = (last[0], b)
            if self.items and self.items[-1] == last:
                self.items[-1] = self._last
            return
        self._last = (a, b)
        self.count += 1
        if len(self.items) < MAX_SPANS:
            self.items.append(self._last)

    @property
    def evicted(self) -> int:
        """Spans counted but not kept."""
        return self.count - len(self.items)


@dataclass
class _Range:
    low: float = math.inf
    high: float = -math.inf
    n: int = 0

    def add(self, v: float) -> None:
        if v < self.low:
            self.low = v
        if v > self.high:
            self.high = v
        self.n += 1


@dataclass
class _Drift:
    """The longest stretch of polls on which the server's count differed
    from ours in one direction."""

    sign: int = 0
    start: float = 0.0
    end: float = 0.0
    polls: int = 0
    gap: int = 0  # the largest |gap| of the stretch, with its sign
    best: tuple[int, float, float, int] | None = None  # (polls, start, end, gap)

    def add(self, t0: float, t1: float, gap: int | None) -> None:
        sign = 0 if gap is None else (gap > 0) - (gap < 0)
        if sign != self.sign:
            self.sign, self.start, self.polls, self.gap = sign, t0, 0, 0
        if not sign or gap is None:
            return
        self.end, self.polls = t1, self.polls + 1
        if abs(gap) > abs(self.gap):
            self.gap = gap
        if self.best is None or self.polls > self.best[0]:
            self.best = (self.polls, self.start, self.end, self.gap)


@dataclass
class Facts:
    """What findings are made of, told event by event and interval by
    interval (see the module)."""

    settings: Settings = field(default_factory=Settings)
    closes: CloseSilences = field(default_factory=CloseSilences)
    # False: someone else feeds ``closes`` (the runner's chain, soak.chain,
    # which keeps there only the closes no hop explains)
    feed_closes: bool = True
    # from the interval records: the counts
    counts: Counter[str] = field(default_factory=Counter)
    handshake_causes: Counter[str] = field(default_factory=Counter)
    end_s: float = 0.0
    peak_target: int = 0
    false_timeout_spans: _Spans = field(default_factory=_Spans)
    bottleneck: _Spans = field(default_factory=_Spans)
    bottleneck_lag_ms: float = 0.0
    bottleneck_read_lag_ms: float = 0.0  # answers left unread (soak.client.batch)
    rss: RssFit = field(default_factory=lambda: RssFit())  # the tester's RSS, in constant memory
    drift: _Drift = field(default_factory=_Drift)
    # from the events: the evidence
    ft_seen: int = 0
    ft_signatures: Counter[str] = field(default_factory=Counter)
    ft_since_pong: _Range = field(default_factory=_Range)
    ft_since_open: _Range = field(default_factory=_Range)  # the ones with no pong yet
    ft_missed: Counter[int] = field(default_factory=Counter)
    ft_after_reconnect: int = 0
    ft_when: _Range = field(default_factory=_Range)
    ft_why: str = ""
    zombie_detect: _Range = field(default_factory=_Range)
    gave_up_when: _Range = field(default_factory=_Range)
    handshake_first: dict[str, str] = field(default_factory=dict)
    storms_open: dict[int, dict[str, Any]] = field(default_factory=dict)
    storms_done: dict[int, dict[str, Any]] = field(default_factory=dict)
    permanent: dict[str, Any] | None = None

    def observe(self, ev: Mapping[str, Any]) -> None:
        """One event of the run (others than those used are ignored)."""
        if self.feed_closes:
            self.closes.observe(ev)
        kind = ev.get("event")
        t = number(ev.get("t")) or 0.0
        if kind == "close":
            reason = ev.get("reason")
            if reason == "false_timeout":
                self._false_timeout(ev, t)
            elif reason == "client_zombie":
                d = number(ev.get("detected_after_s"))
                if d is not None:
                    self.zombie_detect.add(d)
        elif kind == "reconnect_failed":
            self.gave_up_when.add(t)
        elif kind == "handshake_failure":
            cause = str(ev.get("cause"))
            if cause not in self.handshake_first and len(self.handshake_first) < 50:
                self.handshake_first[cause] = str(ev.get("error") or "")[:160]
        elif kind == "storm_start" and isinstance(ev.get("storm"), int):
            self.storms_open[int(ev["storm"])] = {"index": ev["storm"], "start_s": round(t, 3)}
        elif kind == "storm_end" and isinstance(ev.get("index"), int):
            self.storms_open.pop(int(ev["index"]), None)
            self.storms_done[int(ev["index"])] = {k: v for k, v in ev.items() if k != "event"}
        elif kind == "permanent_failure" and self.permanent is None:
            self.permanent = dict(ev)

    def _false_timeout(self, ev: Mapping[str, Any], t: float) -> None:
        self.ft_seen += 1
        self.ft_when.add(t)
        code, text = ev.get("code"), ev.get("text")
        if ev.get("initiator") == "transport":
            sig = "an abrupt close without a close frame"
        elif text:
            sig = f"{code} {text}"[:80] if code is not None else str(text)[:80]
        else:
            sig = str(code)
        if sig in self.ft_signatures or len(self.ft_signatures) < MAX_SIGNATURES:
            self.ft_signatures[sig] += 1
        else:
            self.ft_signatures["other signatures"] += 1
        if not self.ft_why and isinstance(ev.get("why"), str):
            self.ft_why = ev["why"]
        e = ev.get("evidence")
        if type(e) is dict:
            pong, age = number(e.get("last_pong_age_s")), number(e.get("age_s"))
            if pong is not None:
                self.ft_since_pong.add(pong)
            elif age is not None:
                self.ft_since_open.add(age)
            missed = e.get("consecutive_missed")
            if type(missed) is int:
                self.ft_missed[missed] += 1
        prev = ev.get("previous_close")
        if type(prev) is dict and prev.get("reason") == "false_timeout":
            self.ft_after_reconnect += 1

    def observe_all(self, events: Iterable[Mapping[str, Any]]) -> Facts:
        for ev in events:
            self.observe(ev)
        return self

    def interval(self, rec: Mapping[str, Any]) -> None:
        """One intervals.jsonl record."""
        t0 = number(rec.get("t")) or 0.0
        t1 = t0 + (number(rec.get("dt")) or 0.0)
        self.end_s = max(self.end_s, t1)
        for k in (
            "false_timeouts",
            "zombies",
            "reconnect_failed",
            "handshake_failure_total",
            "events_dropped",
            "skipped",
            "connects",
            "missed",
            "late",
            "pongs",
        ):
            v = rec.get(k)
            if isinstance(v, int) and not isinstance(v, bool):
                self.counts[k] += v
        for family, counter in (("handshake_failures", self.handshake_causes),):
            d = rec.get(family)
            if isinstance(d, Mapping):
                counter.update({str(k): int(v) for k, v in d.items() if isinstance(v, int)})
        dropped = rec.get("dropped_samples")
        if isinstance(dropped, Mapping):
            self.counts["dropped_samples"] += sum(v for v in dropped.values() if isinstance(v, int))
        target = rec.get("target")
        target = target if isinstance(target, int) and not isinstance(target, bool) else 0
        self.peak_target = max(self.peak_target, target)
        if (number(rec.get("false_timeouts")) or 0) > 0:
            self.false_timeout_spans.add(t0, t1)
        if rec.get("tester_bottleneck") is True:
            self.bottleneck.add(t0, t1)
            self.bottleneck_lag_ms = max(self.bottleneck_lag_ms, number(rec.get("lag_p99_ms")) or 0)
            self.bottleneck_read_lag_ms = max(
                self.bottleneck_read_lag_ms, number(rec.get("read_lag_p99_ms")) or 0
            )
        rss = rec.get("rss_bytes")
        if isinstance(rss, int) and not isinstance(rss, bool) and rss > 0:
            self.rss.add(t1, rss, target)
        if "connection_gap" in rec:
            gap = rec.get("connection_gap")
            self.drift.add(t0, t1, gap if isinstance(gap, int) else None)

    def intervals(self, records: Iterable[Mapping[str, Any]]) -> Facts:
        for rec in records:
            self.interval(rec)
        return self

    def storms(self) -> list[dict[str, Any]]:
        """The storms seen in the events: ended ones whole, open ones by start."""
        return [*self.storms_done.values(), *self.storms_open.values()]


class RssFit:
    """The tester's RSS as the intervals report it, in constant memory: the
    first, largest and latest figure, and a least-squares line through the
    points taken while the target was at its peak so far (a higher target
    starts the line again: the points of a lower one are the ramp). A
    day-long run at 1 s intervals would otherwise keep 86,400 points."""

    __slots__ = ("_b", "_cbt", "_ctt", "_t", "_t0", "_t1", "first", "last", "n", "peak", "target")

    def __init__(self) -> None:
        self.first: int | None = None
        self.last: int | None = None
        self.peak = 0
        self.n = 0  # points on the line
        self.target = -1  # the peak target so far (the line's)
        self._t = self._b = 0.0  # the line's means
        self._ctt = self._cbt = 0.0  # its co-moments (Welford: no cancellation over a day)
        self._t0 = self._t1 = 0.0

    def add(self, t: float, rss: int, target: int) -> None:
        if self.first is None:
            self.first = rss
        self.last = rss
        self.peak = max(self.peak, rss)
        if target < self.target:
            return
        if target > self.target:
            self.target, self.n, self._t, self._b, self._ctt, self._cbt = (
                target,
                0,
                0.0,
                0.0,
                0.0,
                0.0,
            )
            self._t0 = t
        self.n += 1
        self._t1 = t
        dt = t - self._t
        self._t += dt / self.n
        self._b += (rss - self._b) / self.n
        self._ctt += dt * (t - self._t)
        self._cbt += dt * (rss - self._b)

    def growth(self) -> tuple[float, float, float] | None:
        """(start bytes, end bytes, seconds) of the line while the load held
        at its peak; None with too few points or too short a span."""
        if self.n < RSS_MIN_POINTS or self._t1 - self._t0 < RSS_MIN_SPAN_S:
            return None
        slope = self._cbt / self._ctt if self._ctt else 0.0
        b0 = self._b + slope * (self._t0 - self._t)
        b1 = self._b + slope * (self._t1 - self._t)
        return b0, b1, self._t1 - self._t0


def rss_growth(points: Iterable[tuple[float, int, int]]) -> tuple[float, float, float] | None:
    """(start bytes, end bytes, seconds) of the tester's RSS while the load
    held at its peak, from a least-squares line; None with too few points.
    ``points``: (t, bytes, target), in time order."""
    fit = RssFit()
    for t, b, target in points:
        fit.add(t, b, target)
    return fit.growth()


def storm_text(st: Mapping[str, Any]) -> str:
    """One storm's figures: size, peak, recovery, synchronisation."""
    parts = [f"{st.get('lost', 0):,} connections lost"]
    peak = st.get("peak_attempts_per_100ms")
    if isinstance(peak, int):
        parts.append(f"peak {peak:,} reconnect attempts per 100 ms")
    rec = st.get("recovery_s")
    if isinstance(rec, Mapping):
        p50, p100 = number(rec.get("p50")), number(rec.get("p100"))
        if p50 is not None:
            parts.append(
                f"half back in {seconds(p50)}"
                + (f", all in {seconds(p100)}" if p100 is not None else ", not all back")
            )
    sync = number(st.get("sync_index_after"))
    if sync is not None and sync >= SYNC_IN_PHASE:
        parts.append(f"the clients came back in step (sync index {sync:.2f}; 1 = all in phase)")
    return ", ".join(parts)
