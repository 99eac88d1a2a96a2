"""protocol = "mqtt", pure: the whole refusal a user reads for CONNACK
return and reason codes (MQTT 3.1.1 section 3.2.2.3, MQTT 5 section
2.4), and MQTT 5 property lists cut short. The packets, the handshake's
happy path and the keepalive verdicts are tests/test_mqtt.py and
tests/test_mqtt_packets.py."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from soak.config.mqtt import MqttConfig
from soak.config.target import TargetConfig
from soak.errors import HandshakeError
from soak.protocols import mqtt_packets as mp
from soak.protocols.mqtt import Mqtt, MqttState
from tests.support.scripted import URL, ScriptedIO


def mqtt(version: int) -> Mqtt:
    cfg = MqttConfig(version=version, keepalive=30.0, heartbeat_interval=10.0)
    return Mqtt("soak-000001", MqttState(TargetConfig(protocol="mqtt", mqtt=cfg)))


@pytest.mark.parametrize(
    ("version", "answer", "cause", "permanent", "said"),
    [
        # 3.1.1: a return code the specification reserves
        (4, "20 02 00 07", "rejected", False, "CONNACK return code 7 (return code 7)"),
        (4, "20 02 00 84", "rejected", False, "CONNACK return code 132 (return code 132)"),
        (
            4,
            "20 02 00 01",
            "protocol",
            True,
            "CONNACK return code 1 (unacceptable protocol version); "
            "try [target.mqtt] version = 4 (MQTT 3.1.1)",
        ),
        (4, "20 02 00 02", "client_id", True, "CONNACK return code 2 (identifier rejected)"),
        (4, "20 02 00 03", "unavailable", False, "CONNACK return code 3 (server unavailable)"),
        (
            4,
            "20 02 00 04",
            "auth",
            True,
            "CONNACK return code 4 (bad user name or password) "
            "(user name from [target.mqtt] username, password from password_env)",
        ),
        # 5: the version hint for "unsupported protocol version" only
        (
            5,
            "20 03 00 84 00",
            "protocol",
            True,
            "reason code 0x84 (unsupported protocol version); "
            "try [target.mqtt] version = 4 (MQTT 3.1.1)",
        ),
        (5, "20 03 00 81 00", "protocol", False, "reason code 0x81 (malformed packet)"),
        (5, "20 03 00 85 00", "client_id", True, "reason code 0x85 (client identifier not valid)"),
        (5, "20 03 00 c3 00", "rejected", False, "reason code 0xc3 (reason code 0xc3)"),
    ],
)
async def test_a_refusal_says_the_code_its_name_and_what_to_do(
    version: int,
    answer: str,
    cause: str,
    permanent: bool,
    said: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    p = mqtt(version)
    with pytest.raises(HandshakeError) as info:
        await p.handshake(ScriptedIO(bytes.fromhex(answer)))
    assert str(info.value) == f"{URL}: the broker refused the connection: {said}"
    assert (info.value.cause, info.value.permanent) == (cause, permanent)


def test_a_property_list_whose_string_length_is_cut_says_so() -> None:
    # reason string (0x1f) with one byte of its two-byte length left
    with pytest.raises(mp.MalformedPacket) as info:
        mp.parse_properties(bytes([2, 0x1F, 0x00]), 0)
    assert str(info.value) == "a string length past the property list's end"
    # exactly its two length bytes, and nothing after: the empty string
    assert mp.parse_properties(bytes([3, 0x1F, 0x00, 0x00]), 0) == ({"reason_string": ""}, 4)


def test_a_property_string_longer_than_the_list_says_so() -> None:
    with pytest.raises(mp.MalformedPacket) as info:
        mp.parse_properties(bytes([5, 0x1F, 0x00, 0x03, ord("a"), ord("b")]), 0)
    assert str(info.value) == "a string past the property list's end"
    props, end = mp.parse_properties(bytes([6, 0x1F, 0x00, 0x03, *b"abc"]), 0)
    assert (props, end) == ({"reason_string": "abc"}, 7)


def test_a_string_length_is_big_endian() -> None:
    text = b"x" * 258
    body = bytes([0x1F, 0x01, 0x02]) + text
    props, _ = mp.parse_properties(mp.varint(len(body)) + body, 0)
    assert props == {"reason_string": "x" * 258}


def test_user_properties_are_kept_as_pairs_in_order() -> None:
    pair = bytes([0x26, 0, 1, *b"k", 0, 2, *b"v1"])
    pair2 = bytes([0x26, 0, 1, *b"k", 0, 2, *b"v2"])
    body = pair + pair2
    props, _ = mp.parse_properties(mp.varint(len(body)) + body, 0)
    assert props == {"user_property": [("k", "v1"), ("k", "v2")]}


def props(*items: bytes) -> bytes:
    body = b"".join(items)
    return mp.varint(len(body)) + body


def test_each_property_type_is_read_at_its_size() -> None:
    body = props(
        bytes([0x24, 1]),  # maximum_qos: a byte
        bytes([0x13, 0x01, 0x2C]),  # server_keep_alive: two bytes, 300
        bytes([0x11, 0x00, 0x01, 0x00, 0x00]),  # session_expiry_interval: four, 65536
        bytes([0x0B, 0x80, 0x01]),  # subscription_identifier: a varint, 128
        bytes([0x09, 0x00, 0x02, 0xFF, 0x00]),  # correlation_data: bytes as they are
    )
    parsed, end = mp.parse_properties(body, 0)
    assert parsed == {
        "maximum_qos": 1,
        "server_keep_alive": 300,
        "session_expiry_interval": 65536,
        "subscription_identifier": 128,
        "correlation_data": b"\xff\x00",
    }
    assert end == len(body)


def test_text_that_is_no_utf8_is_shown_with_replacement_characters() -> None:
    parsed, _ = mp.parse_properties(
        props(bytes([0x1F, 0x00, 0x02, 0xC3, 0x28]), bytes([0x26, 0, 1, 0xFF, 0, 1, 0xFE])), 0
    )
    assert parsed == {"reason_string": "\ufffd(", "user_property": [("\ufffd", "\ufffd")]}


@pytest.mark.parametrize(
    "item",
    [bytes([0x24]), bytes([0x13, 0x01]), bytes([0x11, 0x00, 0x00, 0x01])],
)
def test_a_fixed_size_value_cut_short_says_so(item: bytes) -> None:
    with pytest.raises(mp.MalformedPacket) as info:
        mp.parse_properties(props(item), 0)
    assert str(info.value) == "a property value past the property list's end"
