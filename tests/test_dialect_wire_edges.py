"""Recognisers at their edges, pure: which of a connection's first
messages are sniffed for another dialect's greeting (SNIFFED, 3, then the
application's), SockJS echoes batched in one frame, SignalR's client
timeout at its boundary, and a legacy graphql-ws connection_error that
carries no text."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from soak.classify import Evidence
from soak.config.sockjs import SockjsConfig
from soak.config.target import TargetConfig
from soak.errors import HandshakeError, ProtocolError
from soak.protocols.graphql_ws_legacy import GraphqlWsLegacy
from soak.protocols.json_ping import JsonPing
from soak.protocols.signalr import client_timeout_verdict
from soak.protocols.sniff import SNIFFED
from soak.protocols.sockjs import Sockjs, SockjsState
from soak.protocols.ws_ping import WsPing
from tests.support.scripted import URL, ScriptedIO

GREETING = '0{"sid":"abc","pingInterval":25000,"pingTimeout":20000}'
CONNACK = b"\x20\x02\x00\x00"


@pytest.mark.parametrize("dialect", [WsPing, JsonPing])
def test_a_greeting_among_the_first_messages_names_the_dialect(dialect: Any) -> None:
    p = dialect("c")
    p.opened()
    for _ in range(SNIFFED - 1):
        assert p.pong_text("hello") is None
    with pytest.raises(ProtocolError) as info:
        p.pong_text(GREETING)
    assert str(info.value) == (
        f"the server sent an Engine.IO open packet ({GREETING!r}): it speaks Socket.IO "
        f'(Engine.IO), not protocol = "{p.name}" (try protocol = "socket.io")'
    )


@pytest.mark.parametrize("dialect", [WsPing, JsonPing])
def test_after_the_first_three_a_greeting_is_the_applications(dialect: Any) -> None:
    p = dialect("c")
    p.opened()
    for _ in range(SNIFFED):
        assert p.pong_text("hello") is None
    for _ in range(5):
        assert p.pong_text(GREETING) is None


def test_before_a_connection_opens_nothing_is_sniffed() -> None:
    p = WsPing("c")
    assert p.pong_text(GREETING) is None
    assert p.pong_binary(CONNACK) is None


def test_ws_ping_sniffs_binary_messages_too_and_counts_them_with_text() -> None:
    p = WsPing("c")
    p.opened()
    assert p.pong_binary(b"\x01\x02") is None
    with pytest.raises(ProtocolError) as info:
        p.pong_binary(CONNACK)
    assert str(info.value) == (
        "the server sent an MQTT CONNACK (binary 20 02 00 00): it speaks MQTT, "
        'not protocol = "ws-ping" (try protocol = "mqtt")'
    )
    q = WsPing("c")
    q.opened()
    q.pong_text("a")
    q.pong_binary(b"b")
    q.pong_text("c")
    assert q.pong_binary(CONNACK) is None  # the fourth: not sniffed


def test_ws_pings_payload_is_big_endian_through_wsproto_too() -> None:
    assert bytes(WsPing("c").ping(1, 0).payload) == b"\x00" * 7 + b"\x01"  # type: ignore[attr-defined]


# -- SockJS echo ---------------------------------------------------------------------------


def echo() -> Sockjs:
    return Sockjs("c", SockjsState(TargetConfig(protocol="sockjs", sockjs=SockjsConfig(echo=True))))


@pytest.mark.parametrize(
    ("frame", "seq"),
    [
        ('a["soak:7:1790000000123"]', 7),  # one echo, as sent
        ('a["hello","soak:1:5"]', 1),  # batched with the application's
        ('a[5,{"x":1},"soak:12:-3"]', 12),
        ('a["soak:3:1","soak:4:2"]', 3),  # the first
        ('a["soak:0:1","soak:9:1"]', 9),  # a seq no heartbeat has is skipped
        ('a["soak:x:1"]', None),
        ('a["soak:"]', None),
        ('a["hello"]', None),
        ("a[oops", None),
    ],
)
def test_the_first_of_our_heartbeats_in_an_a_frame_is_its_answer(
    frame: str, seq: int | None
) -> None:
    assert echo().pong_text(frame) == seq


# -- SignalR's client timeout ----------------------------------------------------------------


def ev(sent: float | None) -> Evidence:
    return Evidence(
        age=100.0,
        last_pong_age=None,
        last_frame_age=1.0,
        last_sent_age=sent,
        consecutive_missed=0,
        pings_pending=0,
    )


def test_the_hubs_client_timeout_at_its_boundary() -> None:
    # 30 s less 0.05 s and 2% of it: 29.35 s
    early = client_timeout_verdict(ev(29.34), 30.0)
    assert (early.key, early.category) == ("false_timeout", "heartbeat_timeout")
    assert early.why == "the client last sent 29.340s ago < the hub's client timeout 30s"
    at = client_timeout_verdict(ev(29.35), 30.0)
    assert (at.key, at.category) == ("justified_timeout", "heartbeat_timeout")
    assert at.why == "the client sent nothing for 29.350s >= the hub's client timeout 30s"
    never = client_timeout_verdict(ev(None), 30.0)
    assert never.key == "justified_timeout"
    assert never.why == (
        "the client sent nothing for the whole connection >= the hub's client timeout 30s"
    )


# -- subscriptions-transport-ws -------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "shown"),
    [
        ('{"message":"bad token"}', ": bad token"),
        ('"bad token"', ": bad token"),
        ('{"message":42}', ""),
        ('{"message":""}', ""),
        ("null", ""),
        ("[1]", ""),
    ],
)
async def test_a_connection_error_shows_its_message_when_it_has_one(
    payload: str, shown: str, autojump_clock: trio.testing.MockClock
) -> None:
    p = GraphqlWsLegacy("c")
    with pytest.raises(HandshakeError) as info:
        await p.handshake(ScriptedIO('{"type":"connection_error","payload":' + payload + "}"))
    assert info.value.cause == "connection_error"
    assert str(info.value) == f"{URL}: connection_error{shown}"
