"""protocol = "socket.io", pure: the packets as plain strings from the
Engine.IO and Socket.IO specs' wire examples, the handshake over a scripted
connection, and the judgement of the server's closes (the profile's table:
test_socketio_config.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from soak.classify import SERVER, TRANSPORT, Classifier, CloseInfo, Evidence, Verdict
from soak.config.heartbeat import ServerHeartbeat
from soak.config.load import parse_profile
from soak.config.socketio import SOCKETIO_SERVER_HEARTBEAT
from soak.config.target import TargetConfig
from soak.errors import HandshakeError, ProfileError
from soak.protocols.base import OLDEST, SERVER_PING
from soak.protocols.socketio import (
    SocketIO,
    SocketIOState,
    error_message,
    open_packet,
    sio_packet,
)
from soak.wsframe import OP_TEXT

URL = "ws://127.0.0.1:3001/socket.io/"
OPEN = '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'  # noqa: E501
STAGES = '\n[clients]\n[[clients.stages]]\nkind = "hold"\nduration = "1s"\n'


def target(
    table: str = "", url: str = URL, keys: str = "", env: dict[str, str] | None = None
) -> TargetConfig:
    text = f'[target]\nurl = "{url}"\nprotocol = "socket.io"\n{keys}'
    if table:
        text += f"[target.socketio]\n{table}\n"
    return parse_profile(text + STAGES, "p.toml", env or {}).target


def client(table: str = "", **kw: Any) -> SocketIO:
    return SocketIO("soak-000001", SocketIOState(target(table, **kw)))


def load_error(text: str) -> str:
    with pytest.raises(ProfileError) as info:
        parse_profile(text + STAGES, "p.toml", {})
    return str(info.value)


class Scripted:
    """A HandshakeIO whose server says ``incoming`` in order."""

    def __init__(self, *incoming: str) -> None:
        self.url = URL
        self.subprotocol: str | None = None
        self.incoming = list(incoming)
        self.sent: list[str] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def send_bytes(self, data: bytes) -> None:
        raise AssertionError("Socket.IO's handshake is text")

    async def receive_text(self) -> str:
        if not self.incoming:
            raise HandshakeError("eof", f"{self.url}: connection closed during the handshake")
        return self.incoming.pop(0)

    async def receive(self) -> str | bytes:
        return await self.receive_text()


# -- packets -------------------------------------------------------------------------


def test_the_open_packet_gives_the_servers_timings() -> None:
    assert open_packet(OPEN, URL) == (25.0, 20.0, 1_000_000)
    assert open_packet('0{"sid":"a","pingInterval":300,"pingTimeout":200}', URL) == (
        0.3,
        0.2,
        None,
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"type":"pong","seq":1}', 'expected an Engine.IO open packet (0{...}), got \'{"type"'),
        ("0not json", "malformed Engine.IO open packet '0not json'"),
        ('0{"pingInterval":1,"pingTimeout":1}', "malformed Engine.IO open packet"),
        ('0{"sid":"a","pingInterval":0,"pingTimeout":1}', "pingInterval is 0, expected"),
        ('0{"sid":"a","pingInterval":1,"pingTimeout":true}', "pingTimeout is True, expected"),
    ],
)
def test_what_is_no_open_packet_is_a_permanent_protocol_failure(text: str, says: str) -> None:
    with pytest.raises(HandshakeError) as info:
        open_packet(text, URL)
    assert info.value.cause == "protocol"
    assert info.value.permanent
    assert says in str(info.value)
    assert str(info.value).startswith(URL + ": ")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ('0{"sid":"x"}', ("0", "/", '{"sid":"x"}')),
        ('0/admin,{"sid":"x"}', ("0", "/admin", '{"sid":"x"}')),
        ("0/admin,", ("0", "/admin", "")),
        ('4/admin,{"message":"Not authorized"}', ("4", "/admin", '{"message":"Not authorized"}')),
        ('2["hello",1]', ("2", "/", '["hello",1]')),
        ('213["hello"]', ("2", "/", '13["hello"]')),
        (
            '51-/admin,["up",{"_placeholder":true,"num":0}]',
            ("5", "/admin", '["up",{"_placeholder":true,"num":0}]'),
        ),
        ("1", ("1", "/", "")),
    ],
)
def test_socketio_packets(text: str, parsed: tuple[str, str, str]) -> None:
    assert sio_packet(text) == parsed


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"message":"Not authorized"}', "Not authorized"),
        (
            '{"message":"Not authorized","data":{"reason":"no token"}}',
            'Not authorized ({"reason": "no token"})',
        ),
        ('"Not authorized"', "Not authorized"),  # Socket.IO 2
        ('{"reason":"no token"}', '{"reason": "no token"}'),  # Socket.IO 2: the error's data
        ("", "(no message)"),
        ("oops", "oops"),
    ],
)
def test_connect_error_messages(data: str, message: str) -> None:
    assert error_message(data) == message


async def test_engine_io_4_the_server_pings_and_the_client_only_answers() -> None:
    p = client()
    assert (p.client_pings, p.max_in_flight) == (False, None)
    assert p.pong_text("2") == SERVER_PING
    assert p.answer() == (OP_TEXT, b"3")
    assert p.pong_text("3") is None  # nothing of ours to answer
    assert p.ping_frame(1, 0) is None
    assert p.resource("/anything") == "/socket.io/?EIO=4&transport=websocket"


def test_engine_io_3_the_client_pings_one_at_a_time() -> None:
    p = client("eio = 3")
    assert (p.client_pings, p.max_in_flight) == (True, 1)
    assert p.ping_frame(7, 0) == (OP_TEXT, b"2")
    assert p.pong_text("3") == OLDEST
    assert p.pong_text("2") is None  # never answered: the server would drop us
    assert p.resource("/") == "/socket.io/?EIO=3&transport=websocket"


def test_live_packets_are_counted_and_goodbyes_remembered() -> None:
    p = client('namespace = "/admin"')
    state = p.state
    for text in ('42/admin,["tick",1]', "43/admin,1[]", "6", "40/admin,", '42["other ns"]'):
        assert p.pong_text(text) is None
    assert state.messages == 4  # noop is no message
    assert p.pong_text("41") is None  # "/" is not our namespace
    assert p.farewell is None
    assert p.pong_text("hello") is None
    assert state.unknown_packets == 1
    assert p.pong_text("41/admin,") is None
    assert p.farewell == (None, "Socket.IO DISCONNECT")
    assert state.disconnects == 1
    other = client()
    other.pong_text("1")
    assert other.farewell == (None, "Engine.IO close")


# -- the handshake ---------------------------------------------------------------------


async def test_engine_io_4_handshake() -> None:
    p = client()
    io = Scripted(OPEN, '40{"sid":"x"}')
    await p.handshake(io)
    assert io.sent == ["40"]
    assert (p.server_interval, p.server_timeout) == (25.0, 20.0)
    assert p.state.sessions == 1
    assert p.state.summary()["server_timings_ms"] == ["pingInterval 25000, pingTimeout 20000"]


async def test_namespace_and_auth_payload_with_the_token() -> None:
    p = client(
        'namespace = "/admin"\nauth = \'{"room": 7}\'',
        keys='token_env = "T"\n',
        env={"T": "s3cret"},
    )
    io = Scripted(OPEN, '40{"sid":"for /"}', "2", '42/admin,["early"]', '40/admin,{"sid":"x"}')
    await p.handshake(io)
    # a ping before the answer is answered; "/"'s CONNECT is not ours
    assert io.sent == ['40/admin,{"room":7,"token":"s3cret"}', "3"]


async def test_an_auth_token_given_in_auth_is_kept() -> None:
    p = client('auth = { token = "mine" }', keys='token_env = "T"\n', env={"T": "other"})
    assert p.state.connect_packet == '40{"token":"mine"}'


async def test_engine_io_3_handshake_waits_for_the_servers_own_connect() -> None:
    p = client("eio = 3")
    io = Scripted(OPEN, "40")
    await p.handshake(io)
    assert io.sent == []
    assert (p.server_interval, p.server_timeout) == (None, None)  # the client pings
    assert (p.ping_interval, p.ping_timeout) == (25.0, 20.0)
    q = client('eio = 3\nnamespace = "/admin"')
    io = Scripted(OPEN, "40", "40/admin,")
    await q.handshake(io)
    assert io.sent == ["40/admin,"]


@pytest.mark.parametrize(
    ("incoming", "cause", "permanent", "says"),
    [
        (
            ['44{"message":"Not authorized","data":{"reason":"wrong token"}}'],
            "connect_error",
            True,
            'CONNECT to namespace / refused: Not authorized ({"reason": "wrong token"}) (permanent',
        ),
        (['44{"message":"server full"}'], "connect_error", False, "refused: server full"),
        (['44/x,{"message":"Invalid namespace"}'], "connect_error", True, "namespace /x refused"),
        (["41"], "rejected", False, "the server disconnected namespace / at once"),
        (["1"], "eof", False, "Engine.IO close packet during the handshake"),
        (['{"type":"pong"}'], "protocol", False, "expected a Socket.IO packet (4...)"),
        ([], "eof", False, "connection closed during the handshake"),
    ],
)
async def test_refusals(incoming: list[str], cause: str, permanent: bool, says: str) -> None:
    p = client('namespace = "/x"' if "/x" in "".join(incoming) else "")
    with pytest.raises(HandshakeError) as info:
        await p.handshake(Scripted(OPEN, *incoming))
    assert (info.value.cause, info.value.permanent) == (cause, permanent)
    assert says in str(info.value)


async def test_engine_io_3_refusal_as_socketio_2_words_it() -> None:
    p = client("eio = 3")
    with pytest.raises(HandshakeError) as info:
        await p.handshake(Scripted(OPEN, '44"Not authorized"'))
    assert info.value.permanent
    assert p.state.connect_errors == 1


async def test_permanent_errors_is_the_profiles() -> None:
    p = client('permanent_errors = "^server full$"')
    with pytest.raises(HandshakeError) as info:
        await p.handshake(Scripted(OPEN, '44{"message":"server full"}'))
    assert info.value.permanent
    q = client('permanent_errors = "^$"')
    with pytest.raises(HandshakeError) as info:
        await q.handshake(Scripted(OPEN, '44{"message":"Not authorized"}'))
    assert not info.value.permanent


async def test_a_connect_packet_larger_than_max_payload_is_not_sent() -> None:
    p = client(f'auth = {{ blob = "{"x" * 120}" }}')
    io = Scripted('0{"sid":"a","pingInterval":1000,"pingTimeout":1000,"maxPayload":100}')
    with pytest.raises(HandshakeError) as info:
        await p.handshake(io)
    assert io.sent == []
    assert info.value.permanent
    assert "more than the server's maxPayload 100" in str(info.value)


# -- the server's closes ----------------------------------------------------------------


def evidence(**kw: Any) -> Evidence:
    base: dict[str, Any] = dict(
        age=30.0,
        last_pong_age=None,
        last_frame_age=1.0,
        consecutive_missed=0,
        pings_pending=0,
        last_sent_age=1.0,
        server_beat_age=1.0,
        answered=True,
    )
    base.update(kw)
    return Evidence(**base)


def judged(p: SocketIO, info: CloseInfo) -> Verdict:
    return p.judge(Classifier(SOCKETIO_SERVER_HEARTBEAT).classify(info), info)


async def opened(p: SocketIO) -> SocketIO:
    packet = '0{"sid":"a","pingInterval":1000,"pingTimeout":2000}'
    await p.handshake(Scripted(packet, "40" if p.eio == 3 else '40{"sid":"b"}'))
    return p


async def test_1005_after_ping_timeout_is_justified_before_it_a_server_close() -> None:
    p = await opened(client())  # pingInterval 1 s, pingTimeout 2 s
    # the first ping at 1 s, unanswered as far as the server knows: closed at 3 s
    late = CloseInfo(
        SERVER, 1005, "", evidence=evidence(age=3.0, server_beat_age=2.0, last_sent_age=2.0)
    )
    v = judged(p, late)
    assert (v.key, v.category) == ("justified_timeout", "heartbeat_timeout")
    assert v.why == (
        "the server's ping timeout: closed without a status 2.000s after the server's first "
        "ping, 3.000s after the open (open packet: pingInterval 1s, pingTimeout 2s); our last "
        "answer sent 2.000s ago"
    )
    # 50 ms + 2 % of the timeout early still counts as the timer
    soon = evidence(age=2.92, server_beat_age=1.92)
    assert judged(p, dataclasses.replace(late, evidence=soon)).key == "justified_timeout"
    early = CloseInfo(SERVER, 1005, "", evidence=evidence(age=2.5, server_beat_age=1.5))
    v = judged(p, early)
    assert (v.key, v.category) == ("server_1005", "server")
    assert v.why == (
        "closed without a status 1.500s after the server's first ping, 2.500s after the "
        "open: sooner than the server's ping timer can fire (open packet: pingInterval 1s, "
        "pingTimeout 2s)"
    )


async def test_a_ping_we_read_late_does_not_hide_the_timer() -> None:
    """The server's timer runs from when it sent the ping; a tester busy
    elsewhere reads the ping late, so the time since it looks short. The
    time since the ping before it (the server sends each pingInterval after
    our answer) still shows the timer."""
    p = await opened(client())
    first = CloseInfo(SERVER, 1005, "", evidence=evidence(age=3.0, server_beat_age=1.8))
    assert judged(p, first).key == "justified_timeout"
    p.last_gap = 1.2  # the last ping read 0.2 s late
    later = CloseInfo(SERVER, 1005, "", evidence=evidence(age=30.0, server_beat_age=1.8))
    v = judged(p, later)
    assert v.key == "justified_timeout"
    assert "1.800s after the server's last ping, 3.000s after the ping before it" in v.why
    p.last_gap = 1.0
    shutdown = CloseInfo(SERVER, 1005, "", evidence=evidence(age=30.0, server_beat_age=1.5))
    assert judged(p, shutdown).key == "server_1005"


async def test_server_pings_are_timed_on_the_session() -> None:
    p = await opened(client())
    assert p.pong_text("2") == SERVER_PING
    assert p.last_gap is None
    assert p.pong_text("2") == SERVER_PING
    assert p.last_gap is not None
    assert p.last_gap >= 0
    await opened(p)
    assert (p.last_gap, p.last_ping_at) == (None, None)


async def test_without_a_ping_yet_the_timer_can_fire_only_after_interval_plus_timeout() -> None:
    p = await opened(client())
    info = CloseInfo(SERVER, 1005, "", evidence=evidence(age=2.5, server_beat_age=None))
    assert judged(p, info).key == "server_1005"
    info = CloseInfo(SERVER, 1005, "", evidence=evidence(age=3.0, server_beat_age=None))
    v = judged(p, info)
    assert v.key == "justified_timeout"
    assert "3.000s after the open, before any ping (open packet: pingInterval 1s" in v.why


async def test_engine_io_3_is_judged_by_our_last_answered_ping() -> None:
    p = await opened(client("eio = 3"))
    info = CloseInfo(SERVER, 1005, "", evidence=evidence(last_pong_age=2.999, consecutive_missed=2))
    v = judged(p, info)
    assert v.key == "justified_timeout"
    assert "2 of our pings missed" in v.why
    info = CloseInfo(SERVER, 1005, "", evidence=evidence(last_pong_age=0.4))
    assert judged(p, info).key == "server_1005"


async def test_goodbyes_name_the_close_that_follows() -> None:
    p = await opened(client())
    p.pong_text("41")
    v = judged(p, CloseInfo(SERVER, 1005, "", evidence=evidence(server_beat_age=5.0)))
    assert (v.key, v.why) == ("server_socketio_disconnect", "after the server's DISCONNECT (41)")
    # the end of the transport after it is the server's too (Connection.lost)
    v = judged(p, CloseInfo(SERVER, None, "Socket.IO DISCONNECT", "eof", evidence=evidence()))
    assert v.key == "server_socketio_disconnect"
    await opened(p)  # a new session forgets it
    assert (p.farewell, p.goodbye) == (None, None)
    p.pong_text("1")
    assert judged(p, CloseInfo(SERVER, None, "Engine.IO close", "eof")).key == (
        "server_engineio_close"
    )


async def test_other_ends_are_left_to_the_classifier() -> None:
    p = await opened(client())
    info = CloseInfo(TRANSPORT, 1006, "", "eof", evidence=evidence())
    assert judged(p, info).key == "transport_eof"
    info = CloseInfo(SERVER, 1011, "boom", evidence=evidence())
    assert judged(p, info).key == "server_1011_internal_error"


async def test_a_profiles_own_server_heartbeat_is_used_as_it_is() -> None:
    table = '[target.server_heartbeat]\ninterval = "1s"\ntimeout = "2s"\nclose_codes = [1005]\n'
    t = target(keys="", table="")
    t = parse_profile(
        f'[target]\nurl = "{URL}"\nprotocol = "socket.io"\n{table}' + STAGES, "p.toml", {}
    ).target
    assert t.server_heartbeat == ServerHeartbeat(interval=1.0, timeout=2.0, close_codes=(1005,))
    p = await opened(SocketIO("c", SocketIOState(t)))
    info = CloseInfo(SERVER, 1005, "", evidence=evidence(server_beat_age=0.5))
    v = p.judge(Classifier(t.server_heartbeat).classify(info), info)
    assert v.key == "false_timeout"  # the model's reading: before the server's timeout
