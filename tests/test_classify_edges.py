"""Close classification at its edges (soak.classify): the abrupt-close
signatures (after the last pong, on a server's ping period) at their
tolerance, which ends they apply to, and the reasons a verdict gives."""

from __future__ import annotations

import pytest

from soak.classify import (
    CATEGORY_HEARTBEAT,
    CATEGORY_SERVER,
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    SERVER,
    TRANSPORT,
    Classifier,
    CloseInfo,
    Evidence,
    Verdict,
    openclaw_verdict,
)
from soak.config.heartbeat import ServerHeartbeat
from soak.metrics import to_us

AFTER = ServerHeartbeat(interval=25.0, timeout=50.0, abrupt_after=50.0, abrupt_tolerance=5.0)
PERIOD = ServerHeartbeat(interval=25.0, timeout=50.0, abrupt_period=25.0, abrupt_tolerance=2.0)


def ev(age: float, last_pong: float | None = None, last_frame: float | None = None) -> Evidence:
    return Evidence(
        age=age,
        last_pong_age=last_pong,
        last_frame_age=last_frame,
        consecutive_missed=0,
        pings_pending=0,
    )


def lost(how: str, e: Evidence | None) -> CloseInfo:
    return CloseInfo(TRANSPORT, 1006, "", how, evidence=e)


@pytest.mark.parametrize(
    ("since_pong", "timeout"),
    [(45.0, True), (55.0, True), (44.5, False), (55.5, False)],
)
def test_abrupt_after_the_last_pong_within_its_tolerance(since_pong: float, timeout: bool) -> None:
    v = Classifier(AFTER).classify(lost("eof", ev(600.0, since_pong)))
    assert (v.category == CATEGORY_HEARTBEAT) is timeout


def test_abrupt_after_needs_evidence_and_a_transport_loss() -> None:
    c = Classifier(AFTER)
    assert c.classify(lost("eof", None)).key == "transport_eof"
    # a server's ordinary close 50 s after the last pong is the server's close
    server = CloseInfo(SERVER, 1000, "bye", evidence=ev(600.0, 50.0))
    assert c.classify(server).key == "server_1000_normal"


@pytest.mark.parametrize(
    ("how", "age", "timeout"),
    [
        ("eof", 50.0, True),  # the second period: the first unanswered ping timed out
        ("reset", 77.0, True),  # the third, at its tolerance
        ("eof", 73.0, True),
        ("eof", 77.5, False),
        ("eof", 25.0, False),  # the first period's ping is the one that can go unanswered
        ("eof", 62.5, False),  # between periods
        ("protocol", 50.0, False),  # a malformed frame is not the server's timer
    ],
)
def test_abrupt_on_the_servers_ping_period(how: str, age: float, timeout: bool) -> None:
    v = Classifier(PERIOD).classify(lost(how, ev(age)))
    assert (v.category == CATEGORY_HEARTBEAT) is timeout
    if not timeout:
        assert v.key == f"transport_{how}"


def test_the_period_signature_needs_evidence() -> None:
    assert Classifier(PERIOD).classify(lost("eof", None)).key == "transport_eof"


SH = ServerHeartbeat(interval=1.0, timeout=4.0, max_missed=3)


def timeout_close(e: Evidence | None) -> CloseInfo:
    return CloseInfo(SERVER, 4000, "heartbeat timeout", evidence=e)


def test_no_evidence_no_accusation() -> None:
    assert Classifier(SH).classify(timeout_close(None)) == Verdict(
        JUSTIFIED_TIMEOUT, CATEGORY_HEARTBEAT, "no client evidence"
    )


def test_a_frame_exactly_the_servers_timeout_ago_is_not_proof_of_life() -> None:
    e = Evidence(
        age=60.0, last_pong_age=None, last_frame_age=4.0, consecutive_missed=5, pings_pending=0
    )
    v = Classifier(SH).classify(timeout_close(e))
    assert v == Verdict(
        JUSTIFIED_TIMEOUT,
        CATEGORY_HEARTBEAT,
        "no pong for the whole connection, no frame for 4.000s, 5 heartbeats missed",
    )


def test_every_reason_a_client_was_alive_is_given() -> None:
    e = Evidence(
        age=60.0, last_pong_age=2.0, last_frame_age=0.5, consecutive_missed=1, pings_pending=0
    )
    assert Classifier(SH).classify(timeout_close(e)) == Verdict(
        FALSE_TIMEOUT,
        CATEGORY_HEARTBEAT,
        "last pong 2.000s ago < server timeout 4s; last frame 0.500s ago < server timeout 4s; "
        "1 heartbeats missed < server max_missed 3",
    )


