"""Pure: how a connection ended, and whose fault it was.

Every connection end is described by a :class:`CloseInfo`: who ended it,
the close frame (if any), what the transport did, and the client's evidence
at that moment. :func:`classify` turns it into a :class:`Verdict`: one reason
key (what ``intervals.jsonl`` and ``summary.json`` count closes by), its
category, and for heartbeat timeouts the reasoning.

The incident's question is "when a client drops, whose fault was it?". A
server close that carries the server's heartbeat-timeout signature (a close
code, a reason text, or an abrupt close about T after the last pong; see
``[target.server_heartbeat]``) is judged against the client's evidence:

- **false timeout**: the client was alive. Its last pong or last frame is
  younger than the server's timeout, or it had missed fewer than the
  server's ``max_missed`` heartbeats. The incident's logs said "last pong:
  2s ago" next to a heartbeat timeout: that is this case.
- **justified timeout**: the client really was silent.

Without a ``[target.server_heartbeat]`` section soak cannot tell a heartbeat
timeout from any other close, and server closes are counted by code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from soak.config.heartbeat import ServerHeartbeat

CLIENT = "client"  # we closed it on purpose
SERVER = "server"  # the server sent a close frame
TRANSPORT = "transport"  # the network lost it: no close frame (1006)

# why a client closes on purpose
SHUTDOWN = "shutdown"  # the run is ending (1001)
SCALE_DOWN = "scale_down"  # the load shape asks for fewer clients (1000)
CHURN = "churn"  # a churn stage recycles the connection (1000)
ZOMBIE = "zombie"  # heartbeats unanswered max_missed times (1001 per RFC 6455 7.4.1)
STORM_DROP = "storm_drop"  # a storm stage dropped it cleanly (1001)
STORM_RESET = "storm_reset"  # a storm stage reset it: no close frame, a TCP RST
PROTOCOL_ERROR = "protocol_error"  # the server sent a malformed or oversized frame

# reason keys for the server's heartbeat timeouts
FALSE_TIMEOUT = "false_timeout"
JUSTIFIED_TIMEOUT = "justified_timeout"

# categories, for charts that stack closes
CATEGORY_CLIENT = "client"
CATEGORY_HEARTBEAT = "heartbeat_timeout"
CATEGORY_SERVER = "server"
CATEGORY_TRANSPORT = "transport"

# names of the usual server close codes (RFC 6455 7.4.1 and the IANA registry)
CODE_NAMES = {
    1000: "normal",
    1001: "going_away",
    1002: "protocol_error",
    1003: "unsupported_data",
    1007: "invalid_payload",
    1008: "policy_violation",
    1009: "message_too_big",
    1011: "internal_error",
    1012: "service_restart",
    1013: "try_again_later",
    1014: "bad_gateway",
}


@dataclass(frozen=True)
class Evidence:
    """What the client knew when the connection ended. Ages in seconds,
    None when the thing never happened on this connection."""

    age: float  # how long the connection had been open
    last_pong_age: float | None
    last_frame_age: float | None
    consecutive_missed: int
    pings_pending: int
    # since the first ping of the current run of misses was sent; None when
    # the last ping decided was answered
    unresponsive_for: float | None = None
    # since the client last sent a frame (a heartbeat, or the answer to a
    # server ping); with last_frame_age, the silence in either direction
    last_sent_age: float | None = None
    # dialects whose server pings (Engine.IO 4): since its last heartbeat
    # (None: none came), and whether every one of them was answered
    # (None: the dialect's server does not ping at the dialect level)
    server_beat_age: float | None = None
    answered: bool | None = None


@dataclass(frozen=True)
class CloseInfo:
    initiator: str  # CLIENT, SERVER or TRANSPORT
    code: int | None = None  # the close code received or sent; 1006 for transport loss
    reason: str = ""
    transport: str | None = None  # "eof" or "reset" when the network lost it
    cause: str | None = None  # for CLIENT: SHUTDOWN, SCALE_DOWN, CHURN or ZOMBIE
    evidence: Evidence | None = None


@dataclass(frozen=True)
class Verdict:
    key: str  # the reason key closes are counted by
    category: str
    why: str = ""  # for heartbeat timeouts: the evidence that decided it


def server_key(code: int | None) -> str:
    """``server_1012_service_restart``, ``server_4001``, ..."""
    name = CODE_NAMES.get(code or 0)
    return f"server_{code}_{name}" if name else f"server_{code}"


class Classifier:
    """Classifies closes for one run. Built once from the profile: the
    reason pattern is compiled here, not per close."""

    def __init__(self, server: ServerHeartbeat | None) -> None:
        self.server = server
        self._pattern = re.compile(server.reason_pattern, re.IGNORECASE) if server else None

    def is_heartbeat_timeout(self, info: CloseInfo) -> bool:
        """Does this end carry the server's heartbeat-timeout signature?"""
        sh = self.server
        if sh is None:
            return False
        if info.initiator == SERVER:
            if info.code in sh.close_codes:
                return True
            return bool(info.reason and self._pattern and self._pattern.search(info.reason))
        if info.initiator == TRANSPORT and sh.abrupt_after is not None:
            ev = info.evidence
            # "abrupt close at about T after the last pong": the server
            # terminated the socket without a close frame (OpenClaw does this
            # ~50 s after an unanswered server ping)
            since = None if ev is None else (ev.last_pong_age or ev.age)
            if since is not None and abs(since - sh.abrupt_after) <= sh.abrupt_tolerance:
                return True
        if (
            info.initiator == TRANSPORT
            and info.transport in ("eof", "reset")
            and sh.abrupt_period is not None
            and info.evidence is not None
        ):
            return on_period(info.evidence.age, sh.abrupt_period, sh.abrupt_tolerance)
        return False

    def classify(self, info: CloseInfo) -> Verdict:
        if info.initiator == CLIENT:
            return Verdict(f"client_{info.cause}", CATEGORY_CLIENT)
        if self.is_heartbeat_timeout(info):
            return self._judge(info)
        if info.initiator == SERVER:
            return Verdict(server_key(info.code), CATEGORY_SERVER)
        return Verdict(f"transport_{info.transport}", CATEGORY_TRANSPORT)

    def _judge(self, info: CloseInfo) -> Verdict:
        sh = self.server
        ev = info.evidence
        assert sh is not None
        if ev is None:  # no evidence, no accusation
            return Verdict(JUSTIFIED_TIMEOUT, CATEGORY_HEARTBEAT, "no client evidence")
        if ev.answered is not None:
            return self._judge_answers(ev)
        alive: list[str] = []
        if ev.last_pong_age is not None and ev.last_pong_age < sh.timeout:
            alive.append(f"last pong {ev.last_pong_age:.3f}s ago < server timeout {sh.timeout:g}s")
        if ev.last_frame_age is not None and ev.last_frame_age < sh.timeout:
            alive.append(
                f"last frame {ev.last_frame_age:.3f}s ago < server timeout {sh.timeout:g}s"
            )
        if ev.consecutive_missed < sh.max_missed:
            alive.append(
                f"{ev.consecutive_missed} heartbeats missed < server max_missed {sh.max_missed}"
            )
        if alive:
            return Verdict(FALSE_TIMEOUT, CATEGORY_HEARTBEAT, "; ".join(alive))
        silent = (
            f"no pong for {_age(ev.last_pong_age)}, no frame for {_age(ev.last_frame_age)}, "
            f"{ev.consecutive_missed} heartbeats missed"
        )
        return Verdict(JUSTIFIED_TIMEOUT, CATEGORY_HEARTBEAT, silent)

    def _judge_answers(self, ev: Evidence) -> Verdict:
        """A dialect whose server pings and the client answers: the server
        may time a client out once ``timeout`` has passed since a ping
        whose answer did not reach it. Earlier, or with every ping of the
        last ``timeout`` answered and acknowledged by the next ping, the
        client was alive. What the client cannot see: an answer written but
        lost on the way (a network, soak's own impairment) looks to it the
        same as an answer the server ignored; both count as justified."""
        sh = self.server
        assert sh is not None
        age = ev.server_beat_age if ev.server_beat_age is not None else ev.age
        since = "since the connection opened" if ev.server_beat_age is None else "ago"
        if age < sh.timeout - (ABRUPT_SLACK + 0.02 * sh.timeout):
            return Verdict(
                FALSE_TIMEOUT,
                CATEGORY_HEARTBEAT,
                f"last server heartbeat {age:.3f}s {since} < server timeout {sh.timeout:g}s"
                + ("" if ev.answered else " (one was unanswered)"),
            )
        how = "answered" if ev.answered else "not all answered"
        return Verdict(
            JUSTIFIED_TIMEOUT,
            CATEGORY_HEARTBEAT,
            f"no server heartbeat for {age:.3f}s >= server timeout {sh.timeout:g}s; "
            f"its pings {how}, the last answer sent {_age(ev.last_sent_age)} ago",
        )


