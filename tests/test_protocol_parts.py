"""The dialects' pure parts (soak.protocols): a heartbeat's bytes and the
seq read back from its answer, through wsproto and hand-framed alike."""

from __future__ import annotations

import json

from wsproto.events import Ping, TextMessage

from soak.protocols import JsonPing, WsPing


def test_ws_ping_carries_the_seq_as_8_big_endian_bytes() -> None:
    p = WsPing("c1")
    event = p.ping(0x0102030405060708, 0)
    assert isinstance(event, Ping)
    assert bytes(event.payload) == bytes(range(1, 9))
    assert p.ping_frame(258, 0) == (0x9, b"\x00\x00\x00\x00\x00\x00\x01\x02")
    assert p.pong_control(b"\x00\x00\x00\x00\x00\x00\x01\x02") == 258
    assert p.pong_control(b"\x01\x02") is None  # not our ping's payload
    assert p.client_id == "c1"
    assert p.server_version is None
    assert p.silence_timeout is None


def test_json_ping_through_wsproto_and_hand_framed_say_the_same() -> None:
    p = JsonPing("soak-000007")
    event = p.ping(12, 1_790_000_000_123)
    assert isinstance(event, TextMessage)
    assert json.loads(event.data) == {
        "type": "ping",
        "timestamp": 1_790_000_000_123,
        "clientId": "soak-000007",
        "seq": 12,
    }
    assert p.ping_frame(12, 1_790_000_000_123) == (0x1, event.data.encode())
    assert p.client_id == "soak-000007"


def test_json_pong_seq_must_be_an_integer() -> None:
    p = JsonPing("c")
    assert p.pong_text('{"type":"pong","seq":5}') == 5
    assert p.pong_text('{"type":"pong","seq":true}') is None  # a bool is no seq
    assert p.pong_text('{"type":"pong","seq":"5"}') is None
    assert p.pong_text('{"type":"pong"}') is None
    assert p.pong_text('["pong"]') is None
    assert p.pong_text('{"type":"ping","seq":5,"x":"pong"}') is None
