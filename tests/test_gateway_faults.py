"""soak.gateway.faults: what the incident's bugs do, as a pure step.

No trio, no sockets: a connection is a plain object with the attributes the
faults read and write, and times are plain numbers, as in
tests/test_gateway_heartbeat.py. The end-to-end behaviour of each bug is in
tests/test_gateway_bugs.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from soak.errors import LocalError
from soak.gateway.bugs import DropHeartbeat, NoPong, StaleSession, parse_bugs
from soak.gateway.counters import Counters
from soak.gateway.faults import ANSWER, DROP, WITHHOLD, Action, Faults
from soak.gateway.heartbeat import HeartbeatManager, IncidentHeartbeatManager


@dataclass
class FakeConn:
    """A connection as the faults see it (soak.gateway.faults.FaultTarget)."""

    conn_id: int
    beat_key: int = 0
    client_id: str | int | None = None
    tamper: bool = False
    muted: bool = False
    beats_seen: int = 0

    def __post_init__(self) -> None:
        self.beat_key = self.beat_key or self.conn_id


def faults(*bugs: str) -> tuple[Faults, Counters]:
    counters = Counters()
    return Faults(parse_bugs(bugs), counters), counters


def opened(f: Faults, conn_id: int) -> FakeConn:
    conn = FakeConn(conn_id)
    f.on_open(conn)
    return conn


def heartbeats(f: Faults, conn: FakeConn, count: int) -> list[Action]:
    """What the pump would be told for the next ``count`` heartbeats: it asks
    only while ``tamper`` is set, and handles the rest normally."""
    return [f.on_heartbeat(conn) if conn.tamper else ANSWER for _ in range(count)]


# ---- no bugs -------------------------------------------------------------------------


def test_without_bugs_no_connection_is_marked() -> None:
    f, counters = faults()
    conns = [opened(f, k) for k in range(1, 101)]
    assert not any(c.tamper or c.muted for c in conns)
    assert type(f.heartbeat_manager(30.0, 120.0, 3)) is HeartbeatManager
    # The session table does not exist: naming a client changes nothing.
    hb = HeartbeatManager(10.0, 25.0, 3)
    hb.add(1, 0.0)
    hb.add(2, 5.0)
    f.on_identified(conns[0], "abc", hb)
    f.on_identified(conns[1], "abc", hb)
    assert (conns[1].beat_key, hb.last_beat(2)) == (2, 5.0)
    assert counters.stale_sessions_inherited == 0


def test_ignore_max_missed_swaps_the_expiry_rule_only() -> None:
    f, _counters = faults("ignore-max-missed")
    hb = f.heartbeat_manager(10.0, 15.0, 3)
    assert type(hb) is IncidentHeartbeatManager
    assert (hb.interval, hb.timeout, hb.max_missed) == (10.0, 15.0, 3)
    assert not opened(f, 1).tamper


# ---- no-pong ---------------------------------------------------------------------------


def test_no_pong_mutes_exactly_the_chosen_connections() -> None:
    f, counters = faults("no-pong 0.1")
    conns = [opened(f, k) for k in range(1, 31)]
    assert [c.conn_id for c in conns if c.muted] == [10, 20, 30]
    assert [c.conn_id for c in conns if c.tamper] == [10, 20, 30]
    assert heartbeats(f, conns[9], 5) == [WITHHOLD] * 5
    assert heartbeats(f, conns[0], 5) == [ANSWER] * 5
    assert counters.heartbeats_dropped == 0


# ---- drop-heartbeat --------------------------------------------------------------------


def test_drop_heartbeat_drops_exactly_the_nth_then_stops_asking() -> None:
    f, counters = faults("drop-heartbeat 3")
    conn = opened(f, 1)
    assert conn.tamper
    assert heartbeats(f, conn, 6) == [ANSWER, ANSWER, DROP, ANSWER, ANSWER, ANSWER]
    assert not conn.tamper  # past the N-th: nothing left to do for this connection
    assert conn.beats_seen == 3  # counted only while tampering
    assert counters.heartbeats_dropped == 1


def test_drop_heartbeat_counts_per_connection() -> None:
    f, counters = faults("drop-heartbeat 1")
    a, b = opened(f, 1), opened(f, 2)
    assert heartbeats(f, a, 2) == [DROP, ANSWER]
    assert heartbeats(f, b, 2) == [DROP, ANSWER]
    assert counters.heartbeats_dropped == 2


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (1, [DROP, WITHHOLD, WITHHOLD, WITHHOLD]),
        (2, [WITHHOLD, DROP, WITHHOLD, WITHHOLD]),
    ],
)
def test_drop_heartbeat_on_a_muted_connection(n: int, expected: list[Action]) -> None:
    f, counters = faults(f"drop-heartbeat {n}", "no-pong 1")
    conn = opened(f, 1)
    assert heartbeats(f, conn, 4) == expected
    assert conn.tamper  # no-pong still applies after the N-th
    assert counters.heartbeats_dropped == 1


# ---- stale-session ---------------------------------------------------------------------


def test_stale_session_reconnect_inherits_the_closed_owners_last_beat() -> None:
    f, counters = faults("stale-session")
    hb = f.heartbeat_manager(10.0, 25.0, 3)
    old = opened(f, 1)
    hb.add(1, 0.0)
    old.client_id = "abc"
    f.on_identified(old, "abc", hb)  # the first: owns the session
    hb.beat(1, 10.0)
    last = hb.remove(1)  # the old connection closes at 12
    assert last == 10.0
    f.on_untracked(old, last)
    new = opened(f, 2)
    hb.add(2, 13.0)
    new.client_id = "abc"
    f.on_identified(new, "abc", hb)
    assert hb.last_beat(2) == 10.0  # the old beat, not its own opening at 13
    assert new.beat_key == 1  # its beats go to the old id, which nobody tracks
    assert not hb.beat(new.beat_key, 20.0)
    assert counters.stale_sessions_inherited == 1


def test_stale_session_with_the_owner_still_open() -> None:
    f, counters = faults("stale-session")
    hb = f.heartbeat_manager(10.0, 25.0, 3)
    zombie, live = opened(f, 1), opened(f, 2)
    hb.add(1, 0.0)
    f.on_identified(zombie, "abc", hb)
    hb.add(2, 40.0)
    f.on_identified(live, "abc", hb)
    assert hb.last_beat(2) == 0.0
    assert hb.beat(live.beat_key, 50.0)  # keeps the zombie alive instead
    assert (hb.last_beat(1), hb.last_beat(2)) == (50.0, 0.0)
    assert counters.stale_sessions_inherited == 1


def test_stale_session_leaves_other_clients_and_untracked_connections_alone() -> None:
    f, counters = faults("stale-session")
    hb = f.heartbeat_manager(10.0, 25.0, 3)
    a, b = opened(f, 1), opened(f, 2)
    hb.add(1, 0.0)
    hb.add(2, 1.0)
    f.on_identified(a, "a", hb)
    f.on_identified(b, 7, hb)  # an integer clientId is a session key too
    f.on_identified(a, "a", hb)  # its own session: nothing to inherit
    c = opened(f, 3)  # already expired (no longer tracked) when it names itself
    f.on_identified(c, "a", hb)
    assert c.beat_key == 3
    assert 3 not in hb
    # A connection that is gone, or that owns no session, keeps no beat.
    f.on_untracked(None, 5.0)
    f.on_untracked(FakeConn(9, client_id="zzz"), 5.0)
    assert (a.beat_key, b.beat_key) == (1, 2)
    assert counters.stale_sessions_inherited == 0


def test_stale_session_reconnect_before_any_beat_was_kept() -> None:
    f, counters = faults("stale-session")
    hb = f.heartbeat_manager(10.0, 25.0, 3)
    old = opened(f, 1)
    hb.add(1, 0.0)
    f.on_identified(old, "abc", hb)
    hb.remove(1)  # closed, and nobody told the faults (no beat to keep)
    new = opened(f, 2)
    hb.add(2, 3.0)
    f.on_identified(new, "abc", hb)
    assert (new.beat_key, hb.last_beat(2)) == (2, 3.0)
    assert counters.stale_sessions_inherited == 0


# ---- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bugs", "message"),
    [
        ([object()], r"gateway: bugs: expected bug values \(see soak\.gateway\.bugs\.parse_bug\)"),
        ([NoPong(0.5), NoPong(0.1)], r"gateway: bugs: no-pong given twice"),
        (["no-pong 0.1"], r"gateway: bugs: expected bug values .*got 'no-pong 0\.1'"),
    ],
)
def test_bad_bugs_are_one_clear_line(bugs: list[object], message: str) -> None:
    with pytest.raises(LocalError, match=message) as info:
        Faults(bugs, Counters())  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no-pongs 0.1", r"unknown bug 'no-pongs'; did you mean 'no-pong'\?"),
        ("stale_session", r"unknown bug 'stale_session'; did you mean 'stale-session'\?"),
        ("frobnicate", r"unknown bug 'frobnicate' \(known: ignore-max-missed, "),
        ("drop-heartbeat 0", r"drop-heartbeat 0'?: N: expected"),
    ],
)
def test_an_unknown_bug_name_is_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(LocalError, match=message) as info:
        faults(text)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"gateway: bug {text!r}: ")


def test_faults_take_the_parsed_bugs_in_any_order() -> None:
    f, _counters = faults("no-pong 1", "stale-session", "drop-heartbeat 2")
    g = Faults((DropHeartbeat(2), StaleSession(), NoPong(1)), Counters())
    for x in (f, g):
        conn = opened(x, 1)
        assert heartbeats(x, conn, 3) == [WITHHOLD, DROP, WITHHOLD]
