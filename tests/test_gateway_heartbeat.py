"""The gateway's sans-IO heartbeat manager, driven with plain numbers."""

from __future__ import annotations

import pytest

from soak.gateway.heartbeat import Expiry, HeartbeatManager, IncidentHeartbeatManager


def incident_settings() -> HeartbeatManager:
    # The incident's gateway: ping every 30 s, timeout 120 s, maxMissed 3.
    return HeartbeatManager(interval=30.0, timeout=120.0, max_missed=3)


def test_not_expired_before_timeout() -> None:
    hb = incident_settings()
    hb.add(1, now=0.0)
    assert hb.expired(119.999) == []


def test_expired_once_timeout_and_max_missed_both_reached() -> None:
    hb = incident_settings()
    hb.add(1, now=0.0)
    assert hb.expired(120.0) == [Expiry(conn_id=1, last_beat_age=120.0, missed=4)]


def test_timeout_alone_does_not_expire_before_max_missed() -> None:
    # timeout (25) < interval * max_missed (30): the incident's bug would close
    # this connection at 25 s; the fixed rule waits for 3 missed heartbeats.
    hb = HeartbeatManager(interval=10.0, timeout=25.0, max_missed=3)
    hb.add(1, now=100.0)
    assert hb.expired(125.0) == []  # timeout passed, only 2 missed
    assert hb.expired(129.999) == []
    assert hb.expired(130.0) == [Expiry(conn_id=1, last_beat_age=30.0, missed=3)]


def test_max_missed_alone_does_not_expire_before_timeout() -> None:
    hb = HeartbeatManager(interval=10.0, timeout=45.0, max_missed=3)
    hb.add(7, now=0.0)
    assert hb.expired(44.0) == []  # 4 missed, but the timeout has not passed
    assert [e.conn_id for e in hb.expired(45.0)] == [7]


def test_expired_exactly_at_the_boundary() -> None:
    hb = HeartbeatManager(interval=2.0, timeout=6.0, max_missed=3)
    hb.add(1, now=4.0)
    assert hb.expired(9.75) == []
    assert hb.expired(10.0) == [Expiry(conn_id=1, last_beat_age=6.0, missed=3)]


def test_beat_resets_the_age() -> None:
    hb = incident_settings()
    hb.add(1, now=0.0)
    assert hb.beat(1, now=100.0) is True
    assert hb.expired(219.0) == []
    assert hb.expired(220.0) == [Expiry(conn_id=1, last_beat_age=120.0, missed=4)]


def test_only_stale_connections_are_reported() -> None:
    hb = incident_settings()
    for conn_id in range(5):
        hb.add(conn_id, now=0.0)
    hb.beat(2, now=60.0)
    hb.beat(4, now=60.0)
    assert [e.conn_id for e in hb.expired(150.0)] == [0, 1, 3]


def test_remove_stops_tracking() -> None:
    hb = incident_settings()
    hb.add(1, now=0.0)
    hb.add(2, now=0.0)
    hb.remove(1)
    hb.remove(99)  # unknown ids are a no-op
    assert 1 not in hb
    assert len(hb) == 1
    assert [e.conn_id for e in hb.expired(500.0)] == [2]


def test_beat_for_unknown_id_does_not_resurrect_it() -> None:
    hb = incident_settings()
    hb.add(1, now=0.0)
    hb.remove(1)
    assert hb.beat(1, now=10.0) is False
    assert len(hb) == 0


def test_expired_is_a_query_and_does_not_remove() -> None:
    hb = incident_settings()
    hb.add(1, now=0.0)
    assert len(hb.expired(200.0)) == 1
    assert len(hb.expired(200.0)) == 1


@pytest.mark.parametrize(
    ("interval", "timeout", "max_missed"),
    [(0.0, 1.0, 1), (1.0, -1.0, 1), (1.0, 1.0, 0), (float("nan"), 1.0, 1)],
)
def test_rejects_nonsense_settings(interval: float, timeout: float, max_missed: int) -> None:
    with pytest.raises(ValueError, match="expected"):
        HeartbeatManager(interval=interval, timeout=timeout, max_missed=max_missed)


def test_the_fixed_rule_needs_the_timeout_and_max_missed_at_their_boundaries() -> None:
    """The yardstick of "was this client truly alive": silent for at least
    the timeout AND for at least max_missed whole intervals."""
    hb = HeartbeatManager(interval=10.0, timeout=25.0, max_missed=3)
    assert hb.fixed_rule(29.999) is False  # past the timeout, 2 intervals missed
    assert hb.fixed_rule(30.0) is True  # exactly 3 intervals
    wide = HeartbeatManager(interval=10.0, timeout=35.0, max_missed=3)
    assert wide.fixed_rule(34.999) is False  # 3 missed, the timeout not reached
    assert wide.fixed_rule(35.0) is True  # exactly the timeout


def test_the_incidents_rule_expires_only_past_the_timeout() -> None:
    hb = IncidentHeartbeatManager(interval=10.0, timeout=15.0, max_missed=3)
    hb.add(1, now=0.0)
    assert hb.expired(15.0) == []  # at the timeout: not yet (``>``)
    assert hb.expired(15.5) == [Expiry(conn_id=1, last_beat_age=15.5, missed=1)]


def test_the_last_beat_of_each_connection() -> None:
    hb = incident_settings()
    hb.add(1, now=2.0)
    hb.add(2, now=3.0)
    hb.beat(1, now=7.5)
    assert (hb.last_beat(1), hb.last_beat(2), hb.last_beat(3)) == (7.5, 3.0, None)


@pytest.mark.parametrize(
    ("interval", "timeout", "max_missed"),
    [(0.5, 120.0, 3), (30.0, 0.5, 3), (30.0, 120.0, 1)],
)
def test_sub_second_periods_and_a_single_miss_are_accepted(
    interval: float, timeout: float, max_missed: int
) -> None:
    hb = HeartbeatManager(interval=interval, timeout=timeout, max_missed=max_missed)
    assert (hb.interval, hb.timeout, hb.max_missed) == (interval, timeout, max_missed)


def test_a_zero_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout: expected a finite number > 0, got 0"):
        HeartbeatManager(interval=30.0, timeout=0, max_missed=3)
