"""The dialect model (soak.protocols.base): the four shapes a heartbeat
takes, carried by the same sans-IO connection and heartbeat engine, with
plain numbers and no I/O. Each dialect's own tests use real servers; these
use toy dialects that follow the shapes exactly."""

from __future__ import annotations

import base64
import hashlib
import math
import random

import pytest
import trio
import trio.testing
from wsproto import WSConnection
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, BytesMessage, Event, Request, TextMessage

from soak import heartbeat
from soak.classify import (
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    SERVER,
    TRANSPORT,
    ZOMBIE,
    Classifier,
    CloseInfo,
    Evidence,
)
from soak.client.connection import Closing, Connection
from soak.client.handshake import open_connection
from soak.client.shared import Shared
from soak.config.heartbeat import ServerHeartbeat
from soak.errors import HandshakeError, ProfileError, ProtocolError
from soak.heartbeat import HeartbeatEngine
from soak.metrics import Metrics
from soak.protocols.base import (
    OLDEST,
    SERVER_BEAT,
    SERVER_PING,
    Frame,
    HeartbeatProtocol,
    frame_event,
)
from soak.wsframe import OP_BINARY, OP_TEXT
from tests.support.runs import make_profile, one_client


class Clock:
    t0 = 100.0
    wall0 = 1_790_000_000.0


class Fifo(HeartbeatProtocol):
    """MQTT's shape: binary PINGREQ c0 00, PINGRESP d0 00 without an id."""

    name = "toy-fifo"
    __slots__ = ()

    def __init__(self, client_id: str, state: object = None) -> None:
        super().__init__(client_id, state)
        self.max_in_flight = 1

    def ping_frame(self, seq: int, now_ms: int) -> Frame | None:
        return OP_BINARY, b"\xc0\x00"

    def pong_binary(self, data: bytes) -> int | None:
        return OLDEST if data == b"\xd0\x00" else None


class ServerPings(HeartbeatProtocol):
    """Engine.IO 4's shape: the server sends "2", the client answers "3"."""

    name = "toy-server"
    __slots__ = ()

    def __init__(self, client_id: str, state: object = None) -> None:
        super().__init__(client_id, state)
        self.client_pings = False
        self.server_interval = 1.0
        self.server_timeout = 0.5

    def answer(self) -> Frame:
        return OP_TEXT, b"3"

    def pong_text(self, text: str) -> int | None:
        if text == "2":
            return SERVER_PING
        if text == "beat":
            return SERVER_BEAT
        return None


class OneWay(HeartbeatProtocol):
    """SignalR's shape: beats both ways, no reply."""

    name = "toy-oneway"
    __slots__ = ()

    def __init__(self, client_id: str, state: object = None) -> None:
        super().__init__(client_id, state)
        self.expects_reply = False
        self.silence_timeout = 3.0

    def ping_frame(self, seq: int, now_ms: int) -> Frame | None:
        return OP_TEXT, b'{"type":6}\x1e'

    def pong_text(self, text: str) -> int | None:
        return SERVER_BEAT if text == '{"type":6}\x1e' else None


def live(proto: HeartbeatProtocol, *, timeout: float = 0.5) -> tuple[Connection, Metrics]:
    conn = Connection(WsConnection(ConnectionType.CLIENT), opened_at=100.0)
    metrics = Metrics()
    hb = HeartbeatEngine(
        interval=1.0,
        timeout=timeout,
        max_missed=3,
        origin=100.0,
        now=100.0,
        max_in_flight=proto.max_in_flight,
        expects_reply=proto.expects_reply,
        sends=proto.client_pings,
    )
    conn.start(hb, proto, metrics, Clock(), 100.0)
    return conn, metrics


def from_server(*events: Event) -> bytes:
    server = WsConnection(ConnectionType.SERVER)
    return b"".join(server.send(e) for e in events)


def on_server(data: bytes) -> list[Event]:
    server = WsConnection(ConnectionType.SERVER)
    server.receive_data(data)
    return list(server.events())


