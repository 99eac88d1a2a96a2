"""What every dialect shows of a message it cannot read, and the frames of
the base dialect: a bad message is quoted in the error a user reads, cut
at the dialect's limit with "..." (never a megabyte of it in a log line),
and a heartbeat goes out as the same bytes through wsproto as hand-framed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from wsproto.events import BytesMessage, Ping, TextMessage

from soak.errors import HandshakeError, ProtocolError
from soak.protocols import (
    PROTOCOLS,
    actioncable,
    centrifugo,
    graphql_ws,
    graphql_ws_legacy,
    mqtt,
    nats,
    phoenix,
    pusher,
    signalr,
    socketio,
    sockjs,
    stomp,
)
from soak.protocols.base import HeartbeatProtocol, frame_event
from soak.wsframe import OP_BINARY, OP_PING, OP_TEXT


def _stomp(text: str) -> None:
    stomp.parse_frames(text + "\x00")


def _mqtt_text(text: str) -> None:
    mqtt.Mqtt("c").pong_text(text)


def _socketio_open(text: str) -> None:
    socketio.open_packet(text, "ws://h/")


# (what reads the message, the message's filler, how much of it is shown)
READERS: list[tuple[str, Callable[[str], Any], str, int]] = [
    ("actioncable", actioncable.message, "x", 60),
    ("centrifugo", centrifugo.replies, "x", 60),
    ("graphql-ws", graphql_ws.message_type, "x", 60),
    ("graphql-ws-legacy", graphql_ws_legacy.server_message, "x", 60),
    ("nats", nats.info, "x", 60),
    ("phoenix", phoenix.message, "x", 60),
    ("pusher", pusher.event_of, "x", 60),
    ("signalr", signalr.records, "x", 60),
    ("sockjs", sockjs.parse_frame, "z", 60),
    ("socket.io", _socketio_open, "x", 60),
    ("stomp", _stomp, "1", 40),
    ("mqtt", _mqtt_text, "x", 40),
]


@pytest.mark.parametrize(("dialect", "read", "filler", "limit"), READERS)
def test_a_bad_message_is_quoted_whole_up_to_the_limit(
    dialect: str, read: Callable[[str], Any], filler: str, limit: int
) -> None:
    text = filler * limit
    with pytest.raises((ValueError, HandshakeError, ProtocolError)) as info:
        read(text)
    assert repr(text) in str(info.value), dialect
    assert repr(text + "...") not in str(info.value)


@pytest.mark.parametrize(("dialect", "read", "filler", "limit"), READERS)
def test_a_longer_bad_message_is_cut_at_the_limit(
    dialect: str, read: Callable[[str], Any], filler: str, limit: int
) -> None:
    with pytest.raises((ValueError, HandshakeError, ProtocolError)) as info:
        read(filler * (limit + 1))
    assert repr(filler * limit + "...") in str(info.value), dialect
    assert filler * (limit + 1) not in str(info.value)


# -- the base dialect's frames -----------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "event"),
    [
        ((OP_TEXT, b'{"type":"ping"}'), TextMessage(data='{"type":"ping"}')),
        ((OP_TEXT, "é".encode()), TextMessage(data="é")),
        ((OP_BINARY, b"\xc0\x00"), BytesMessage(data=b"\xc0\x00")),
        ((OP_PING, b"\x00\x01"), Ping(payload=b"\x00\x01")),
    ],
)
def test_a_frame_is_the_wsproto_event_with_the_same_payload(
    frame: tuple[int, bytes], event: Any
) -> None:
    out = frame_event(frame)
    assert type(out) is type(event)
    assert out == event


@pytest.mark.parametrize("opcode", [0x0, 0x8, 0xA, 0x3])
def test_a_control_or_reserved_opcode_is_no_heartbeat(opcode: int) -> None:
    with pytest.raises(ValueError, match="heartbeat") as info:
        frame_event((opcode, b""))
    assert str(info.value) == f"opcode {opcode:#x} is not a heartbeat frame"


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_each_dialects_wsproto_ping_is_its_hand_framed_one(name: str) -> None:
    p = PROTOCOLS[name]("soak-000001")
    frame = p.ping_frame(7, 1_790_000_000_123)
    if frame is None:  # no shortcut: nothing to compare, or no client heartbeat
        try:
            event = p.ping(7, 1_790_000_000_123)
        except NotImplementedError:
            return
        assert event is not None
        return
    assert p.ping(7, 1_790_000_000_123) == frame_event(frame)


def test_a_dialect_without_a_ping_frame_has_no_wsproto_ping_either() -> None:
    class Quiet(HeartbeatProtocol):
        name = "quiet"

    with pytest.raises(NotImplementedError):
        Quiet("c").ping(1, 0)
    with pytest.raises(NotImplementedError) as info:
        Quiet("c").answer()
    assert str(info.value) == "quiet has no answer to a server ping"


def test_the_base_dialect_hands_the_seq_and_the_time_to_its_frame() -> None:
    seen: list[tuple[int, int]] = []

    class Echo(HeartbeatProtocol):
        name = "echo"

        def ping_frame(self, seq: int, now_ms: int) -> tuple[int, bytes] | None:
            seen.append((seq, now_ms))
            return OP_TEXT, f"{seq}@{now_ms}".encode()

    assert Echo("c").ping(12, 345) == TextMessage(data="12@345")
    assert seen == [(12, 345)]


def test_the_base_dialect_says_nothing_about_messages() -> None:
    p = HeartbeatProtocol("c")
    assert p.pong_text('{"type":"pong","seq":1}') is None
    assert p.pong_binary(b"\xd0\x00") is None
    assert p.pong_control(b"\x00" * 8) is None
    assert p.subprotocols() == ()
    assert p.resource("/ws?a=1") == "/ws?a=1"
    assert p.close_hint() is None
    assert (p.client_pings, p.expects_reply, p.max_in_flight, p.replies) == (True, True, None, 1)
    assert (p.server_interval, p.server_timeout, p.farewell) == (None, None, None)