def test_durations_to_microseconds() -> None:
    assert to_us(0.0015) == 1500
    assert to_us(3600.0) == 3_600_000_000  # the histogram's top, exactly
    assert to_us(0.0000015) == 2  # rounded, not truncated
    assert to_us(0.0) == 0
    assert to_us(-0.5) == 0  # a clock step backwards is no negative latency


def test_openclaw_server_closes_keep_their_category_and_give_their_reason() -> None:
    c = Classifier(None)

    def judged(code: int, reason: str) -> Verdict:
        info = CloseInfo(SERVER, code, reason)
        return openclaw_verdict(c.classify(info), info, None)

    assert judged(1012, "service restart") == Verdict(
        "server_1012_service_restart", CATEGORY_SERVER, "no shutdown event before it"
    )
    assert judged(1008, "Slow Consumer") == Verdict(
        "server_1008_slow_consumer", CATEGORY_SERVER, "Slow Consumer"
    )
    assert judged(1008, "pairing required") == Verdict(
        "server_1008_auth", CATEGORY_SERVER, "pairing required"
    )
    assert judged(1002, "Protocol version") == Verdict(
        "server_1002_protocol_mismatch", CATEGORY_SERVER, "Protocol version"
    )
    # only 1002 with "protocol" is a mismatch; another code's "protocol" is not
    assert judged(1011, "protocol handler crashed").key == "server_1011_internal_error"
    assert judged(1002, "bad frame").key == "server_1002_protocol_error"
    assert judged(1013, "") == Verdict(
        "server_1013_try_again_later", CATEGORY_SERVER, "try again later"
    )
    # a transport loss is not a server close, even with a server's code
    lost_conn = CloseInfo(TRANSPORT, 1012, "", "eof")
    assert openclaw_verdict(c.classify(lost_conn), lost_conn, None).key == "transport_eof"


# -- a dialect whose server pings and the client answers (Engine.IO 4) ---------------

ANSWERS = ServerHeartbeat(interval=25.0, timeout=20.0, close_codes=(4000,))


def answering(
    age: float, beat: float | None, answered: bool = True, sent: float | None = 1.0
) -> CloseInfo:
    e = Evidence(
        age=age,
        last_pong_age=None,
        last_frame_age=beat,
        consecutive_missed=0,
        pings_pending=0,
        last_sent_age=sent,
        server_beat_age=beat,
        answered=answered,
    )
    return CloseInfo(SERVER, 4000, "", evidence=e)


def test_a_client_that_answered_a_recent_server_ping_was_timed_out_falsely() -> None:
    """The server pinged 5 s before it closed for a 20 s timeout: the client
    was within it. The limit is the timeout less the slack (0.05 s + 2%)."""
    c = Classifier(ANSWERS)
    assert c.classify(answering(100.0, 5.0)) == Verdict(
        FALSE_TIMEOUT,
        CATEGORY_HEARTBEAT,
        "last server heartbeat 5.000s ago < server timeout 20s",
    )
    unanswered = c.classify(answering(100.0, 5.0, answered=False))
    assert unanswered.key == FALSE_TIMEOUT
    assert (
        unanswered.why
        == "last server heartbeat 5.000s ago < server timeout 20s (one was unanswered)"
    )
    limit = 20.0 - (0.05 + 0.02 * 20.0)  # 19.55 s
    assert c.classify(answering(100.0, limit - 0.01)).key == FALSE_TIMEOUT
    assert c.classify(answering(100.0, limit)).key == JUSTIFIED_TIMEOUT


def test_a_client_the_server_stopped_pinging_was_timed_out_justly() -> None:
    c = Classifier(ANSWERS)
    assert c.classify(answering(100.0, 30.0, sent=29.5)) == Verdict(
        JUSTIFIED_TIMEOUT,
        CATEGORY_HEARTBEAT,
        "no server heartbeat for 30.000s >= server timeout 20s; "
        "its pings answered, the last answer sent 29.500s ago",
    )
    v = c.classify(answering(100.0, 30.0, answered=False, sent=None))
    assert v.why == (
        "no server heartbeat for 30.000s >= server timeout 20s; "
        "its pings not all answered, the last answer sent the whole connection ago"
    )


def test_without_any_server_ping_the_silence_runs_from_the_connection_start() -> None:
    c = Classifier(ANSWERS)
    early = c.classify(answering(3.0, None))
    assert early == Verdict(
        FALSE_TIMEOUT,
        CATEGORY_HEARTBEAT,
        "last server heartbeat 3.000s since the connection opened < server timeout 20s",
    )
    assert c.classify(answering(25.0, None)).key == JUSTIFIED_TIMEOUT