def react(conn: Connection, data: bytes, now: float) -> list[object]:
    reaction = conn.on_data(data, now)
    return [] if reaction is None else list(reaction)


def counts(m: Metrics) -> dict[str, int]:
    return {k: v for k, v in m.current.counts.items() if v}


# -- the engine -------------------------------------------------------------------------


def test_a_reply_without_an_id_answers_the_oldest_heartbeat_late_ones_included() -> None:
    hb = HeartbeatEngine(interval=1.0, timeout=0.5, max_missed=3, origin=0.0, now=0.0)
    hb.on_send(0.0)  # seq 1
    assert hb.check(0.6) == 1  # missed
    hb.on_send(1.0)  # seq 2
    late = hb.on_oldest(1.1)  # replies come in order: this one answers seq 1
    assert late.kind == heartbeat.LATE
    assert math.isclose(late.rtt, 1.1)
    on_time = hb.on_oldest(1.15)
    assert on_time.kind == heartbeat.OK
    assert math.isclose(on_time.rtt, 0.15)
    assert hb.on_oldest(1.2).kind == heartbeat.UNKNOWN  # nothing outstanding


def test_a_slot_that_comes_while_the_in_flight_cap_is_reached_is_held_not_sent() -> None:
    # timeout longer than the interval: the ping of slot 0 is still pending at slot 1
    hb = HeartbeatEngine(
        interval=1.0, timeout=2.5, max_missed=3, origin=0.0, now=0.0, max_in_flight=1
    )
    assert hb.due(0.0)
    hb.on_send(0.0)
    assert not hb.due(1.0)  # held: one in flight already
    assert hb.held == 1
    assert hb.next_send == 2.0  # the grid does not move
    assert not hb.due(2.0)
    assert hb.held == 2
    hb.on_oldest(2.1)
    assert hb.due(3.0)
    sent = hb.on_send(3.0)
    assert sent.lateness == 0.0
    assert sent.skipped == 0


def test_one_way_beats_wait_for_nothing() -> None:
    hb = HeartbeatEngine(
        interval=1.0, timeout=0.5, max_missed=1, origin=0.0, now=0.0, expects_reply=False
    )
    for t in range(5):
        assert hb.due(float(t))
        hb.on_send(float(t))
    assert hb.check(10.0) == 0
    assert hb.pending == 0
    assert not hb.zombie


def test_a_client_that_does_not_ping_has_no_schedule() -> None:
    hb = HeartbeatEngine(interval=1.0, timeout=0.5, max_missed=1, origin=0.0, now=0.0, sends=False)
    assert not hb.due(1e9)
    assert hb.next_deadline() == math.inf


# -- shape 2: FIFO replies over binary frames ---------------------------------------------


def test_fifo_heartbeats_go_out_as_binary_and_replies_are_matched_in_order() -> None:
    conn, m = live(Fifo("c"))
    action = conn.tick(100.0, None)
    assert isinstance(action, bytes)
    conn.pinged()
    [event] = on_server(action)
    assert isinstance(event, BytesMessage)
    assert bytes(event.data) == b"\xc0\x00"
    assert react(conn, from_server(BytesMessage(data=b"\xd0\x00")), 100.004) == []
    assert counts(m) == {"pings": 1, "pongs": 1}
    assert m.current.hist["rtt"].get_max_value() in range(3990, 4010)


def test_a_binary_reply_split_over_frames_is_one_message() -> None:
    conn, m = live(Fifo("c"))
    conn.tick(100.0, None)
    conn.pinged()
    server = WsConnection(ConnectionType.SERVER)
    data = server.send(BytesMessage(data=b"\xd0", message_finished=False))
    data += server.send(BytesMessage(data=b"\x00", message_finished=True))
    react(conn, data, 100.01)
    assert counts(m) == {"pings": 1, "pongs": 1}


