"""Pure close classification, with plain numbers."""

from __future__ import annotations

import pytest

from soak.classify import (
    CATEGORY_CLIENT,
    CATEGORY_HEARTBEAT,
    CATEGORY_SERVER,
    CATEGORY_TRANSPORT,
    CLIENT,
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    SERVER,
    TRANSPORT,
    ZOMBIE,
    Classifier,
    CloseInfo,
    Evidence,
    Verdict,
    server_key,
)
from soak.config.heartbeat import ServerHeartbeat

# the incident's server: ping every 30 s, timeout 120 s, maxMissed 3
INCIDENT = ServerHeartbeat(interval=30.0, timeout=120.0, max_missed=3)


def evidence(
    last_pong: float | None = 2.0,
    last_frame: float | None = 2.0,
    missed: int = 0,
    age: float = 600.0,
) -> Evidence:
    return Evidence(
        age=age,
        last_pong_age=last_pong,
        last_frame_age=last_frame,
        consecutive_missed=missed,
        pings_pending=0,
    )


def timeout_close(ev: Evidence, code: int = 4000, reason: str = "heartbeat_timeout") -> CloseInfo:
    return CloseInfo(SERVER, code, reason, evidence=ev)


def test_the_incident_last_pong_2s_ago_is_a_false_timeout() -> None:
    verdict = Classifier(INCIDENT).classify(timeout_close(evidence(last_pong=2.0)))
    assert verdict.key == FALSE_TIMEOUT
    assert verdict.category == CATEGORY_HEARTBEAT
    assert "last pong 2.000s ago < server timeout 120s" in verdict.why


def test_silent_client_is_a_justified_timeout() -> None:
    ev = evidence(last_pong=150.0, last_frame=150.0, missed=5)
    verdict = Classifier(INCIDENT).classify(timeout_close(ev))
    assert verdict.key == JUSTIFIED_TIMEOUT
    assert verdict.why == "no pong for 150.000s, no frame for 150.000s, 5 heartbeats missed"


@pytest.mark.parametrize(
    ("last_pong", "last_frame", "missed", "key"),
    [
        (119.999, 200.0, 5, FALSE_TIMEOUT),  # pong younger than the timeout
        (120.0, 200.0, 5, JUSTIFIED_TIMEOUT),  # exactly the timeout: not younger
        (200.0, 10.0, 5, FALSE_TIMEOUT),  # any frame proves life
        (200.0, 200.0, 2, FALSE_TIMEOUT),  # fewer than max_missed misses
        (200.0, 200.0, 3, JUSTIFIED_TIMEOUT),  # max_missed reached
        (None, None, 3, JUSTIFIED_TIMEOUT),  # never a pong, never a frame
    ],
)
def test_the_rule_at_its_boundaries(
    last_pong: float | None, last_frame: float | None, missed: int, key: str
) -> None:
    ev = evidence(last_pong=last_pong, last_frame=last_frame, missed=missed)
    assert Classifier(INCIDENT).classify(timeout_close(ev)).key == key


def test_signature_by_reason_pattern_and_code() -> None:
    sh = ServerHeartbeat(close_codes=(4408,), reason_pattern=r"ping.?timeout")
    c = Classifier(sh)
    ev = evidence(last_pong=1.0)
    assert c.classify(timeout_close(ev, code=4408, reason="")).key == FALSE_TIMEOUT
    assert c.classify(timeout_close(ev, code=1000, reason="Ping Timeout")).key == FALSE_TIMEOUT
    assert c.classify(timeout_close(ev, code=1000, reason="bye")).key == "server_1000_normal"


