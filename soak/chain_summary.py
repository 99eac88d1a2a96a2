"""Pure: summary.json's ``intermediaries`` and ``chain``, from the run's
closes judged against its hops (soak.chain) and the idle timeouts nobody
declared (soak.intermediary).

``intermediaries``: one entry per cause named, most closes first. A
declared hop whose idle timeout the closes show is named as that hop
(``hop``: its name); an idle timeout found in the silences that no hop
has is named with ``hop`` null; a hop's reload is reason
``intermediary_reload``. The closes move to these reasons in the totals
(soak.closes_named).

``chain`` (only when the profile has hops): each hop's prediction
(soak.chain.predict, what ``soak doctor`` says) next to what the run saw,
and a verdict per hop: ``agrees``, ``masked`` (a shorter timeout in front
of it closed the connections first), ``not_observable`` (the run was too
short to reach it) or ``contradicted``, each with a sentence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from soak.beats import Beats
from soak.chain import (
    ALPHA,
    MIN_CLOSES,
    MIN_SPAN_S,
    RELOAD_REASON,
    ChainCloses,
    HopPrediction,
    Tally,
    first_to_close,
    matches,
    predict,
)
from soak.closes_named import reattribute
from soak.config.hops import CLIENT, EITHER, SERVER, Hop
from soak.intermediary import (
    CATEGORY,
    COUNT,
    IdleTimeout,
    binomial_tail,
    find_idle_timeouts,
    quantile,
    window,
)
from soak.intermediary import CLIENT as CLIENT_DIRECTION
from soak.intermediary import EITHER as EITHER_DIRECTION
from soak.intermediary import SERVER as SERVER_DIRECTION

RELOAD_COUNT = "intermediary_reload_closes"
_DIRECTION = {SERVER: SERVER_DIRECTION, EITHER: EITHER_DIRECTION, CLIENT: CLIENT_DIRECTION}


def named(t: Tally, closes: ChainCloses, hop: Hop, interval: float) -> bool:
    """Are a hop's idle closes more than chance (see soak.chain)?"""
    if t.count < MIN_CLOSES or t.t_last - t.t_first < MIN_SPAN_S:
        return False
    low, high = window(hop.timeout)
    width = high - low
    s = closes.silences.server
    spread = max(quantile(s, 0.9) if s.count else 0.0, interval, width)
    return binomial_tail(max(closes.silences.abrupt, t.count), t.count, width / spread) < ALPHA


def _idle_entry(hop: Hop, t: Tally, abrupt: int, interval: float) -> dict[str, Any]:
    x = IdleTimeout(
        seconds=t.mean,
        direction=_DIRECTION[hop.resets],
        closes=t.count,
        abrupt_closes=max(abrupt, t.count),
        low=t.low,
        high=t.high,
        t_first=t.t_first,
        t_last=t.t_last,
        reasons=dict(sorted(t.reasons.items())),
        heartbeat_interval=interval,
    )
    rec = x.record()
    rec["hop"] = hop.label()
    rec["hop_timeout_s"] = hop.timeout
    rec["text"] = f"hop '{hop.label()}' ({hop.kind}): {x.text()}"
    return rec