def test_an_unanswered_fifo_heartbeat_holds_the_next_slot_and_is_missed() -> None:
    conn, m = live(Fifo("c"), timeout=1.5)
    conn.tick(100.0, None)
    conn.pinged()
    assert conn.tick(101.0, None) is None  # slot held: one in flight
    conn.tick(101.6, None)  # the first times out
    action = conn.tick(102.0, None)
    assert isinstance(action, bytes)
    conn.pinged()
    assert counts(m) == {"pings": 2, "missed": 1, "held": 1}


# -- shape 3: the server pings --------------------------------------------------------------


def test_a_server_ping_is_answered_at_once_and_its_gaps_are_recorded() -> None:
    conn, m = live(ServerPings("c"))
    assert conn.tick(100.0, None) is None  # the client never pings
    [answer] = react(conn, from_server(TextMessage(data="2")), 100.5)
    assert isinstance(answer, bytes)
    [event] = on_server(answer)
    assert isinstance(event, TextMessage)
    assert event.data == "3"
    react(conn, from_server(TextMessage(data="2")), 101.7)
    assert counts(m) == {"server_pings": 2}
    assert m.current.hist["server_gap"].get_max_value() in range(1199_000, 1201_000)
    assert m.current.hist["rtt"].get_total_count() == 0


def test_server_heartbeats_that_stop_make_a_zombie_after_interval_plus_timeout() -> None:
    conn, m = live(ServerPings("c"))
    react(conn, from_server(TextMessage(data="2")), 101.0)
    assert conn.tick(102.4, None) is None  # 1.4 s < interval 1 + timeout 0.5
    action = conn.tick(102.5, None)
    assert isinstance(action, Closing)
    assert action.info.cause == ZOMBIE
    assert action.info.reason == "zombie: server heartbeats stopped"
    ev = action.info.evidence
    assert ev is not None
    assert ev.answered is True
    assert ev.server_beat_age is not None
    assert math.isclose(ev.server_beat_age, 1.5)
    assert counts(m) == {"server_pings": 1, "server_missed": 1, "zombies": 1}


def test_the_first_server_heartbeat_is_due_from_the_connection_start() -> None:
    conn, _m = live(ServerPings("c"))
    assert conn.tick(101.49, None) is None
    assert isinstance(conn.tick(101.5, None), Closing)


def test_a_one_way_server_beat_counts_but_is_not_answered() -> None:
    conn, m = live(ServerPings("c"))
    assert react(conn, from_server(TextMessage(data="beat")), 100.3) == []
    assert counts(m) == {"server_pings": 1}


# -- shape 4: one-way beats both ways ---------------------------------------------------------


def test_one_way_beats_are_sent_on_schedule_and_liveness_is_silence() -> None:
    conn, m = live(OneWay("c"))
    for t in (100.0, 101.0, 102.0):
        action = conn.tick(t, None)
        assert isinstance(action, bytes)
        conn.pinged()
    react(conn, from_server(TextMessage(data='{"type":6}\x1e')), 102.5)
    assert conn.tick(105.49, None) is not None  # a beat is due at 105
    conn.pinged()
    closing = conn.tick(105.5, None)  # 3 s of silence since 102.5
    assert isinstance(closing, Closing)
    assert closing.info.cause == ZOMBIE
    c = counts(m)
    assert c["pings"] == 4
    assert "missed" not in c
    assert c["server_pings"] == 1


# -- the dialect's farewell -------------------------------------------------------------------


def test_a_transport_end_after_the_dialects_goodbye_is_the_servers_close() -> None:
    proto = Fifo("c")
    conn, _m = live(proto)
    assert conn.lost("eof", 101.0).initiator == TRANSPORT
    proto.farewell = (None, "DISCONNECT 0x8D keep alive timeout")
    info = conn.lost("eof", 101.0)
    assert (info.initiator, info.code, info.reason, info.transport) == (
        SERVER,
        None,
        "DISCONNECT 0x8D keep alive timeout",
        "eof",
    )


