"""MQTT's packets as bytes (soak.protocols.mqtt_packets): CONNECT as the
spec and a real broker saw it, CONNACK and DISCONNECT read back, and a
stream of packets cut anywhere."""

from __future__ import annotations

import pytest

from soak.protocols import mqtt_packets as mp


def test_connect_3_1_1_is_the_verified_probe_bytes() -> None:
    # the CONNECT mosquitto 2.0.11 accepted (/work/shared/PROTOCOLS.md, section 5)
    probe = bytes.fromhex("10 16 00 04 4d 51 54 54 04 02 00 0a 00 0a 73 6f 61 6b 2d 70 72 6f 62 65")
    assert mp.connect(version=4, client_id="soak-probe", keepalive=10) == probe


def test_connect_5_with_credentials_and_no_clean_start() -> None:
    packet = mp.connect(
        version=5, client_id="c", keepalive=300, clean=False, username="u", password="pw"
    )
    body = (
        b"\x00\x04MQTT"
        + bytes([5, 0x80 | 0x40])  # user name and password flags, no clean start
        + (300).to_bytes(2, "big")
        + b"\x00"  # no properties
        + b"\x00\x01c"
        + b"\x00\x01u"
        + b"\x00\x02pw"
    )
    assert packet == b"\x10" + bytes([len(body)]) + body


def test_connect_refuses_what_the_wire_cannot_carry() -> None:
    with pytest.raises(ValueError, match="level 3"):
        mp.connect(version=3, client_id="c", keepalive=1)
    with pytest.raises(ValueError, match="65535"):
        mp.connect(version=4, client_id="c", keepalive=65536)
    with pytest.raises(ValueError, match="65,535"):
        mp.connect(version=4, client_id="x" * 70_000, keepalive=1)


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "80 01"),
        (16_383, "ff 7f"),
        (16_384, "80 80 01"),
        (268_435_455, "ff ff ff 7f"),
    ],
)
def test_variable_byte_integers_as_the_spec_tabulates_them(n: int, encoded: str) -> None:
    assert mp.varint(n) == bytes.fromhex(encoded)
    reader = mp.PacketReader(max_packet=1 << 30)
    if n < 300:  # a whole packet of that length reads back
        (packet,) = reader.feed(b"\x30" + mp.varint(n) + b"x" * n)
        assert len(packet.body) == n


def test_the_reader_takes_a_packet_cut_anywhere_and_several_at_once() -> None:
    stream = mp.PINGRESP_BYTES + bytes.fromhex("20 02 00 00") + mp.PINGRESP_BYTES
    for cut in range(len(stream) + 1):
        reader = mp.PacketReader()
        packets = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert [p.name for p in packets] == ["PINGRESP", "CONNACK", "PINGRESP"], cut
        assert reader.buffer == b""
    one_by_one = mp.PacketReader()
    got = [p for byte in stream for p in one_by_one.feed(bytes([byte]))]
    assert [p.type for p in got] == [mp.PINGRESP, mp.CONNACK, mp.PINGRESP]
    assert got[1].body == b"\x00\x00"


def test_the_reader_refuses_what_is_no_packet() -> None:
    with pytest.raises(mp.MalformedPacket, match="reserved type 0"):
        mp.PacketReader().feed(b"\x00\x00")
    with pytest.raises(mp.MalformedPacket, match="longer than 4 bytes"):
        mp.PacketReader().feed(b"\x30\xff\xff\xff\xff\x01")
    with pytest.raises(mp.MalformedPacket, match="PUBLISH packet of 2097152 bytes"):
        mp.PacketReader().feed(b"\x30" + mp.varint(2 << 20))
    # an incomplete header waits for more
    reader = mp.PacketReader()
    assert reader.feed(b"\x30\xff") == []
    assert reader.buffer == b"\x30\xff"


def test_connack_of_mosquitto_for_mqtt_5() -> None:
    # mosquitto 2.0.11's answer to an MQTT 5 CONNECT: Topic Alias Max 10, Receive Max 20
    (packet,) = mp.PacketReader().feed(bytes.fromhex("20 09 00 00 06 22 00 0a 21 00 14"))
    ack = mp.parse_connack(packet, 5)
    assert ack.accepted
    assert not ack.session_present
    assert ack.properties == {"topic_alias_maximum": 10, "receive_maximum": 20}


def test_connack_with_server_keep_alive_and_a_refusal() -> None:
    props = b"\x13\x00\x0a" + b"\x1f\x00\x03bye" + b"\x26\x00\x01k\x00\x01v"
    body = b"\x01\x00" + mp.varint(len(props)) + props
    (packet,) = mp.PacketReader().feed(b"\x20" + mp.varint(len(body)) + body)
    ack = mp.parse_connack(packet, 5)
    assert ack.session_present
    assert ack.properties == {
        "server_keep_alive": 10,
        "reason_string": "bye",
        "user_property": [("k", "v")],
    }
    (refused,) = mp.PacketReader().feed(bytes.fromhex("20 02 00 05"))
    assert mp.parse_connack(refused, 4).code == 5
    # a 3.1.1 broker answering an MQTT 5 CONNECT: two bytes, no properties
    assert mp.parse_connack(refused, 5).code == 5


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("d0 00", "expected CONNACK, got PINGRESP"),
        ("20 01 00", "a CONNACK of 1 bytes"),
        ("20 02 02 00", "reserved bits set"),
        ("20 03 00 00 00", "a 3.1.1 CONNACK of 3 bytes"),
    ],
)
def test_bad_connacks_say_what_is_wrong(raw: str, message: str) -> None:
    (packet,) = mp.PacketReader().feed(bytes.fromhex(raw))
    with pytest.raises(mp.MalformedPacket, match=message):
        mp.parse_connack(packet, 4)


def test_bad_properties_say_what_is_wrong() -> None:
    for props, message in [
        (b"\x05\x13\x00", "past the packet's end"),
        (b"\x01\x7f", "unknown property 0x7f"),
        (b"\x02\x13\x00", "past the property list's end"),
        (b"\x03\x1f\x00\x05", "a string past"),
    ]:
        with pytest.raises(mp.MalformedPacket, match=message):
            mp.parse_properties(props, 0)


def test_disconnect_reason_codes_and_their_names() -> None:
    (bare,) = mp.PacketReader().feed(b"\xe0\x00")
    assert mp.parse_disconnect(bare) == (0, {})
    (code_only,) = mp.PacketReader().feed(b"\xe0\x01\x8d")
    assert mp.parse_disconnect(code_only) == (0x8D, {})
    props = b"\x1f\x00\x04late" + b"\x1c\x00\x05other"
    body = b"\x8b" + mp.varint(len(props)) + props
    (full,) = mp.PacketReader().feed(b"\xe0" + mp.varint(len(body)) + body)
    assert mp.parse_disconnect(full) == (
        0x8B,
        {"reason_string": "late", "server_reference": "other"},
    )
    assert mp.reason_name(0x8D) == "keep alive timeout"
    assert mp.reason_name(0x8E) == "session taken over"
    assert mp.reason_name(0x42) == "reason code 0x42"
