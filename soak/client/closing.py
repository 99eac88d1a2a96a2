"""Close bookkeeping: how a connection's end is judged, counted and told
(the ``close`` event with its evidence), and the server's "come back later"."""

from __future__ import annotations

import re
from typing import Any

from soak.classify import (
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    SERVER,
    ZOMBIE,
    CloseInfo,
    Verdict,
)
from soak.client.shared import Shared
from soak.protocols.base import HeartbeatProtocol

# when a client's previous connection ended, and its reason key
LastClose = tuple[float, str]


def client_event(
    sh: Shared, client_id: str, kind: str, now: float, **fields: Any
) -> dict[str, Any]:
    """An event of one client, stamped with the run's elapsed time."""
    return {"t": round(sh.services.elapsed(now), 6), "event": kind, "client": client_id, **fields}


def record_close(
    sh: Shared,
    protocol: HeartbeatProtocol,
    client_id: str,
    previous: LastClose | None,
    info: CloseInfo,
    now: float,
    *,
    unfinished: bool = False,
) -> LastClose:
    """Judge and count a connection's end, with its event. Returns what the
    client's next close will cite as ``previous_close``."""
    m = sh.services.metrics
    verdict = protocol.judge(sh.config.classifier.classify(info), info)
    m.close(verdict.key, verdict.category, info.code)
    if verdict.key == FALSE_TIMEOUT:
        m.count("false_timeouts")
    elif verdict.key == JUSTIFIED_TIMEOUT:
        m.count("justified_timeouts")
    _emit_close(sh, client_id, previous, info, verdict, now, unfinished=unfinished)
    return (now, verdict.key)


def _emit_close(
    sh: Shared,
    client_id: str,
    previous: LastClose | None,
    info: CloseInfo,
    verdict: Verdict,
    now: float,
    *,
    unfinished: bool,
) -> None:
    ev = client_event(
        sh,
        client_id,
        "close",
        now,
        reason=verdict.key,
        category=verdict.category,
        initiator=info.initiator,
        code=info.code,
        text=info.reason,
    )
    if info.transport:
        ev["transport"] = info.transport
    if unfinished:
        # cut short by the run's shutdown deadline before the server answered
        ev["unfinished"] = True
    if verdict.why:
        ev["why"] = verdict.why
    e = info.evidence
    if e is not None and info.cause == ZOMBIE and e.unresponsive_for is not None:
        # how long detection took: from sending the first of the pings
        # that went unanswered to the verdict
        hb_interval = sh.config.profile.heartbeat.interval
        ev["detected_after_s"] = round(e.unresponsive_for, 6)
        ev["detected_after_intervals"] = round(e.unresponsive_for / hb_interval, 3)
    if previous is not None:
        # what came before this connection: a false timeout right after a
        # reconnect points at the reconnect (e.g. a stale server session)
        ev["previous_close"] = {
            "reason": previous[1],
            "ago_s": round(now - previous[0], 6),
        }
    if e is not None:
        ev["evidence"] = {
            "age_s": round(e.age, 6),
            "last_pong_age_s": None if e.last_pong_age is None else round(e.last_pong_age, 6),
            "last_frame_age_s": None if e.last_frame_age is None else round(e.last_frame_age, 6),
            "last_sent_age_s": None if e.last_sent_age is None else round(e.last_sent_age, 6),
            "consecutive_missed": e.consecutive_missed,
            "pings_pending": e.pings_pending,
            "unresponsive_for_s": None
            if e.unresponsive_for is None
            else round(e.unresponsive_for, 6),
        }
        if e.server_beat_age is not None:
            # since the server's last heartbeat (its ping or its beat)
            ev["evidence"]["server_beat_age_s"] = round(e.server_beat_age, 6)
        if e.answered is not None:
            ev["evidence"]["server_pings_answered"] = e.answered
    sh.services.emit(ev)


_RETRY_MS = re.compile(r'"retryAfterMs"\s*:\s*(\d+(?:\.\d+)?)')
_RETRY_TEXT = re.compile(r"retry[ _-]?after\D{0,3}(\d+(?:\.\d+)?)\s*(ms|s)?", re.IGNORECASE)


def retry_hint(info: CloseInfo) -> float | None:
    """A server's "come back later" delay, in seconds: close 1013 (try again
    later) whose reason carries ``retryAfterMs`` (OpenClaw's JSON errors) or
    "retry after N[ms|s]". The backoff never retries sooner than this."""
    if info.initiator != SERVER or info.code != 1013 or not info.reason:
        return None
    m = _RETRY_MS.search(info.reason)
    if m:
        return float(m.group(1)) / 1000.0
    m = _RETRY_TEXT.search(info.reason)
    if m:
        value = float(m.group(1))
        return value / 1000.0 if (m.group(2) or "s").lower() == "ms" else value
    return None