def test_frame_event_gives_wsproto_events_for_heartbeat_frames() -> None:
    assert frame_event((OP_TEXT, b"3")) == TextMessage(data="3")
    assert frame_event((OP_BINARY, b"\xc0\x00")) == BytesMessage(data=b"\xc0\x00")


# -- judging a server-ping dialect's heartbeat timeout ----------------------------------------


def _judge(beat_age: float | None, answered: bool = True) -> tuple[str, str]:
    sh = ServerHeartbeat(interval=1.0, timeout=1.0, close_codes=(1005,))
    ev = Evidence(
        age=30.0,
        last_pong_age=None,
        last_frame_age=beat_age,
        consecutive_missed=0,
        pings_pending=0,
        last_sent_age=beat_age,
        server_beat_age=beat_age,
        answered=answered,
    )
    v = Classifier(sh).classify(CloseInfo(SERVER, 1005, "", evidence=ev))
    return v.key, v.why


def test_a_close_at_the_servers_timeout_after_its_ping_is_justified() -> None:
    key, why = _judge(1.01)
    assert key == JUSTIFIED_TIMEOUT
    assert "no server heartbeat for 1.010s >= server timeout 1s" in why


def test_a_close_well_before_the_servers_own_timeout_is_false() -> None:
    key, why = _judge(0.4)
    assert key == FALSE_TIMEOUT
    assert "last server heartbeat 0.400s ago < server timeout 1s" in why


def test_the_slack_is_small_and_relative() -> None:
    assert _judge(0.94)[0] == JUSTIFIED_TIMEOUT  # within 50 ms + 2 %
    assert _judge(0.92)[0] == FALSE_TIMEOUT


def test_no_server_heartbeat_at_all_is_timed_from_the_connection() -> None:
    key, why = _judge(None)
    assert key == JUSTIFIED_TIMEOUT
    assert "30.000s" in why


# -- the upgrade: subprotocols -------------------------------------------------------------


class Sub(HeartbeatProtocol):
    name = "toy-sub"
    __slots__ = ()

    def subprotocols(self) -> tuple[str, ...]:
        return ("mqtt", "mqttv3.1")

    def resource(self, resource: str) -> str:
        return resource + "?EIO=4"


def _accepting(chosen: str | None, seen: list[Request]) -> object:
    async def serve(stream: trio.abc.Stream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, Request):
                    seen.append(event)
                    if chosen is None or chosen in event.subprotocols:
                        await stream.send_all(ws.send(AcceptConnection(subprotocol=chosen)))
                    else:  # by hand: wsproto will not send what was not offered
                        await stream.send_all(_raw_accept(event, chosen))

    return serve


def _raw_accept(request: Request, subprotocol: str) -> bytes:
    key = dict(request.extra_headers)[b"sec-websocket-key"]
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n"
        b"Sec-WebSocket-Protocol: " + subprotocol.encode() + b"\r\n\r\n"
    )


async def _open(chosen: str | None) -> tuple[object, list[Request]]:
    seen: list[Request] = []
    serve = _accepting(chosen, seen)
    async with trio.open_nursery() as nursery:

        async def opener() -> trio.abc.Stream:
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(serve, server)  # type: ignore[arg-type]
            return client

        profile = make_profile(one_client())
        sh = Shared(
            profile, Metrics(), opener, lambda e: None, t0=0.0, wall0=0.0, rng=random.Random(1)
        )
        try:
            conn = await open_connection(sh, Sub("c"))
            result: object = conn.subprotocol
        except HandshakeError as exc:
            result = exc
        nursery.cancel_scope.cancel()
    return result, seen


async def test_the_upgrade_offers_the_dialects_subprotocols_and_keeps_the_choice() -> None:
    result, seen = await _open("mqtt")
    assert result == "mqtt"
    assert seen[0].subprotocols == ["mqtt", "mqttv3.1"]
    assert seen[0].target == "/ws?EIO=4"


