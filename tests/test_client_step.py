"""The sans-IO step of a live connection (soak.client.connection): frames
and timers in, actions out, with plain numbers and no I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType
from wsproto.events import CloseConnection, Event, Ping, TextMessage

from soak.classify import CLIENT, SERVER, SHUTDOWN, STORM_RESET, TRANSPORT, ZOMBIE
from soak.client.connection import Closed, Closing, Connection
from soak.heartbeat import HeartbeatEngine
from soak.metrics import Metrics
from soak.protocols import JsonPing
from soak.protocols.base import HeartbeatProtocol

WALL0 = 1_790_000_000.0


class Clock:
    t0 = 100.0  # the run started at trio time 100
    wall0 = WALL0


def live(
    *,
    interval: float = 1.0,
    timeout: float = 0.5,
    max_missed: int = 3,
    silence: float | None = None,
) -> tuple[Connection, Metrics]:
    """A connection that became ready at t=100 (the run's start)."""
    conn = Connection(WsConnection(ConnectionType.CLIENT), opened_at=100.0)
    metrics = Metrics()
    proto = JsonPing("soak-000001")
    proto.silence_timeout = silence
    hb = HeartbeatEngine(
        interval=interval, timeout=timeout, max_missed=max_missed, origin=100.0, now=100.0
    )
    conn.start(hb, proto, metrics, Clock(), 100.0)
    return conn, metrics


def counts(m: Metrics) -> dict[str, int]:
    return {k: v for k, v in m.current.counts.items() if v}


def from_server(*events: Event) -> bytes:
    server = WsConnection(ConnectionType.SERVER)
    return b"".join(server.send(e) for e in events)


def on_server(data: bytes) -> list[Event]:
    """What the server makes of bytes the client wrote."""
    server = WsConnection(ConnectionType.SERVER)
    server.receive_data(data)
    return list(server.events())


def pong(seq: int) -> bytes:
    text = json.dumps({"type": "pong", "seq": seq}, separators=(",", ":"))
    return from_server(TextMessage(data=text))


def sent_ping(conn: Connection, now: float) -> dict[str, Any]:
    """Tick at ``now``, expecting a heartbeat; write it (here: decode it)."""
    action = conn.tick(now, None)
    assert isinstance(action, bytes)
    conn.pinged()
    [event] = on_server(action)
    assert isinstance(event, TextMessage)
    ping: dict[str, Any] = json.loads(event.data)
    return ping


def test_a_pong_on_time_is_counted_with_its_rtt() -> None:
    conn, m = live()
    ping = sent_ping(conn, 100.0)
    assert ping == {
        "type": "ping",
        "timestamp": int(WALL0 * 1000),
        "clientId": "soak-000001",
        "seq": 1,
    }
    assert conn.on_data(pong(1), 100.05) is None  # the usual chunk: nothing to do
    assert counts(m) == {"pings": 1, "pongs": 1}
    rtt = m.current.hist["rtt"]
    assert rtt.get_total_count() == 1
    assert rtt.get_max_value() == pytest.approx(50_000, rel=1e-3)  # microseconds
    assert conn.tick(100.5, None) is None  # answered: nothing missed
    ev = conn.evidence(100.25)
    assert ev.age == pytest.approx(0.25)
    assert ev.last_pong_age == pytest.approx(0.2)
    assert ev.last_frame_age == pytest.approx(0.2)
    assert (ev.consecutive_missed, ev.pings_pending) == (0, 0)


def test_the_next_ping_keeps_to_the_grid() -> None:
    conn, _ = live()
    assert sent_ping(conn, 100.0)["seq"] == 1
    assert conn.tick(100.999, None) is None
    second = sent_ping(conn, 101.0)
    assert second["seq"] == 2
    assert second["timestamp"] == int((WALL0 + 1.0) * 1000)


def test_a_late_pong_is_missed_then_late_with_its_rtt() -> None:
    conn, m = live()
    sent_ping(conn, 100.0)
    assert conn.tick(100.6, None) is None  # past the 0.5 s timeout: missed
    assert counts(m) == {"pings": 1, "missed": 1}
    assert conn.on_data(pong(1), 100.7) is None
    assert counts(m) == {"pings": 1, "missed": 1, "late": 1}
    assert m.current.hist["rtt"].get_max_value() == pytest.approx(700_000, rel=1e-3)
    assert conn.evidence(100.7).consecutive_missed == 0  # any pong proves life


def test_unknown_and_duplicate_seqs_change_nothing_else() -> None:
    conn, m = live()
    sent_ping(conn, 100.0)
    conn.on_data(pong(99), 100.01)  # never sent
    conn.on_data(pong(1), 100.02)
    conn.on_data(pong(1), 100.03)  # again
    assert counts(m) == {"pings": 1, "pongs": 1, "unknown_pongs": 1, "duplicate_pongs": 1}
    assert m.current.hist["rtt"].get_total_count() == 1


def test_missed_heartbeats_make_a_zombie_closed_from_our_side() -> None:
    conn, m = live(max_missed=3)
    for t in (100.0, 101.0, 102.0):
        sent_ping(conn, t)
        if t < 102.0:
            assert conn.tick(t + 0.5, None) is None
    action = conn.tick(102.5, None)
    assert isinstance(action, Closing)
    assert not action.reset
    info = action.info
    assert (info.initiator, info.code, info.reason, info.cause) == (
        CLIENT,
        1001,
        "zombie: heartbeats unanswered",
        ZOMBIE,
    )
    assert info.evidence is not None
    assert info.evidence.consecutive_missed == 3
    assert info.evidence.unresponsive_for == pytest.approx(2.5)  # since the first unanswered
    assert info.evidence.last_pong_age is None
    assert action.frame is not None
    [close] = on_server(action.frame)
    assert isinstance(close, CloseConnection)
    assert (close.code, close.reason) == (1001, "zombie: heartbeats unanswered")
    assert counts(m) == {"pings": 3, "missed": 3, "zombies": 1}


def test_silence_rule_closes_a_connection_that_hears_nothing() -> None:
    conn, m = live(interval=60.0, timeout=30.0, silence=2.0)
    sent_ping(conn, 100.0)
    conn.on_data(pong(1), 101.0)  # a frame: the silence starts again
    assert conn.tick(102.9, None) is None
    action = conn.tick(103.0, None)
    assert isinstance(action, Closing)
    assert (action.info.code, action.info.reason, action.info.cause) == (
        4000,
        "tick timeout",
        ZOMBIE,
    )
    assert counts(m)["zombies"] == 1


def test_server_close_frame_ends_with_its_info_evidence_and_our_answer() -> None:
    conn, m = live()
    sent_ping(conn, 100.0)
    conn.on_data(pong(1), 100.1)
    sent_ping(conn, 101.0)
    reaction = conn.on_data(from_server(CloseConnection(code=4001, reason="bye")), 101.2)
    assert reaction is not None
    [action] = list(reaction)
    assert isinstance(action, Closed)
    info = action.info
    assert (info.initiator, info.code, info.reason) == (SERVER, 4001, "bye")
    assert info.evidence is not None
    ev = info.evidence
    assert ev.age == pytest.approx(1.2)
    assert ev.last_pong_age == pytest.approx(1.1)
    # the close frame is not its own proof of life
    assert ev.last_frame_age == pytest.approx(1.1)
    assert ev.pings_pending == 1
    assert action.reply is not None
    [answer] = on_server(action.reply)
    assert isinstance(answer, CloseConnection)
    assert answer.code == 4001
    assert conn.last_frame_at == 101.2
    assert counts(m) == {"pings": 2, "pongs": 1}


def test_server_ping_is_answered_and_counted() -> None:
    conn, m = live()
    data = from_server(Ping(payload=b"hi"), TextMessage(data='{"type":"pong","seq":7}'))
    reaction = conn.on_data(data, 100.3)
    assert reaction is not None
    actions = list(reaction)
    assert len(actions) == 1
    assert isinstance(actions[0], bytes)
    [answer] = on_server(actions[0])
    assert answer.__class__.__name__ == "Pong"
    assert counts(m) == {"server_pings": 1, "unknown_pongs": 1}
    assert conn.last_frame_at == 100.3


def test_a_fragmented_pong_is_put_together() -> None:
    conn, m = live()
    sent_ping(conn, 100.0)
    text = '{"type":"pong","seq":1}'
    data = from_server(
        TextMessage(data=text[:9], message_finished=False), TextMessage(data=text[9:])
    )
    reaction = conn.on_data(data, 100.02)
    assert reaction is not None
    assert list(reaction) == []
    assert counts(m) == {"pings": 1, "pongs": 1}
    assert conn.buffer == []


def test_a_malformed_frame_ends_the_connection_with_1002_and_no_answer() -> None:
    conn, m = live()
    masked = bytes([0x81, 0x82, 1, 2, 3, 4, 0, 0])  # servers must not mask
    reaction = conn.on_data(masked, 100.5)
    assert reaction is not None
    [action] = list(reaction)
    assert isinstance(action, Closed)
    # wsproto reports the violation as a close event with 1002; the server
    # sent no close frame, so there is nothing to answer
    assert action.reply is None
    info = action.info
    assert (info.initiator, info.code, info.transport) == (SERVER, 1002, None)
    assert "mask" in info.reason
    assert info.evidence is not None
    assert info.evidence.age == pytest.approx(0.5)
    assert counts(m) == {}


def test_a_pong_that_is_not_json_is_drained() -> None:
    conn, m = live()
    sent_ping(conn, 100.0)
    assert conn.on_data(from_server(TextMessage(data='"pong" {oops')), 100.1) is None
    assert counts(m) == {"pings": 1}
    assert conn.last_frame_at == 100.1  # still a frame: proof of life


def test_the_end_of_the_stream_is_a_transport_loss() -> None:
    conn, _ = live()
    info = conn.lost("eof", 100.5)
    assert (info.initiator, info.code, info.transport) == (TRANSPORT, 1006, "eof")
    assert info.evidence is not None
    assert info.evidence.age == pytest.approx(0.5)


def test_a_close_request_comes_before_any_timer() -> None:
    conn, m = live()
    sent_ping(conn, 100.0)
    action = conn.tick(105.0, (1001, "going away", SHUTDOWN))  # long past the timeout
    assert isinstance(action, Closing)
    assert (action.info.initiator, action.info.code, action.info.cause) == (
        CLIENT,
        1001,
        SHUTDOWN,
    )
    assert action.frame is not None
    [close] = on_server(action.frame)
    assert isinstance(close, CloseConnection)
    assert close.code == 1001
    assert counts(m) == {"pings": 1}  # the timeout was not looked at


def test_a_storm_reset_sends_no_close_frame() -> None:
    conn, _ = live()
    action = conn.tick(100.1, (1001, "storm drop", STORM_RESET))
    assert isinstance(action, Closing)
    assert action.reset
    assert action.frame is None
    assert (action.info.code, action.info.reason, action.info.cause) == (None, "", STORM_RESET)


def test_closing_twice_cannot_send_a_second_close_frame() -> None:
    conn, _ = live()
    first = conn.close(1000, "churn", "churn", 100.1)
    assert first.frame is not None
    again = conn.close(1000, "churn", "churn", 100.2)
    assert again.frame is None  # wsproto refuses: nothing to write


def test_a_protocol_without_hand_framing_pings_through_wsproto() -> None:
    class Plain(HeartbeatProtocol):
        name = "plain"
        __slots__ = ()

        def ping(self, seq: int, now_ms: int) -> Event:
            return TextMessage(data=f"ping {seq} {now_ms}")

    conn = Connection(WsConnection(ConnectionType.CLIENT), opened_at=0.0)
    hb = HeartbeatEngine(interval=1.0, timeout=0.5, max_missed=3, origin=0.0, now=0.0)
    conn.start(hb, Plain("c"), Metrics(), Clock(), 0.0)
    action = conn.tick(0.0, None)
    assert isinstance(action, bytes)
    [event] = on_server(action)
    assert isinstance(event, TextMessage)
    assert event.data == f"ping 1 {int((WALL0 - 100.0) * 1000)}"


def test_the_pacer_and_the_task_send_the_same_heartbeat() -> None:
    by_tick, m1 = live()
    by_pacer, m2 = live()
    ticked = by_tick.tick(100.0, None)
    paced = by_pacer.ping(100.0)  # the pacer's turn, once it knows the ping is due
    assert isinstance(ticked, bytes)
    by_tick.pinged()
    by_pacer.pinged()
    assert on_server(ticked) == on_server(paced)  # the masks differ, the frames do not
    assert counts(m1) == counts(m2) == {"pings": 1}


def test_a_late_tester_skips_slots_and_counts_them() -> None:
    conn, m = live()
    sent_ping(conn, 100.0)
    conn.on_data(pong(1), 100.01)
    # the tester stalled until 103.2: one ping goes out for the oldest slot
    # due (101), 2.2 s late, and the slots of 102 and 103 are skipped
    assert sent_ping(conn, 103.2)["seq"] == 2
    assert counts(m) == {"pings": 2, "pongs": 1, "skipped": 2}
    lag = m.current.hist["lag"]
    assert lag.get_total_count() == 2
    assert lag.get_max_value() == pytest.approx(2_200_000, rel=1e-3)
    assert conn.tick(103.9, None) is None  # next slot: 104
    assert sent_ping(conn, 104.0)["seq"] == 3
