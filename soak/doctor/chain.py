"""Pure: the profile's chain (``[[target.hops]]``) checked before the run.

For each hop, the heartbeat interval against its idle timeout, in the
direction whose traffic resets it (soak.chain.predict: with heartbeats the
server answers, the silence is the interval in every direction), then the
prediction: which hop closes idle connections first, and when. ``soak
run`` with the same profile puts what it saw next to this prediction
(summary.json's ``chain``).

Findings:

- ``hop-timeout-short`` (error): a hop's idle timeout is not longer than
  the silence the heartbeats leave: it closes idle connections.
- ``hop-timeout-ok`` (info): it is longer, with the margin.
- ``hop-config-differs`` (warning): the profile's ``idle_timeout`` is not
  what the hop's ``config`` file says.
- ``hop-default`` (info): the timeout is the kind's documented default.
- ``chain-prediction`` (info): which hop closes first, or that none does.
"""

from __future__ import annotations

import math

from soak.beats import beats, race
from soak.chain import first_to_close, predict
from soak.config.profile import Profile
from soak.doctor.findings import CONSISTENCY, ERROR, INFO, WARNING, Finding, fmt_s


def check_beats(profile: Profile) -> list[Finding]:
    """The dialect's gap between frames (soak.beats) against the idle
    timeouts common hops have by default: a warning per hop it reaches
    (``dialect-gap-vs-hop``), so a chain nobody described is still checked
    for the usual suspects (MQTT.js's 60 s keepalive against nginx's and
    AWS's 60 s, NATS's 2 min server ping). With ``[[target.hops]]`` given,
    check_chain judges those instead."""
    if profile.target.hops:
        return []
    b = beats(profile)
    out = []
    for name, timeout, gap in race(b):
        shown = "nothing is sent" if math.isinf(gap) else f"a frame every {fmt_s(gap)} at most"
        out.append(
            Finding(
                CONSISTENCY,
                WARNING,
                "dialect-gap-vs-hop",
                f"{profile.path}: {b.why}: {shown}, which reaches the {name} of "
                f"{fmt_s(timeout)}: such a hop in front of the gateway would close idle "
                "connections",
                "heartbeat more often than that, or describe the chain in [[target.hops]] "
                "so soak checks the hops you really have",
            )
        )
    return out


def check_chain(profile: Profile) -> list[Finding]:
    hops = profile.target.hops
    if not hops:
        return []
    where = f"{profile.path}: target.hops"
    interval = profile.heartbeat.interval
    preds = predict(hops, beats(profile))
    out: list[Finding] = []
    for i, (hop, p) in enumerate(zip(hops, preds, strict=True)):
        at = f"{where}[{i}] ({hop.label()})"
        if p.closes:
            out.append(
                Finding(
                    CONSISTENCY,
                    ERROR,
                    "hop-timeout-short",
                    f"{at}: {p.text()}",
                    f"send heartbeats more often than every {fmt_s(hop.timeout)} "
                    f"(heartbeat.interval), or raise the {hop.kind}'s idle timeout above "
                    f"{fmt_s(interval)}",
                )
            )
        else:
            out.append(Finding(CONSISTENCY, INFO, "hop-timeout-ok", f"{at}: {p.text()}"))
        if hop.config_timeout is not None and abs(hop.config_timeout - hop.timeout) > 1e-9:
            out.append(
                Finding(
                    CONSISTENCY,
                    WARNING,
                    "hop-config-differs",
                    f"{at}: idle_timeout is {fmt_s(hop.timeout)} but {hop.config} says "
                    f"{fmt_s(hop.config_timeout)}; soak judges closes against the profile's",
                    "make them agree: drop idle_timeout to use the file's, or fix the file",
                )
            )
        if hop.source.startswith(f"{hop.kind} default"):
            out.append(
                Finding(
                    CONSISTENCY,
                    INFO,
                    "hop-default",
                    f"{at}: no idle_timeout given; assuming the {hop.source}",
                    "give idle_timeout if yours is configured otherwise",
                )
            )
    first = first_to_close(preds)
    if first is None:
        nearest = min(preds, key=lambda p: p.margin)
        text = (
            f"prediction: no hop closes idle connections; the nearest is '{nearest.hop}' "
            f"({fmt_s(nearest.timeout)} against {fmt_s(nearest.silence)} of silence). "
            "soak run with this profile reports whether that held (summary.json chain)"
        )
    else:
        text = (
            f"prediction: hop '{first.hop}' closes idle connections first, "
            f"{fmt_s(first.timeout)} after their last frame, each within "
            f"{fmt_s(first.within_s)} of opening. soak run with this profile reports "
            "whether it did (summary.json chain)"
        )
    out.append(Finding(CONSISTENCY, INFO, "chain-prediction", text))
    return out