async def test_a_server_that_picks_no_subprotocol_fails_the_handshake_saying_so() -> None:
    result, _seen = await _open(None)
    assert isinstance(result, HandshakeError)
    assert result.cause == "subprotocol"
    assert "chose subprotocol none; soak offered 'mqtt', 'mqttv3.1'" in str(result)


@pytest.mark.parametrize("chosen", ["graphql-ws"])
async def test_a_server_that_picks_another_subprotocol_fails_the_handshake(chosen: str) -> None:
    result, _seen = await _open(chosen)
    assert isinstance(result, HandshakeError)
    assert result.cause == "subprotocol"


# -- bounded memory: the largest message a server may send ---------------------------------


def _capped(cap: int) -> Connection:
    conn = Connection(WsConnection(ConnectionType.CLIENT), opened_at=100.0)
    hb = HeartbeatEngine(interval=1.0, timeout=0.5, max_missed=3, origin=100.0, now=100.0)
    conn.start(hb, Fifo("c"), Metrics(), Clock(), 100.0, max_message=cap)
    return conn


def test_a_message_over_max_message_is_a_1009_while_it_arrives() -> None:
    conn = _capped(2048)
    server = WsConnection(ConnectionType.SERVER)
    first = server.send(BytesMessage(data=b"x" * 1500, message_finished=False))
    react(conn, first, 100.1)  # 1,500 bytes held: under the cap
    assert conn.buffered == 1500
    second = server.send(BytesMessage(data=b"x" * 1500, message_finished=False))
    with pytest.raises(
        ProtocolError, match=r"at least 3000 bytes exceeds max_message \(2048\)"
    ) as e:
        react(conn, second, 100.2)
    assert e.value.close_code == 1009
    assert conn.buffer == []  # what was held is let go


def test_a_whole_text_message_over_max_message_is_refused_too() -> None:
    conn = _capped(1024)
    with pytest.raises(ProtocolError, match="a text message of at least 5000 characters") as e:
        react(conn, from_server(TextMessage(data="y" * 5000)), 100.1)
    assert e.value.close_code == 1009
    # at the cap exactly, it is read
    conn = _capped(1024)
    assert react(conn, from_server(TextMessage(data="y" * 1024)), 100.1) == []


def test_max_message_is_a_profile_field_with_a_floor() -> None:
    assert make_profile(one_client()).target.max_message == 1_048_576
    p = make_profile(one_client(), target_extra="max_message = 4096\n")
    assert p.target.max_message == 4096
    with pytest.raises(ProfileError, match=r"target\.max_message.*1024"):
        make_profile(one_client(), target_extra="max_message = 10\n")


def test_a_json_pong_whose_seq_looks_like_a_sentinel_is_an_unknown_pong() -> None:
    from soak.protocols import JsonPing

    conn, m = live(JsonPing("c"))
    for seq in (-2, -1, 0):
        text = '{"type":"pong","seq":' + str(seq) + "}"
        assert react(conn, from_server(TextMessage(data=text)), 100.1) == []  # nothing answered
    assert counts(m) == {"unknown_pongs": 3}


def test_a_pending_timeout_inside_the_early_window_of_a_held_slot_does_not_spin() -> None:
    # one in flight; the ping of slot 0 times out 0.2 ms before slot 1,
    # inside its 1 ms early window: waking early must not find nothing to do
    hb = HeartbeatEngine(
        interval=1.0, timeout=0.9998, max_missed=3, origin=0.0, now=0.0, early=0.001,
        max_in_flight=1,
    )  # fmt: skip
    hb.on_send(0.0)
    now = 0.9995  # in slot 1's early window, before the timeout
    assert not hb.due(now)
    wake = hb.next_deadline()
    assert wake > now  # the next wake is in the future: no busy loop
    assert wake == pytest.approx(0.9998)
    assert hb.check(wake) == 1
    assert hb.due(wake)