def _reload_entry(
    hop: Hop, t: Tally, reloads: Sequence[float], storms: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    assert hop.shutdown_timeout is not None
    shutdown = hop.shutdown_timeout
    at = min(reloads, key=lambda r: abs(t.t_first - r - shutdown))
    storm = next(
        (s.get("index") for s in storms if abs(float(s.get("start_s", -1e9)) - t.t_first) <= 1.0),
        None,
    )
    after = t.t_first - at
    text = (
        f"hop '{hop.label()}' ({hop.kind}) closed {t.count} connections without a close frame "
        f"{after:.1f} s after the reload at {at:.1f} s (its shutdown_timeout is "
        f"{hop.shutdown_timeout:g} s): the old workers' connections, closed by the {hop.kind}, "
        "not by the gateway"
    ) + (f"; storm {storm} followed" if storm is not None else "")
    return {
        "reason": RELOAD_REASON,
        "category": CATEGORY,
        "hop": hop.label(),
        "closes": t.count,
        "reasons": dict(sorted(t.reasons.items())),
        "reload_t_s": round(at, 3),
        "shutdown_timeout_s": hop.shutdown_timeout,
        "after_reload_s": round(after, 3),
        "first_t_s": round(t.t_first, 3),
        "last_t_s": round(t.t_last, 3),
        "storm": storm,
        "text": text,
    }


def summarize(
    closes: ChainCloses,
    interval: float,
    tot: dict[str, Any],
    *,
    duration: float,
    storms: Sequence[Mapping[str, Any]] = (),
    beats: Beats | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """summary.json's ``intermediaries`` and ``chain`` (None without hops);
    sets ``tot["intermediary_closes"]`` (idle timeouts, what the default
    check judges), ``tot["intermediary_reload_closes"]`` (when a reload was
    named) and moves the named closes to their reasons in ``tot``."""
    hops = closes.hops
    entries: list[dict[str, Any]] = []
    named_hops: list[Hop] = []
    for hop in hops:
        t = closes.idle[hop.label()]
        if named(t, closes, hop, interval):
            named_hops.append(hop)
            entries.append(_idle_entry(hop, t, closes.silences.abrupt, interval))
    for x in find_idle_timeouts(closes.silences, interval):
        if any(matches(h.timeout, x.seconds) for h in named_hops):
            continue  # the hop's own entry counts these closes, one by one
        entries.append(x.record())
    for hop in hops:
        t = closes.reload[hop.label()]
        if t.count >= MIN_CLOSES and closes.reloads:
            entries.append(_reload_entry(hop, t, closes.reloads, storms))
    entries.sort(key=lambda e: -int(e["closes"]))
    idle = [e for e in entries if e["reason"] != RELOAD_REASON]
    tot[COUNT] = sum(int(e["closes"]) for e in idle)
    reload_closes = sum(int(e["closes"]) for e in entries if e["reason"] == RELOAD_REASON)
    if reload_closes:
        tot[RELOAD_COUNT] = reload_closes
    reattribute(tot, entries)
    chain = chain_record(hops, closes, idle, beats or interval, duration) if hops else None
    return entries, chain


def chain_record(
    hops: Sequence[Hop],
    closes: ChainCloses,
    idle: Sequence[Mapping[str, Any]],
    interval: float | Beats,
    duration: float,
) -> dict[str, Any]:
    """Prediction and observation side by side, hop by hop."""
    preds = predict(hops, interval)
    by_hop = {str(e["hop"]): e for e in idle if e.get("hop")}
    unlisted = [e for e in idle if not e.get("hop")]
    seen = sorted((float(e["timeout_s"]), str(e.get("hop") or "")) for e in idle)
    first_seen = seen[0] if seen else None
    rows = []
    for hop, p in zip(hops, preds, strict=True):
        entry = by_hop.get(hop.label())
        verdict, text = judge_hop(p, entry, closes.idle[hop.label()], first_seen, duration)
        rows.append(
            {
                "name": hop.label(),
                "kind": hop.kind,
                "idle_timeout_s": hop.timeout,
                "resets_on": hop.resets,
                "source": hop.source,
                "shutdown_timeout_s": hop.shutdown_timeout,
                "predicted": {
                    "closes": p.closes,
                    "silence_s": p.silence,
                    "within_s": p.within_s if p.closes else None,
                    "text": p.text(),
                },
                "observed": {
                    "closes": closes.idle[hop.label()].count,
                    "named": entry is not None,
                    "timeout_s": None if entry is None else entry["timeout_s"],
                    "first_t_s": None if entry is None else entry["first_t_s"],
                    "reload_closes": closes.reload[hop.label()].count,
                },
                "verdict": verdict,
                "text": text,
            }
        )
    first = first_to_close(preds)
    observed_first = None
    if first_seen is not None:
        observed_first = {"hop": first_seen[1] or None, "timeout_s": first_seen[0]}
    verdicts = {r["verdict"] for r in rows}
    agrees: bool | None = True
    if "contradicted" in verdicts or unlisted:
        agrees = False
    elif "not_observable" in verdicts:
        agrees = None
    return {
        "hops": rows,
        "predicted_first": None
        if first is None
        else {"hop": first.hop, "after_s": first.timeout, "within_s": first.within_s},
        "observed_first": observed_first,
        "unlisted": [
            {"timeout_s": e["timeout_s"], "closes": e["closes"], "direction": e["direction"]}
            for e in unlisted
        ],
        "agrees": agrees,
        "text": chain_text(first, observed_first, unlisted, agrees),
    }


def judge_hop(
    p: HopPrediction,
    entry: Mapping[str, Any] | None,
    tally: Tally,
    first_seen: tuple[float, str] | None,
    duration: float,
) -> tuple[str, str]:
    """One hop's verdict and its sentence."""
    if p.closes and entry is not None:
        return "agrees", (
            f"predicted: closes idle connections after {p.timeout:g} s; seen: "
            f"{entry['closes']} closes after {float(entry['timeout_s']):.1f} s of silence"
        )
    if not p.closes and entry is None:
        return "agrees", f"predicted: closes none ({p.margin:g} s to spare); seen: none"
    if not p.closes:
        assert entry is not None
        return "contradicted", (
            f"predicted to close none, but it closed {entry['closes']} connections after "
            f"{float(entry['timeout_s']):.1f} s of silence: its timeout is shorter than "
            f"{p.silence:g} s after all, or heartbeats went unsent or unanswered"
        )
    if first_seen is not None and first_seen[0] < p.timeout:
        return "masked", (
            f"predicted: closes idle connections after {p.timeout:g} s; not seen, because an "
            f"idle timeout of {first_seen[0]:.1f} s in front of it closed them first"
        )
    if duration < p.within_s:
        return "not_observable", (
            f"predicted: closes idle connections after {p.timeout:g} s, each within "
            f"{p.within_s:g} s of opening; the run lasted {duration:.0f} s, too short to see it"
        )
    return "contradicted", (
        f"predicted: closes idle connections after {p.timeout:g} s of silence; the run saw "
        f"{tally.count} closes at that silence: something keeps the connections from going "
        "idle that long (the server's own frames?), or the hop's timeout is not what the "
        "profile says"
    )


def chain_text(
    first: HopPrediction | None,
    observed: Mapping[str, Any] | None,
    unlisted: Sequence[Mapping[str, Any]],
    agrees: bool | None,
) -> str:
    said = (
        "no hop closes idle connections"
        if first is None
        else f"hop '{first.hop}' closes idle connections first, after {first.timeout:g} s"
    )
    if observed is None:
        saw = "no idle timeout closed connections"
    elif observed["hop"]:
        saw = f"hop '{observed['hop']}' closed them first, after {observed['timeout_s']:.1f} s"
    else:
        saw = f"an idle timeout of {observed['timeout_s']:.1f} s that no hop has closed them first"
    if unlisted and observed is not None and observed["hop"]:
        saw += f"; also an idle timeout of {float(unlisted[0]['timeout_s']):.1f} s no hop has"
    verdict = {True: "agrees", False: "CONTRADICTED", None: "not seen in this run"}[agrees]
    return f"predicted: {said}; observed: {saw}: {verdict}"
