"""Intermediary idle timeouts named from close events (soak.intermediary):
plain numbers, no clock, no socket."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from soak.config.thresholds import Threshold
from soak.intermediary import (
    COUNT,
    EITHER,
    MIN_CLOSES,
    SERVER,
    SERVER_OR_EITHER,
    CloseSilences,
    analyse,
    binomial_tail,
    intermediary_checks,
    intermediary_summary,
)
from soak.summary import judge


def close(
    t: float,
    server: float | None,
    sent: float | None = None,
    age: float | None = None,
    *,
    transport: str = "eof",
    category: str = "transport",
    initiator: str = "transport",
    reason: str | None = None,
) -> dict[str, Any]:
    evidence: dict[str, Any] = {
        "age_s": age if age is not None else (server or 0.0) + 1.0,
        "last_pong_age_s": server,
        "last_frame_age_s": server,
        "consecutive_missed": 0,
        "pings_pending": 0,
        "unresponsive_for_s": None,
    }
    if sent is not None:
        evidence["last_sent_age_s"] = sent
    return {
        "t": t,
        "event": "close",
        "client": "c1",
        "reason": reason or f"transport_{transport}",
        "category": category,
        "initiator": initiator,
        "code": 1006,
        "text": "",
        "transport": transport,
        "evidence": evidence,
    }


def nginx_case(rng: random.Random, n: int = 126) -> list[dict[str, Any]]:
    """The issue's run: nginx proxy_read_timeout 7s, 10 s JSON heartbeats:
    each close 6.93-7.01 s after the server's last frame (the pong), the
    client's ping a round trip before it."""
    out = []
    for _ in range(n):
        s = rng.uniform(6.93, 7.01)
        out.append(close(rng.uniform(7, 37), s, s + 0.0008, rng.uniform(7, 17)))
    return out


def test_the_issues_nginx_run_is_named() -> None:
    (found,) = analyse(nginx_case(random.Random(1)), heartbeat_interval=10.0)
    assert abs(found.seconds - 7.0) < 0.05
    assert found.closes == 126
    assert found.abrupt_closes == 126
    assert found.share == 1.0
    # request-response heartbeats: the pong is the last frame either way
    assert found.direction == SERVER_OR_EITHER
    assert found.below_heartbeat
    assert found.reasons == {"transport_eof": 126}
    text = found.text()
    assert "idle timeout of 7.0 s after silence from the server" in text
    assert "closed 126 connections (100% of the 126 closes without a close frame)" in text
    assert "heartbeats every 10 s leave the connection silent longer than that" in text
    rec = found.record()
    assert rec["reason"] == "intermediary_idle_timeout"
    assert rec["category"] == "intermediary"
    assert rec["silence_s"]["min"] >= 6.93
    assert rec["silence_s"]["max"] <= 7.01
    assert rec["first_t_s"] >= 7
    assert rec["last_t_s"] <= 37


def test_server_silence_alone_when_the_client_kept_sending() -> None:
    """The gateway stopped answering but the client still sent its
    heartbeats: nginx counts only the server's silence."""
    rng = random.Random(2)
    evs = [
        close(rng.uniform(0, 60), 7.0 + rng.uniform(-0.02, 0.02), rng.uniform(0, 2))
        for _ in range(40)
    ]
    (found,) = analyse(evs, heartbeat_interval=2.0)
    assert found.direction == SERVER
    assert abs(found.seconds - 7.0) < 0.05
    assert not found.below_heartbeat
    assert "longer than the 2 s heartbeat interval" in found.text()


def test_silence_in_both_directions_when_the_server_was_quiet_longer() -> None:
    """HAProxy's timeout tunnel: the last frame either way counts. The
    server had been silent for varied times, the client's last ping 5 s ago."""
    rng = random.Random(3)
    evs = [
        close(rng.uniform(0, 60), rng.uniform(5.5, 40), 5.0 + rng.uniform(-0.02, 0.02))
        for _ in range(40)
    ]
    (found,) = analyse(evs, heartbeat_interval=20.0)
    assert found.direction == EITHER
    assert abs(found.seconds - 5.0) < 0.05
    assert "silence in both directions" in found.text()


