"""Pure: the closes judged against the chain the profile describes
(``[[target.hops]]``, soak.config.hops), and what the chain predicts.

:class:`ChainCloses` is the run's observer of its events (it wraps
:class:`soak.intermediary.CloseSilences`, which looks for idle timeouts
nobody declared). For each close no close frame explains it also asks
every hop, in chain order:

- **a reload?** A storm stage that runs a command (``nginx -s reload``,
  ``systemctl reload haproxy``) marks an instant; a hop with a
  ``shutdown_timeout`` (nginx ``worker_shutdown_timeout``, HAProxy
  ``hard-stop-after``) closes its old workers' connections that long after
  it. A close in ``[instant + shutdown - RELOAD_EARLY_S, instant + shutdown
  + RELOAD_LATE_S]`` is that hop's reload: the connections end at one
  moment, a fixed time after the reload, whatever their silence.
- **an idle timeout?** The close's silence in the direction that resets
  the hop's timer (``server``: since the last frame from the server;
  ``client``: since the client last sent; ``either``: the smaller) falls in
  the hop's window (soak.intermediary.window). Of several hops whose
  windows hold it, the one whose timeout is nearest takes it.

A hop's idle closes are named when they are not chance: at least
:data:`MIN_CLOSES` of them, spread over :data:`MIN_SPAN_S` or more, and
the binomial chance of so many in one window of the spread of silences a
randomly dropping gateway leaves below :data:`ALPHA`. The window is
declared before the run, so there is no search over windows (no factor
for the number of windows, unlike an undeclared timeout). A reload's
closes need :data:`MIN_CLOSES` too; the instant and the declared drain
limit are the evidence.

:func:`predict` is what ``soak doctor --profile`` says before the run and
what summary.json puts next to what the run saw (soak.chain_summary).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from soak.beats import Beats
from soak.config.hops import CLIENT, EITHER, SERVER, Hop
from soak.intermediary import CloseSilences, is_unexplained_abrupt, tolerance, window

RELOAD_REASON = "intermediary_reload"
MIN_CLOSES = 3
MIN_SPAN_S = 1.0
ALPHA = 1e-3
RELOAD_EARLY_S = 0.25
RELOAD_LATE_S = 1.0  # the reload command's own time, and the hop's timer


def silence(evidence: Mapping[str, Any], resets: str) -> float | None:
    """The close's silence as a hop reset by ``resets`` traffic counts it."""
    server = _number(evidence.get("last_frame_age_s"))
    sent = _number(evidence.get("last_sent_age_s"))
    if resets == SERVER:
        return server
    if resets == CLIENT:
        return sent
    if server is None or sent is None:
        return server if sent is None else sent
    return min(server, sent)


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


@dataclass
class Tally:
    """The closes one hop explains: how many, their silences, when."""

    count: int = 0
    total: float = 0.0
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

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


