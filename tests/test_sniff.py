"""soak.protocols.sniff: the well-known greetings, from the wire examples of
each dialect (as the dialects' specs and sources give them), and what
is left alone."""

from __future__ import annotations

import pytest

from soak.classify import SERVER, CloseInfo, Evidence, Verdict
from soak.errors import HandshakeError, ProtocolError
from soak.protocols.openclaw import _parse as openclaw_parse
from soak.protocols.sniff import foreign_close, sniff, sniff_close
from soak.protocols.ws_ping import WsPing

GREETINGS = [
    # (message, dialect, soak protocol)
    (
        '0{"sid":"lv2Tz","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}',
        "Socket.IO (Engine.IO)",
        "socket.io",
    ),
    ('0{"pingInterval":25000,"sid":"x"}', "Socket.IO (Engine.IO)", "socket.io"),
    ('40{"sid":"abc"}', "Socket.IO", "socket.io"),
    ('44{"message":"Not authorized"}', "Socket.IO", "socket.io"),
    (
        '{"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}}',
        "the OpenClaw Gateway protocol",
        "openclaw",
    ),
    ('{"type":"connection_ack"}', "graphql-ws", "graphql-ws"),
    ('{"type":"ka"}', "subscriptions-transport-ws (legacy graphql-ws)", None),
    ('{"type":"welcome"}', "ActionCable", "actioncable"),
    ('{"type":"ping","message":1790000000}', "ActionCable", "actioncable"),
    (
        '{"event":"pusher:connection_established","data":"{\\"socket_id\\":\\"1.2\\"}"}',
        "Pusher Channels",
        "pusher",
    ),
    (
        '[null,"1","phoenix","phx_reply",{"status":"ok","response":{}}]',
        "Phoenix Channels",
        "phoenix",
    ),
    (
        '{"event":"phx_reply","payload":{},"ref":"1","topic":"phoenix"}',
        "Phoenix Channels",
        "phoenix",
    ),
    (
        '{"id":1,"connect":{"client":"c","version":"v","ping":25,"pong":true}}',
        "Centrifugo",
        "centrifugo",
    ),
    ("o", "SockJS", "sockjs"),
    ('c[3000,"No response from heartbeat"]', "SockJS", "sockjs"),
    ('a["hello"]', "SockJS", "sockjs"),
    ("{}\x1e", "SignalR", "signalr"),
    ('{"type":6}\x1e', "SignalR", "signalr"),
    ("CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00", "STOMP", "stomp"),
    ('INFO {"server_id":"x","version":"2.9.10"}\r\n', "NATS", "nats"),
]


@pytest.mark.parametrize(("message", "dialect", "protocol"), GREETINGS)
def test_greetings(message: str, dialect: str, protocol: str | None) -> None:
    seen = sniff(message)
    assert seen is not None, message
    assert (seen.dialect, seen.protocol) == (dialect, protocol)


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (bytes.fromhex("20020000"), "an MQTT CONNACK"),
        (bytes.fromhex("2009000006220000a21000"), "an MQTT CONNACK"),  # MQTT 5, properties
        (bytes.fromhex("200900"), None),  # the length byte disagrees
        (bytes.fromhex("d000"), "an MQTT PINGRESP"),
        (bytes.fromhex("e0020000"), "an MQTT DISCONNECT"),
        (b'INFO {"server_id":"x"}\r\n', "a NATS greeting"),
        (b"\xff\xfe\x00", None),
    ],
)
def test_binary(data: bytes, what: str | None) -> None:
    seen = sniff(data)
    assert (None if seen is None else seen.what) == what


@pytest.mark.parametrize(
    "message",
    [
        '{"type":"pong","timestamp":1,"clientId":"soak-1","seq":5,"serverTime":2}',
        '{"type":"news","body":"hello"}',
        '{"type":"ping","seq":3}',  # an incident-style server ping, not ActionCable's
        "hello",
        "3",
        "",
        "[1,2,3]",
        '{"id":1,"result":{}}',
        "0 is a number",
    ],
)
def test_what_is_left_alone(message: str) -> None:
    assert sniff(message) is None


def test_the_explanation_names_what_was_seen_and_what_to_use() -> None:
    seen = sniff('{"type":"connection_ack"}')
    assert seen is not None
    assert seen.explain("json") == (
        'the server sent a connection_ack message (\'{"type":"connection_ack"}\'): '
        'it speaks graphql-ws, not protocol = "json" (try protocol = "graphql-ws")'
    )
    legacy = sniff('{"type":"ka"}')
    assert legacy is not None
    assert "(try" not in legacy.explain("json")  # soak has no protocol for it


def test_ws_ping_sniffs_its_first_messages() -> None:
    p = WsPing("soak-000001")
    p.opened()
    with pytest.raises(
        ProtocolError, match=r"an MQTT CONNACK \(binary 20 02 00 00\): it speaks MQTT"
    ):
        p.pong_binary(bytes.fromhex("20020000"))
    q = WsPing("soak-000002")
    assert q.pong_text('0{"sid":"x","pingInterval":1}') is None  # not opened: nothing sniffed


def test_openclaw_names_another_dialect_in_its_handshake() -> None:
    with pytest.raises(HandshakeError) as info:
        openclaw_parse('0{"sid":"x","upgrades":[],"pingInterval":25000}', "ws://h/ws", 4096)
    assert str(info.value).startswith(
        'ws://h/ws: the server sent an Engine.IO open packet (\'0{"sid":"x"'
    )
    assert str(info.value).endswith('not protocol = "openclaw" (try protocol = "socket.io")')
    with pytest.raises(HandshakeError, match=r"malformed frame \(not JSON\)"):
        openclaw_parse("hello", "ws://h/ws", 4096)


def _info(code: int, reason: str, *, answered: bool) -> CloseInfo:
    evidence = Evidence(
        age=1.0,
        last_pong_age=0.5 if answered else None,
        last_frame_age=0.5,
        last_sent_age=0.5,
        consecutive_missed=0,
        unresponsive_for=None,
        pings_pending=0,
    )
    return CloseInfo(SERVER, code, reason, evidence=evidence)


def test_closes_of_other_dialects_servers() -> None:
    plain = Verdict("server_4408", "server")
    got = foreign_close(
        plain, _info(4408, "Connection initialisation timeout", answered=False), "json"
    )
    assert got.why.endswith('not protocol = "json" (try protocol = "graphql-ws")')
    assert got.key == "server_4408"
    # heartbeats were answered on it: the dialect is right, whatever the close
    kept = foreign_close(
        plain, _info(4408, "Connection initialisation timeout", answered=True), "json"
    )
    assert kept is plain
    # the dialect that speaks it, an unknown close, a why already given: as they are
    assert (
        foreign_close(plain, _info(4408, "x initialisation timeout", answered=False), "json")
        is plain
    )
    assert (
        foreign_close(
            plain, _info(4406, "Subprotocol not acceptable", answered=False), "graphql-ws"
        )
        is plain
    )
    judged = Verdict("server_4408", "server", "already judged")
    assert (
        foreign_close(
            judged, _info(4408, "Connection initialisation timeout", answered=False), "json"
        )
        is judged
    )
    assert sniff_close(1000, "MQTT died") is not None
    assert sniff_close(1000, "normal") is None