def test_events_without_the_client_side_age_name_the_server_direction() -> None:
    rng = random.Random(4)
    evs = [close(rng.uniform(0, 60), 7.0 + rng.uniform(-0.02, 0.02)) for _ in range(20)]
    (found,) = analyse(evs, heartbeat_interval=10.0)
    assert found.direction == SERVER


def test_random_drops_are_not_an_idle_timeout() -> None:
    """A gateway that drops connections at random times: the silences spread
    evenly from 0 to the heartbeat interval."""
    for seed in range(30):
        rng = random.Random(seed)
        for n in (6, 10, 50, 200, 2000):
            evs = []
            for _ in range(n):
                s = rng.uniform(0, 10)
                evs.append(close(rng.uniform(0, 600), s, s + 0.001, rng.uniform(s, 300)))
            assert analyse(evs, heartbeat_interval=10.0) == [], (seed, n)


def test_one_mass_drop_with_aligned_heartbeats_is_not_an_idle_timeout() -> None:
    """Every connection reset at one instant, the clients' heartbeats in
    step: one silence length, but at one moment."""
    rng = random.Random(5)
    evs = [
        close(
            100.0 + rng.uniform(0, 0.05),
            3.2 + rng.uniform(0, 0.01),
            3.2,
            rng.uniform(50, 90),
            transport="reset",
        )
        for _ in range(500)
    ]
    assert analyse(evs, heartbeat_interval=10.0) == []


def test_the_gateways_described_heartbeat_timeout_is_not_an_intermediary() -> None:
    """Abrupt closes that [target.server_heartbeat] explains are judged
    heartbeat timeouts by soak.classify, and are not looked at here."""
    rng = random.Random(6)
    evs = [
        close(
            rng.uniform(0, 60),
            15.0 + rng.uniform(-0.01, 0.01),
            category="heartbeat_timeout",
            reason="justified_timeout",
        )
        for _ in range(100)
    ]
    assert analyse(evs, heartbeat_interval=10.0) == []


def test_closes_with_a_close_frame_and_our_own_closes_are_ignored() -> None:
    rng = random.Random(7)
    server = [
        close(
            rng.uniform(0, 60),
            7.0,
            initiator="server",
            category="server",
            reason="server_1000_normal",
        )
        for _ in range(50)
    ]
    ours = [
        close(
            rng.uniform(0, 60),
            7.0,
            initiator="client",
            category="client",
            reason="client_storm_reset",
        )
        for _ in range(50)
    ]
    protocol = [close(rng.uniform(0, 60), 7.0, transport="protocol") for _ in range(50)]
    assert analyse(server + ours + protocol, heartbeat_interval=10.0) == []


def test_a_fixed_connection_lifetime_is_not_an_idle_timeout() -> None:
    """A limit on the connection's age: the ages cluster tighter than the
    silences, at another value."""
    rng = random.Random(8)
    evs = []
    for i in range(60):
        s = 3.0 + rng.uniform(-0.02, 0.02) if i < 40 else rng.uniform(0, 10)
        evs.append(close(rng.uniform(0, 600), s, s, 30.0 + rng.uniform(-0.01, 0.01)))
    assert analyse(evs, heartbeat_interval=10.0) == []


def test_age_equal_to_the_silence_is_still_an_idle_timeout() -> None:
    """The first heartbeat at the connection's start: the connection's age
    and its silence are the same length, and the silence is the cause."""
    rng = random.Random(9)
    evs = []
    for _ in range(30):
        s = 7.0 + rng.uniform(-0.02, 0.02)
        evs.append(close(rng.uniform(0, 60), s, s, s + 0.01))
    (found,) = analyse(evs, heartbeat_interval=10.0)
    assert found.closes == 30