def test_abrupt_close_about_t_after_the_last_pong() -> None:
    # OpenClaw terminates ~50 s after an unanswered server ping, without a close frame
    sh = ServerHeartbeat(timeout=50.0, abrupt_after=50.0, abrupt_tolerance=5.0)
    c = Classifier(sh)

    def lost(last_pong: float, missed: int = 3) -> CloseInfo:
        ev = evidence(last_pong=last_pong, last_frame=last_pong, missed=missed)
        return CloseInfo(TRANSPORT, 1006, "", "eof", evidence=ev)

    assert c.classify(lost(52.0)).key == JUSTIFIED_TIMEOUT  # silent 52 s, 3 missed
    assert c.classify(lost(52.0, missed=1)).key == FALSE_TIMEOUT  # pongs were still coming
    assert c.classify(lost(40.0)).key == "transport_eof"  # too early for the signature
    assert c.classify(lost(56.0)).key == "transport_eof"  # too late


def test_without_server_knowledge_closes_are_counted_by_code() -> None:
    c = Classifier(None)
    ev = evidence(last_pong=1.0)
    assert c.classify(timeout_close(ev)).key == "server_4000"
    assert c.classify(timeout_close(ev)).category == CATEGORY_SERVER
    lost = CloseInfo(TRANSPORT, 1006, "", "reset", evidence=ev)
    assert c.classify(lost).key == "transport_reset"
    assert c.classify(lost).category == CATEGORY_TRANSPORT


def test_client_closes_keep_their_cause() -> None:
    c = Classifier(INCIDENT)
    verdict = c.classify(CloseInfo(CLIENT, 1001, "zombie", cause=ZOMBIE, evidence=evidence()))
    assert verdict.key == "client_zombie"
    assert verdict.category == CATEGORY_CLIENT


def test_no_evidence_no_accusation() -> None:
    verdict = Classifier(INCIDENT).classify(CloseInfo(SERVER, 4000, "heartbeat_timeout"))
    assert verdict.key == JUSTIFIED_TIMEOUT


@pytest.mark.parametrize(
    ("code", "key"),
    [
        (1001, "server_1001_going_away"),
        (1008, "server_1008_policy_violation"),
        (1011, "server_1011_internal_error"),
        (1012, "server_1012_service_restart"),
        (1013, "server_1013_try_again_later"),
        (4001, "server_4001"),
    ],
)
def test_server_keys_name_the_usual_codes(code: int, key: str) -> None:
    assert server_key(code) == key


def test_on_period_is_the_servers_ping_timer() -> None:
    from soak.classify import on_period

    assert on_period(50.0, 25.0, 2.0)
    assert on_period(51.9, 25.0, 2.0)
    assert on_period(74.0, 25.0, 2.0)
    assert not on_period(25.0, 25.0, 2.0)  # the first ping cannot have been missed yet
    assert not on_period(40.0, 25.0, 2.0)
    assert not on_period(52.5, 25.0, 2.0)


def test_openclaw_verdicts() -> None:
    from soak.classify import openclaw_verdict

    c = Classifier(None)

    def judged(code: int, reason: str, shutdown: dict[str, object] | None = None) -> Verdict:
        info = CloseInfo(SERVER, code, reason)
        return openclaw_verdict(c.classify(info), info, shutdown)

    notice: dict[str, object] = {"reason": "gateway restarting", "restartExpectedMs": 1500}
    assert judged(1012, "service restart", notice) == Verdict(
        "server_1012_restart",
        CATEGORY_SERVER,
        "after a shutdown event: reason gateway restarting, restartExpectedMs 1500",
    )
    assert judged(1012, "service restart").key == "server_1012_service_restart"
    assert judged(1008, "slow consumer").key == "server_1008_slow_consumer"
    assert judged(1008, "unauthorized: gateway token mismatch").key == "server_1008_auth"
    assert judged(1008, "something else").key == "server_1008_policy_violation"
    assert judged(1002, "protocol mismatch").key == "server_1002_protocol_mismatch"
    assert judged(1013, "gateway starting").why == "gateway starting"
    assert judged(4001, "custom").key == "server_4001"
    # closes that are not the server's pass through untouched
    own = CloseInfo(CLIENT, 1001, "going away", cause="shutdown")
    assert openclaw_verdict(c.classify(own), own, notice).key == "client_shutdown"