# how much earlier than its timeout a server may act, as seen by the client
# (timer granularity, the network's jitter), before the close counts as
# premature: this plus 2 % of the timeout
ABRUPT_SLACK = 0.05


def _age(age: float | None) -> str:
    return "the whole connection" if age is None else f"{age:.3f}s"


def on_period(age: float, period: float, tolerance: float) -> bool:
    """Does a connection that ended at ``age`` end on a server's ping timer
    that started with it: at 2, 3, ... periods, within ``tolerance``? (The
    first period's ping is the one that can go unanswered.)"""
    k = round(age / period)
    return k >= 2 and abs(age - k * period) <= tolerance


_AUTH_REASON = re.compile(r"unauthori[sz]ed|auth|token|credential|pairing", re.IGNORECASE)


def openclaw_verdict(
    verdict: Verdict, info: CloseInfo, shutdown: dict[str, object] | None
) -> Verdict:
    """An OpenClaw Gateway's server closes, told apart by their reasons:
    1012 after a ``shutdown`` event is an announced restart (``shutdown`` is
    that event's payload, None when none came), 1008 is either a slow
    consumer or an authentication decision, 1002 a protocol mismatch and
    1013 "try again later" (gateway starting)."""
    if info.initiator != SERVER or verdict.category != CATEGORY_SERVER:
        return verdict
    code, reason = info.code, info.reason
    if code == 1012:
        if shutdown is None:
            return Verdict(verdict.key, verdict.category, "no shutdown event before it")
        notice = ", ".join(f"{k} {v}" for k, v in shutdown.items())
        return Verdict("server_1012_restart", verdict.category, f"after a shutdown event: {notice}")
    if code == 1008:
        if "slow consumer" in reason.lower():
            return Verdict("server_1008_slow_consumer", verdict.category, reason)
        if _AUTH_REASON.search(reason):
            return Verdict("server_1008_auth", verdict.category, reason)
    if code == 1002 and "protocol" in reason.lower():
        return Verdict("server_1002_protocol_mismatch", verdict.category, reason)
    if code == 1013:
        return Verdict(verdict.key, verdict.category, reason or "try again later")
    return verdict