def test_too_few_closes_name_nothing() -> None:
    rng = random.Random(10)
    evs = [close(rng.uniform(0, 60), 7.0, 7.0) for _ in range(MIN_CLOSES - 1)]
    assert analyse(evs, heartbeat_interval=10.0) == []
    # five in one window of a 10 s spread could still be chance; eight are not
    evs.append(close(61.0, 7.0, 7.0))
    assert analyse(evs, heartbeat_interval=10.0) == []
    evs += [close(62.0 + i, 7.0, 7.0) for i in range(3)]
    assert len(analyse(evs, heartbeat_interval=10.0)) == 1


def test_an_idle_timeout_among_random_drops_explains_its_share() -> None:
    rng = random.Random(11)
    evs = nginx_case(rng, 60)
    for _ in range(60):
        s = rng.uniform(0, 10)
        evs.append(close(rng.uniform(0, 60), s, s + 0.001, transport="reset"))
    (found,) = analyse(evs, heartbeat_interval=10.0)
    # the window (7 s +- 3 %) also holds the random drops that fell into
    # it: 2.5 of the 60 expected, 8 in this draw
    assert 60 <= found.closes <= 70
    assert found.abrupt_closes == 120
    assert 0.5 <= found.share <= 0.59
    assert found.reasons["transport_eof"] == 60


def test_malformed_events_are_skipped() -> None:
    good = nginx_case(random.Random(12), 10)
    bad: list[dict[str, Any]] = [
        {"event": "close", "initiator": "transport", "category": "transport", "transport": "eof"},
        {**good[0], "evidence": "not a mapping"},
        {**good[0], "evidence": {"last_frame_age_s": "7"}},
        {**good[0], "evidence": {"last_frame_age_s": math.nan}},
        {**good[0], "evidence": {"last_frame_age_s": True}},
        {**good[0], "t": None},
        {"event": "connect"},
    ]
    c = CloseSilences().observe_all(bad)
    assert c.abrupt == 1  # the one with t None still has its silence
    (found,) = analyse(good + bad, heartbeat_interval=10.0)
    assert found.closes == 11


def test_memory_is_bounded_by_the_bins_not_the_closes() -> None:
    rng = random.Random(13)
    c = CloseSilences()
    for _ in range(100_000):
        s = rng.uniform(0, 3600)
        c.observe(close(rng.uniform(0, 86400), s, s, rng.uniform(s, 86400)))
    assert c.abrupt == 100_000
    assert len(c.server.bins) < 2500
    assert len(c.age.bins) < 3000


def test_summary_default_check_fails_unless_the_profile_judges_it() -> None:
    closes = CloseSilences().observe_all(nginx_case(random.Random(14)))
    tot: dict[str, Any] = {}
    found = intermediary_summary(closes, 10.0, tot)
    assert tot[COUNT] == 126
    assert len(found) == 1
    (check,) = intermediary_checks(found, [])
    assert check["ok"] is False
    assert check["default"] is True
    assert check["text"] == (
        "FAIL intermediary_closes <= 0 (default): 126, closed by an intermediary idle "
        "timeout of 7.0 s"
    )
    # the profile's own threshold decides instead
    th = Threshold(COUNT, 200.0, "200")
    assert intermediary_checks(found, [th]) == []
    (verdict,) = judge([th], tot, {})
    assert verdict["ok"] is True
    assert verdict["value"] == "126"
    # nothing found: no check, a count of zero
    tot2: dict[str, Any] = {}
    assert intermediary_summary(CloseSilences(), 10.0, tot2) == []
    assert tot2[COUNT] == 0
    assert intermediary_checks([], []) == []


def test_binomial_tail_against_direct_sums() -> None:
    assert binomial_tail(10, 0, 0.3) == 1.0
    assert binomial_tail(10, 11, 0.3) == 0.0
    assert binomial_tail(5, 5, 0.5) == pytest.approx(1 / 32)
    direct = sum(math.comb(20, j) * 0.1**j * 0.9 ** (20 - j) for j in range(4, 21))
    assert binomial_tail(20, 4, 0.1) == pytest.approx(direct)
    # large n stays finite and cheap
    assert 0.0 < binomial_tail(1_000_000, 1000, 0.0009) < 1.0
