"""Pure: the MQTT control packets soak sends and reads, 3.1.1 (protocol
level 4) and 5, as bytes. No I/O, no clock.

soak sends CONNECT and PINGREQ; it reads CONNACK, PINGRESP and (MQTT 5)
DISCONNECT, and skips anything else whole. Over WebSocket (MQTT 3.1.1 and 5,
section 6) packets travel in binary messages whose boundaries need not be
the packets': one packet may span messages, one message may hold several
packets. :class:`PacketReader` takes the bytes as they come and returns the
complete packets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# packet types (the high nibble of the first byte)
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14
AUTH = 15
TYPE_NAMES = {
    1: "CONNECT",
    2: "CONNACK",
    3: "PUBLISH",
    4: "PUBACK",
    5: "PUBREC",
    6: "PUBREL",
    7: "PUBCOMP",
    8: "SUBSCRIBE",
    9: "SUBACK",
    10: "UNSUBSCRIBE",
    11: "UNSUBACK",
    12: "PINGREQ",
    13: "PINGRESP",
    14: "DISCONNECT",
    15: "AUTH",
}

PINGREQ_BYTES = b"\xc0\x00"
PINGRESP_BYTES = b"\xd0\x00"

# the largest packet soak accepts from a server: it subscribes to nothing,
# so anything near this is not a packet meant for it
MAX_PACKET = 1 << 20

# MQTT 3.1.1 CONNACK return codes (section 3.2.2.3)
RETURN_CODES = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}

# MQTT 5 reason codes (section 2.4) that CONNACK and a server's DISCONNECT use
REASON_CODES = {
    0x00: "normal disconnection",
    0x04: "disconnect with will message",
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8C: "bad authentication method",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x90: "topic name invalid",
    0x93: "receive maximum exceeded",
    0x94: "topic alias invalid",
    0x95: "packet too large",
    0x96: "message rate too high",
    0x97: "quota exceeded",
    0x98: "administrative action",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "qos not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded",
    0xA0: "maximum connect time",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}
KEEP_ALIVE_TIMEOUT = 0x8D
SERVER_SHUTTING_DOWN = 0x8B

# MQTT 5 properties (section 2.2.2.2): identifier -> (name, type)
BYTE, U16, U32, VARINT, UTF8, BINARY, PAIR = range(7)
PROPERTIES = {
    0x01: ("payload_format_indicator", BYTE),
    0x02: ("message_expiry_interval", U32),
    0x03: ("content_type", UTF8),
    0x08: ("response_topic", UTF8),
    0x09: ("correlation_data", BINARY),
    0x0B: ("subscription_identifier", VARINT),
    0x11: ("session_expiry_interval", U32),
    0x12: ("assigned_client_identifier", UTF8),
    0x13: ("server_keep_alive", U16),
    0x15: ("authentication_method", UTF8),
    0x16: ("authentication_data", BINARY),
    0x17: ("request_problem_information", BYTE),
    0x18: ("will_delay_interval", U32),
    0x19: ("request_response_information", BYTE),
    0x1A: ("response_information", UTF8),
    0x1C: ("server_reference", UTF8),
    0x1F: ("reason_string", UTF8),
    0x21: ("receive_maximum", U16),
    0x22: ("topic_alias_maximum", U16),
    0x23: ("topic_alias", U16),
    0x24: ("maximum_qos", BYTE),
    0x25: ("retain_available", BYTE),
    0x26: ("user_property", PAIR),
    0x27: ("maximum_packet_size", U32),
    0x28: ("wildcard_subscription_available", BYTE),
    0x29: ("subscription_identifier_available", BYTE),
    0x2A: ("shared_subscription_available", BYTE),
}


class MalformedPacket(ValueError):
    """Bytes that are no MQTT packet; the message says what is wrong."""


@dataclass(frozen=True)
class Packet:
    type: int
    flags: int
    body: bytes  # the variable header and payload

    @property
    def name(self) -> str:
        return TYPE_NAMES.get(self.type, f"reserved type {self.type}")


def reason_name(code: int) -> str:
    """``keep alive timeout``; an unknown code as ``reason code 0xNN``."""
    return REASON_CODES.get(code, f"reason code {code:#04x}")


# -- out ---------------------------------------------------------------------------


def varint(n: int) -> bytes:
    """The variable byte integer of ``n`` (0 to 268,435,455)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"{n} does not fit a variable byte integer")
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"a string of {len(data)} bytes does not fit MQTT's 65,535")
    return len(data).to_bytes(2, "big") + data


def connect(
    *,
    version: int,
    client_id: str,
    keepalive: int,
    clean: bool = True,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """A CONNECT packet (no will, no properties besides none)."""
    if version not in (4, 5):
        raise ValueError(f"MQTT protocol level {version} is not 4 (3.1.1) or 5")
    if not 0 <= keepalive <= 0xFFFF:
        raise ValueError(f"keepalive {keepalive} is not 0 to 65535 seconds")
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0)
    flags |= 0x40 if password is not None else 0
    header = _string(b"MQTT") + bytes((version, flags)) + keepalive.to_bytes(2, "big")
    if version == 5:
        header += varint(0)  # no properties: session expiry 0, the defaults
    payload = _string(client_id.encode())
    if username is not None:
        payload += _string(username.encode())
    if password is not None:
        payload += _string(password.encode())
    body = header + payload
    return b"\x10" + varint(len(body)) + body


