"""An idle connection holds no wsproto objects (soak.wsframe.IdleWs,
soak.client.transport._Conn.ws): dropped while open with nothing pending,
a fresh one made when a frame needs wsproto, the same bytes and reactions
either way."""

from __future__ import annotations

import json
import tracemalloc

import trio.testing
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import CloseConnection, Event, Ping, Pong, TextMessage

from soak.client.connection import Closed, Closing
from soak.client.transport import _Conn
from soak.heartbeat import HeartbeatEngine
from soak.metrics import Metrics
from soak.protocols import JsonPing
from soak.wsframe import IdleWs, fresh_client


class Clock:
    t0 = 100.0
    wall0 = 1_790_000_000.0


def live(proto: JsonPing | None = None, metrics: Metrics | None = None) -> tuple[_Conn, Metrics]:
    stream, _other = trio.testing.memory_stream_pair()
    conn = _Conn(stream, fresh_client(), opened_at=100.0)
    metrics = metrics or Metrics()
    hb = HeartbeatEngine(interval=1.0, timeout=0.5, max_missed=3, origin=100.0, now=100.0)
    conn.start(hb, proto or JsonPing("soak-000001"), metrics, Clock(), 100.0)
    return conn, metrics


def from_server(*events: Event) -> bytes:
    server = WsConnection(ConnectionType.SERVER)
    return b"".join(server.send(e) for e in events)


def on_server(data: bytes) -> list[Event]:
    server = WsConnection(ConnectionType.SERVER)
    server.receive_data(data)
    return list(server.events())


def pong(seq: int) -> bytes:
    return from_server(TextMessage(data=json.dumps({"type": "pong", "seq": seq})))


def test_an_idle_connection_drops_wsproto_and_heartbeats_without_it() -> None:
    conn, m = live()
    assert conn.held_ws() is not None  # as built at the upgrade
    assert conn.ws.state is ConnectionState.OPEN
    assert isinstance(conn.ws, IdleWs)
    assert conn.held_ws() is None  # idle: let go at the first look
    for n in range(1, 4):
        action = conn.tick(100.0 + n - 1, None)
        assert isinstance(action, bytes)
        conn.pinged()
        [event] = on_server(action)
        assert isinstance(event, TextMessage)
        assert json.loads(event.data)["seq"] == n
        assert conn.on_data(pong(n), 100.0 + n - 0.9) is None
        assert conn.held_ws() is None
    assert m.current.counts["pongs"] == 3


def test_a_server_ping_gets_a_fresh_wsproto_then_it_is_dropped_again() -> None:
    conn, m = live()
    assert isinstance(conn.ws, IdleWs)
    reaction = conn.on_data(from_server(Ping(payload=b"hi")), 100.3)
    assert reaction is not None
    [answer] = list(reaction)
    assert isinstance(answer, bytes)
    [event] = on_server(answer)
    assert isinstance(event, Pong)
    assert event.payload == b"hi"
    assert m.current.counts["server_pings"] == 1
    assert isinstance(conn.ws, IdleWs)  # idle again: dropped
    assert conn.held_ws() is None


def test_a_fragmented_message_keeps_wsproto_until_it_is_whole() -> None:
    conn, m = live()
    sent = conn.tick(100.0, None)
    assert isinstance(sent, bytes)
    conn.pinged()
    text = '{"type":"pong","seq":1}'
    server = WsConnection(ConnectionType.SERVER)
    head = server.send(TextMessage(data=text[:9], message_finished=False))
    rest = server.send(TextMessage(data=text[9:]))
    first = conn.on_data(head, 100.01)
    assert first is not None
    assert list(first) == []
    assert not isinstance(conn.ws, IdleWs)  # it holds the message's first part
    assert conn.held_ws() is not None
    second = conn.on_data(rest, 100.02)
    assert second is not None
    assert list(second) == []
    assert m.current.counts["pongs"] == 1
    assert isinstance(conn.ws, IdleWs)


def test_closing_from_our_side_keeps_the_closing_state() -> None:
    conn, _m = live()
    assert isinstance(conn.ws, IdleWs)
    closing = conn.close(1001, "bye", "client_shutdown", 100.5)
    assert isinstance(closing, Closing)
    assert closing.frame is not None
    [event] = on_server(closing.frame)
    assert isinstance(event, CloseConnection)
    assert (event.code, event.reason) == (1001, "bye")
    assert conn.ws.state is ConnectionState.LOCAL_CLOSING
    # a second close cannot send a second frame
    again = conn.close(1001, "bye", "client_shutdown", 100.6)
    assert again.frame is None


def test_the_servers_close_is_answered_from_an_idle_connection() -> None:
    conn, _m = live()
    assert isinstance(conn.ws, IdleWs)
    reaction = conn.on_data(from_server(CloseConnection(code=4001, reason="go")), 100.2)
    assert reaction is not None
    [closed] = list(reaction)
    assert isinstance(closed, Closed)
    assert (closed.info.code, closed.info.reason) == (4001, "go")
    assert closed.reply is not None
    [answer] = on_server(closed.reply)
    assert isinstance(answer, CloseConnection)
    assert answer.code == 4001
    assert conn.ws.state is ConnectionState.CLOSED


class Unframed(JsonPing):
    """A dialect whose heartbeat goes through wsproto (no hand framing)."""

    __slots__ = ()

    def ping_frame(self, seq: int, now_ms: int) -> tuple[int, bytes] | None:
        return None


def test_a_heartbeat_through_wsproto_is_framed_without_a_connection_of_its_own() -> None:
    conn, _m = live(Unframed("soak-000002"))
    assert isinstance(conn.ws, IdleWs)
    action = conn.tick(100.0, None)
    assert isinstance(action, bytes)
    [event] = on_server(action)
    assert isinstance(event, TextMessage)
    assert json.loads(event.data)["clientId"] == "soak-000002"
    assert conn.held_ws() is None


def test_idle_connections_hold_hundreds_of_bytes_less() -> None:
    metrics = Metrics()

    def held(drop: bool) -> float:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        conns = [live(metrics=metrics)[0] for _ in range(200)]
        if drop:
            for c in conns:
                assert isinstance(c.ws, IdleWs)
        size = (tracemalloc.get_traced_memory()[0] - before) / len(conns)
        tracemalloc.stop()
        return size

    saved = held(drop=False) - held(drop=True)
    assert saved > 500, saved