class ChainCloses:
    """The run's closes, judged against its hops as they come (bounded
    memory: one :class:`Tally` per hop and per reload). Feed it every event."""

    def __init__(self, hops: Sequence[Hop] = ()) -> None:
        self.hops = tuple(hops)
        self.silences = CloseSilences()
        self.idle: dict[str, Tally] = {h.label(): Tally() for h in self.hops}
        self.reload: dict[str, Tally] = {h.label(): Tally() for h in self.hops}
        self.reloads: list[float] = []  # run times of storm commands (reload instants)

    def observe(self, ev: Mapping[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "storm_stage" and ev.get("command"):
            t = _number(ev.get("t"))
            if t is not None:
                self.reloads.append(t)
            return
        if kind != "close":
            return
        evidence = ev.get("evidence")
        t = _number(ev.get("t"))
        if (
            not self.hops
            or not is_unexplained_abrupt(ev)
            or not isinstance(evidence, Mapping)
            or t is None
        ):
            self.silences.observe(ev)
            return
        reason = str(ev.get("reason"))
        for hop in self.hops:
            if self._is_reload(hop, t):
                # explained by the reload: not a silence to look for timeouts in
                age = silence(evidence, EITHER)
                self.reload[hop.label()].add(0.0 if age is None else age, t, reason)
                return
        self.silences.observe(ev)
        best: tuple[float, Hop, float] | None = None
        for hop in self.hops:
            s = silence(evidence, hop.resets)
            if s is None:
                continue
            low, high = window(hop.timeout)
            off = abs(s - hop.timeout) / hop.timeout
            if low <= s <= high and (best is None or off < best[0]):
                best = (off, hop, s)
        if best is not None:
            self.idle[best[1].label()].add(best[2], t, reason)

    def _is_reload(self, hop: Hop, t: float) -> bool:
        if hop.shutdown_timeout is None:
            return False
        at = hop.shutdown_timeout
        return any(r + at - RELOAD_EARLY_S <= t <= r + at + RELOAD_LATE_S for r in self.reloads)

    def observe_all(self, events: Iterable[Mapping[str, Any]]) -> ChainCloses:
        for ev in events:
            self.observe(ev)
        return self


# -- the prediction ------------------------------------------------------------------


@dataclass(frozen=True)
class HopPrediction:
    """What one hop will do to connections whose only traffic is the
    heartbeat (request and answer, every ``interval``)."""

    hop: str
    kind: str
    timeout: float
    resets: str
    silence: float  # the longest silence the heartbeats leave in the hop's direction
    closes: bool
    within_s: float  # a connection's age by which its first close comes (if closes)

    @property
    def margin(self) -> float:
        return self.timeout - self.silence

    def text(self) -> str:
        what = {SERVER: "from the server", CLIENT: "from the clients", EITHER: "either way"}
        head = (
            f"hop '{self.hop}' ({self.kind}, idle timeout {self.timeout:g} s, reset by traffic "
            f"{what[self.resets]}): "
            + (
                f"heartbeats leave {self.silence:g} s of silence"
                if math.isfinite(self.silence)
                else "no heartbeat resets it"
            )
        )
        if self.closes:
            return (
                f"{head}, so it closes every idle connection {self.timeout:g} s after its "
                f"last frame, each within {self.within_s:g} s of opening"
            )
        return f"{head}, {self.margin:g} s less than its timeout: it closes none"


def predict(hops: Sequence[Hop], interval: float | Beats) -> list[HopPrediction]:
    """Each hop against the heartbeats: a float is heartbeats every
    ``interval`` that the server answers (the silence between frames is
    the interval in every direction); :class:`soak.beats.Beats` says how
    often each side sends for the profile's dialect, and each hop gets the
    gap in the direction whose traffic resets it. Frames other than
    heartbeats only shorten the silence, so a hop predicted to close may
    not; one predicted to keep connections does."""
    out = []
    for hop in hops:
        gap = interval if isinstance(interval, int | float) else interval.gap(hop.resets)
        closes = hop.timeout <= gap
        out.append(
            HopPrediction(
                hop=hop.label(),
                kind=hop.kind,
                timeout=hop.timeout,
                resets=hop.resets,
                silence=gap,
                closes=closes,
                within_s=round((gap if math.isfinite(gap) else 0.0) + hop.timeout, 3),
            )
        )
    return out


def first_to_close(predictions: Sequence[HopPrediction]) -> HopPrediction | None:
    """The hop that closes idle connections first: the shortest timeout of
    those that close (the first in chain order among equals)."""
    closing = [p for p in predictions if p.closes]
    return min(closing, key=lambda p: p.timeout) if closing else None


def matches(hop_timeout: float, seconds: float) -> bool:
    """An observed idle timeout of ``seconds`` is this hop's."""
    low, high = window(hop_timeout)
    return low <= seconds <= high or abs(seconds - hop_timeout) <= tolerance(hop_timeout)