# -- in ----------------------------------------------------------------------------


class PacketReader:
    """Complete packets out of a stream of bytes (sans-IO): :meth:`feed`
    takes what came, returns the packets it completed, and keeps the rest."""

    __slots__ = ("buffer", "max_packet")

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        self.buffer = b""
        self.max_packet = max_packet

    def feed(self, data: bytes) -> list[Packet]:
        buf = self.buffer + data if self.buffer else data
        packets = []
        pos = 0
        while True:
            head = _header(buf, pos, self.max_packet)
            if head is None:
                break
            start, length = head
            end = start + length
            if end > len(buf):
                break
            first = buf[pos]
            packets.append(Packet(first >> 4, first & 0x0F, bytes(buf[start:end])))
            pos = end
        self.buffer = bytes(buf[pos:])
        return packets


def _header(buf: bytes, pos: int, max_packet: int) -> tuple[int, int] | None:
    """Where the body of the packet at ``pos`` starts and its length; None
    while the fixed header is incomplete."""
    if pos >= len(buf):
        return None
    kind = buf[pos] >> 4
    if kind == 0:
        raise MalformedPacket("a packet of reserved type 0")
    length = 0
    for i in range(4):
        at = pos + 1 + i
        if at >= len(buf):
            return None
        byte = buf[at]
        length |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if length > max_packet:
                raise MalformedPacket(
                    f"a {TYPE_NAMES[kind]} packet of {length} bytes (soak accepts {max_packet})"
                )
            return at + 1, length
    raise MalformedPacket("a remaining length longer than 4 bytes")


@dataclass(frozen=True)
class Connack:
    session_present: bool
    code: int  # 3.1.1: the return code; 5: the reason code
    properties: dict[str, object] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.code == 0


def parse_connack(packet: Packet, version: int) -> Connack:
    """A CONNACK's acknowledge flags, return or reason code and (MQTT 5)
    properties. A server that answers an MQTT 5 CONNECT the 3.1.1 way
    (two bytes: it speaks only 3.1.1) gives its 3.1.1 return code."""
    body = packet.body
    if packet.type != CONNACK or packet.flags != 0:
        raise MalformedPacket(f"expected CONNACK, got {packet.name}")
    if len(body) < 2:
        raise MalformedPacket(f"a CONNACK of {len(body)} bytes (at least 2)")
    if body[0] & 0xFE:
        raise MalformedPacket(f"CONNACK acknowledge flags {body[0]:#04x} (reserved bits set)")
    code = body[1]
    props: dict[str, object] = {}
    if version == 5 and len(body) > 2:
        props, _ = parse_properties(body, 2)
    elif version == 4 and len(body) != 2:
        raise MalformedPacket(f"a 3.1.1 CONNACK of {len(body)} bytes (2)")
    return Connack(bool(body[0] & 1), code, props)


def parse_disconnect(packet: Packet) -> tuple[int, dict[str, object]]:
    """An MQTT 5 DISCONNECT's reason code (no body: 0, normal) and properties."""
    body = packet.body
    if not body:
        return 0, {}
    props: dict[str, object] = {}
    if len(body) > 1:
        props, _ = parse_properties(body, 1)
    return body[0], props


def parse_properties(body: bytes, pos: int) -> tuple[dict[str, object], int]:
    """The property list at ``pos``: {name: value} (user properties as a
    list of pairs) and the position after it."""
    length, pos = _read_varint(body, pos)
    end = pos + length
    if end > len(body):
        raise MalformedPacket(f"a property length of {length} past the packet's end")
    props: dict[str, object] = {}
    while pos < end:
        ident, pos = _read_varint(body, pos)
        known = PROPERTIES.get(ident)
        if known is None:
            raise MalformedPacket(f"unknown property {ident:#04x}")
        name, kind = known
        value, pos = _read_value(body, pos, kind, end)
        if kind == PAIR:
            pairs = props.setdefault(name, [])
            assert isinstance(pairs, list)
            pairs.append(value)
        else:
            props[name] = value
    return props, end


def _read_value(body: bytes, pos: int, kind: int, end: int) -> tuple[object, int]:
    if kind == VARINT:
        return _read_varint(body, pos)
    if kind in (UTF8, BINARY):
        raw, pos = _read_string(body, pos, end)
        return (raw.decode("utf-8", "replace") if kind == UTF8 else raw), pos
    if kind == PAIR:
        key, pos = _read_string(body, pos, end)
        value, pos = _read_string(body, pos, end)
        return (key.decode("utf-8", "replace"), value.decode("utf-8", "replace")), pos
    size = {BYTE: 1, U16: 2, U32: 4}[kind]
    if pos + size > end:
        raise MalformedPacket("a property value past the property list's end")
    return int.from_bytes(body[pos : pos + size], "big"), pos + size


def _read_string(body: bytes, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise MalformedPacket("a string length past the property list's end")
    n = int.from_bytes(body[pos : pos + 2], "big")
    if pos + 2 + n > end:
        raise MalformedPacket("a string past the property list's end")
    return body[pos + 2 : pos + 2 + n], pos + 2 + n


def _read_varint(body: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(4):
        if pos >= len(body):
            raise MalformedPacket("a variable byte integer past the packet's end")
        byte = body[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos
    raise MalformedPacket("a variable byte integer longer than 4 bytes")
