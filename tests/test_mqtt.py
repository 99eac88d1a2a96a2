"""The MQTT dialect's pure parts (soak.protocols.mqtt, soak.config.mqtt):
its recogniser on buffers of packets, its handshake against scripted
answers, its verdicts with plain numbers, and its profile table's bad input."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from soak.classify import (
    CATEGORY_SERVER,
    CATEGORY_TRANSPORT,
    CLIENT,
    SERVER,
    TRANSPORT,
    CloseInfo,
    Evidence,
    Verdict,
)
from soak.config.load import parse_profile
from soak.config.mqtt import MqttConfig, mqtt_server_heartbeat
from soak.config.profile import Profile
from soak.errors import HandshakeError, ProfileError, ProtocolError
from soak.protocols import PROTOCOLS
from soak.protocols import mqtt_packets as mp
from soak.protocols.base import OLDEST
from soak.protocols.mqtt import Mqtt, MqttState, early, late, mqtt_verdict
from soak.proxy.frames import DropHeartbeat, Dropper, FrameFilter, kinds_of
from soak.servers import RECIPES
from soak.servers.mqtt import _password_file, mosquitto_config
from soak.wsframe import OP_BINARY, client_frame

HEAD = '[target]\nurl = "ws://127.0.0.1:9/"\nprotocol = "mqtt"\n'
BODY = """
[[clients.stages]]
kind = "ramp"
to = 1
duration = "1s"
[heartbeat]
interval = "{interval}"
"""


def profile(
    table: str = "", interval: str = "10s", environ: dict[str, str] | None = None
) -> Profile:
    text = HEAD + table + BODY.format(interval=interval)
    return parse_profile(text, "p.toml", environ or {})


def cfg_of(p: Profile) -> MqttConfig:
    assert p.target.mqtt is not None
    return p.target.mqtt


def error(table: str, interval: str = "10s", environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ProfileError) as info:
        profile(table, interval, environ)
    message = str(info.value)
    assert message.startswith("p.toml: ")
    assert "\n" not in message
    return message


def mqtt(table: str = "", interval: str = "10s", environ: dict[str, str] | None = None) -> Mqtt:
    p = profile(table, interval, environ)
    return Mqtt("soak-000007", Mqtt.shared_state(p.target))


# -- the profile ------------------------------------------------------------------------


def test_mqtt_is_a_dialect_and_its_defaults_follow_the_heartbeat() -> None:
    assert PROTOCOLS["mqtt"] is Mqtt
    p = profile(interval="2500ms")
    cfg = p.target.mqtt
    assert cfg is not None
    assert cfg.version == 4
    assert cfg.keepalive == 3.0  # the interval rounded up to whole seconds
    assert cfg.client_id_for("soak-000001") == "soak-000001"
    # the server heartbeat it implies: a packet every keepalive, closed at 1.5 x
    assert p.target.server_heartbeat == mqtt_server_heartbeat(3)
    assert p.target.server_heartbeat.timeout == 4.5
    # at least 2 s: mosquitto's whole seconds give a keepalive of 1 s only 1 s
    assert cfg_of(profile(interval="500ms")).keepalive == 2.0
    assert cfg_of(profile(interval="2s")).keepalive == 2.0


def test_a_heartbeat_interval_longer_than_the_keepalive_is_refused() -> None:
    message = error('[target.mqtt]\nkeepalive = "5s"\n', interval="10s")
    assert message.startswith(
        "p.toml: heartbeat.interval: expected at most target.mqtt.keepalive (5s): "
    )
    assert "the broker would drop it between two of them" in message
    assert message.endswith('got "10s"')
    # equal is fine, and keepalive 0 declares none (nothing to break)
    assert cfg_of(profile('[target.mqtt]\nkeepalive = "10s"\n')).keepalive == 10
    none = profile('[target.mqtt]\nkeepalive = "0s"\n')
    assert none.target.server_heartbeat is None
    assert cfg_of(none).declared_keepalive == 0


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("version = 3", "target.mqtt.version: expected 4 (MQTT 3.1.1) or 5 (MQTT 5), got 3"),
        ('version = "5"', 'target.mqtt.version: expected 4 (MQTT 3.1.1) or 5 (MQTT 5), got "5"'),
        ("version = true", "target.mqtt.version: expected 4 (MQTT 3.1.1) or 5 (MQTT 5), got true"),
        ('keepalive = "1500ms"', 'target.mqtt.keepalive: expected whole seconds from "0s" to'),
        (
            'keepalive = "20h"',
            'target.mqtt.keepalive: expected whole seconds from "0s" to "65535s"',
        ),
        ("keepalive = 10", "target.mqtt.keepalive: expected a duration like"),
        ('client_id = "probe"', "target.mqtt.client_id: expected {client_id} in it"),
        ('client_id = "{id}"', "target.mqtt.client_id: expected only {client_id} in the template"),
        ('client_id = "{client_id"', "target.mqtt.client_id: expected a template like"),
        (
            'client_id = ""\nclean_session = false',
            "target.mqtt.client_id: expected an id (an empty one, assigned by the server, "
            "needs clean_session = true)",
        ),
        ('password_env = "PW"', "target.mqtt.password_env: expected a username with it"),
        ("clean = true", "target.mqtt.clean: unknown field"),
    ],
)
def test_bad_mqtt_tables_name_the_field(table: str, expected: str) -> None:
    assert expected in error("[target.mqtt]\n" + table + "\n")


def test_the_password_comes_from_its_variable_and_never_reaches_run_json() -> None:
    table = '[target.mqtt]\nversion = 5\nusername = "u"\npassword_env = "MQ_PW"\n'
    assert error(table).endswith(
        "target.mqtt.password_env: environment variable MQ_PW is not set "
        "(it should hold the password)"
    )
    p = profile(table, environ={"MQ_PW": "s3cret-pw"})
    assert p.target.mqtt is not None
    assert p.target.mqtt.password == "s3cret-pw"
    assert "s3cret-pw" not in repr(p)
    shown = json.dumps(p.redacted())
    assert "s3cret-pw" not in shown
    assert p.redacted()["target"]["mqtt"]["password_env"] == "MQ_PW"
    # MQTT 5 sends a password without a user name
    assert profile('[target.mqtt]\nversion = 5\npassword_env = "MQ_PW"\n', environ={"MQ_PW": "x"})
    # another dialect's profile shows no mqtt table
    other = parse_profile(HEAD.replace('"mqtt"', '"json"') + BODY.format(interval="1s"), "p", {})
    assert "mqtt" not in other.redacted()["target"]


def test_the_table_on_another_dialect_names_both() -> None:
    text = HEAD.replace('"mqtt"', '"json"') + "[target.mqtt]\nversion = 5\n"
    with pytest.raises(ProfileError, match=r'target\.mqtt: is only used with protocol = "mqtt"'):
        parse_profile(text + BODY.format(interval="1s"), "p.toml", {})


# -- what comes back --------------------------------------------------------------------


def test_pingresp_answers_the_oldest_and_a_message_may_hold_several() -> None:
    p = Mqtt("c")
    assert p.max_in_flight == 1
    assert p.expects_reply
    assert p.client_pings
    assert p.subprotocols() == ("mqtt",)
    assert p.ping_frame(1, 0) == (OP_BINARY, b"\xc0\x00")
    assert p.pong_binary(b"\xd0\x00") == OLDEST
    assert p.replies == 1
    assert p.pong_binary(b"\xd0\x00\xd0\x00") == OLDEST
    assert p.replies == 2
    # a PINGRESP split over two messages, a PUBLISH skipped whole
    assert p.pong_binary(b"\xd0") is None
    assert p.pong_binary(b"\x00") == OLDEST
    assert p.replies == 1
    assert p.pong_binary(b"\x30\x05\x00\x01tab") is None
    assert p.pong_binary(b"\x30\x05\x00\x01tabd0"[:7] + b"\xd0\x00") == OLDEST


def test_a_disconnect_is_the_farewell_with_its_reason() -> None:
    p = Mqtt("c")
    props = b"\x1f\x00\x08draining"
    body = b"\x8b" + bytes([len(props)]) + props
    assert p.pong_binary(b"\xd0\x00\xe0" + bytes([len(body)]) + body) == OLDEST
    assert p.farewell == (0x8B, 'server shutting down: "draining"')
    assert p.state.disconnects == {"server shutting down": 1}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "reserved type 0"),
        (b"\xd1\x00", "a PINGRESP with flags or a body"),
        (b"\x20\x02\x00\x00", "an MQTT CONNACK from the server on a live connection"),
        (b"\xc0\x00", "an MQTT PINGREQ from the server"),
    ],
)
def test_what_mqtt_forbids_is_a_protocol_error(data: bytes, message: str) -> None:
    p = Mqtt("c")
    with pytest.raises(ProtocolError, match=message) as info:
        p.pong_binary(data)
    assert info.value.close_code == 1002
    with pytest.raises(ProtocolError, match="a text message on MQTT over WebSocket") as text:
        p.pong_text('{"type":"pong"}')
    assert text.value.close_code == 1003
    assert p.state.protocol_errors == 2


def test_the_proxy_knows_pingreq_and_pingresp_frames_only() -> None:
    kind = kinds_of("mqtt")
    assert kind(0x2, True, b"\xc0\x00") == "ping"
    assert kind(0x2, True, b"\xd0\x00") == "pong"
    assert kind(0x2, False, b"\xc0\x00") is None  # a fragment
    assert kind(0x2, True, b"\x30\x02\x00\x00") is None  # a PUBLISH
    assert kind(0x9, True, b"") is None  # RFC 6455 pings are no MQTT heartbeat
    assert kind(0x1, True, b'{"type":"ping"}') is None


# -- the handshake ----------------------------------------------------------------------


class ScriptedIO:
    """A HandshakeIO that answers with the given messages, in order."""

    url = "ws://broker/"
    subprotocol: str | None = "mqtt"

    def __init__(self, answers: Sequence[str | bytes]) -> None:
        self.answers = list(answers)
        self.sent: list[bytes] = []

    async def send_text(self, text: str) -> None:
        raise AssertionError("MQTT sends no text")

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def receive_text(self) -> str:
        raise AssertionError("MQTT reads binary messages")

    async def receive(self) -> str | bytes:
        return self.answers.pop(0)


def connack5(code: int = 0, props: bytes = b"") -> bytes:
    body = bytes([0, code]) + mp.varint(len(props)) + props
    return b"\x20" + mp.varint(len(body)) + body


async def test_connect_says_the_profile_and_connack_makes_it_live() -> None:
    table = (
        '[target.mqtt]\nversion = 5\nkeepalive = "20s"\nclient_id = "dev-{client_id}"\n'
        'username = "u"\npassword_env = "PW"\n'
    )
    p = mqtt(table, environ={"PW": "pw"})
    io = ScriptedIO([connack5()[:3], connack5()[3:] + b"\xd0\x00"])  # split, and a PINGRESP after
    await p.handshake(io)
    assert io.sent == [
        mp.connect(
            version=5, client_id="dev-soak-000007", keepalive=20, username="u", password="pw"
        )
    ]
    assert p.state.connacks == 1
    assert p.keepalive == 20
    assert p.server_keep_alive is None


async def test_server_keep_alive_changes_what_the_server_enforces() -> None:
    p = mqtt('[target.mqtt]\nversion = 5\nkeepalive = "60s"\n')
    await p.handshake(ScriptedIO([connack5(props=b"\x13\x00\x0f")]))
    assert p.keepalive == 15
    assert p.server_keep_alive == 15
    assert p.state.server_keep_alive == {15: 1}
    assert p.state.summary()["server_keep_alive_s"] == {"15": 1}
    # shorter than the heartbeat interval: the broker would drop soak between pings
    with pytest.raises(HandshakeError) as info:
        await p.handshake(ScriptedIO([connack5(props=b"\x13\x00\x05")]))
    err = info.value
    assert err.cause == "keepalive"
    assert err.permanent
    assert str(err) == (
        "ws://broker/: the broker imposes a keepalive of 5s (MQTT 5 Server Keep Alive), "
        "shorter than heartbeat.interval 10s: it would drop soak between two PINGREQs; "
        "set heartbeat.interval to at most 5s"
    )
    assert p.state.refusals == {"keepalive": 1}


@pytest.mark.parametrize(
    ("version", "answer", "cause", "permanent", "text"),
    [
        (4, "20 02 00 04", "auth", True, "CONNACK return code 4 (bad user name or password)"),
        (4, "20 02 00 05", "auth", True, "CONNACK return code 5 (not authorized)"),
        (4, "20 02 00 01", "protocol", True, "return code 1 (unacceptable protocol version)"),
        (4, "20 02 00 02", "client_id", True, "return code 2 (identifier rejected)"),
        (4, "20 02 00 03", "unavailable", False, "return code 3 (server unavailable)"),
        (5, "20 03 00 86 00", "auth", True, "reason code 0x86 (bad user name or password)"),
        (5, "20 03 00 87 00", "auth", True, "reason code 0x87 (not authorized)"),
        (5, "20 03 00 89 00", "unavailable", False, "reason code 0x89 (server busy)"),
        (5, "20 03 00 9f 00", "unavailable", False, "reason code 0x9f (connection rate exceeded)"),
        (5, "20 03 00 80 00", "rejected", False, "reason code 0x80 (unspecified error)"),
        # a 3.1.1 broker's answer to an MQTT 5 CONNECT
        (5, "20 02 00 01", "protocol", True, "try [target.mqtt] version = 4"),
        # an MQTT 5 broker may refuse with DISCONNECT
        (5, "e0 01 8a", "auth", True, "reason code 0x8a (banned)"),
    ],
)
async def test_refusals_by_code(
    version: int, answer: str, cause: str, permanent: bool, text: str
) -> None:
    p = mqtt(f"[target.mqtt]\nversion = {version}\n")
    with pytest.raises(HandshakeError) as info:
        await p.handshake(ScriptedIO([bytes.fromhex(answer)]))
    err = info.value
    assert (err.cause, err.permanent) == (cause, permanent)
    assert str(err).startswith("ws://broker/: the broker refused the connection: ")
    assert text in str(err)
    assert p.state.refusals == {cause: 1}


async def test_a_reason_string_is_shown_with_the_refusal() -> None:
    p = mqtt("[target.mqtt]\nversion = 5\n")
    with pytest.raises(HandshakeError, match='not authorized\\): "no such user"'):
        await p.handshake(ScriptedIO([connack5(0x87, b"\x1f\x00\x0cno such user")]))


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ('{"type":"event"}', 'a text message instead of CONNACK (\'{"type":"event"}\')'),
        (b"\x00\x00", "a packet of reserved type 0 instead of CONNACK (is this an MQTT broker?)"),
        (b"\xd0\x00", "expected CONNACK, got PINGRESP in the MQTT handshake"),
    ],
)
async def test_a_server_of_another_dialect_is_told_what_was_seen(
    answer: str | bytes, message: str
) -> None:
    with pytest.raises(HandshakeError) as info:
        await Mqtt("c").handshake(ScriptedIO([answer]))
    assert info.value.cause == "protocol"
    assert message in str(info.value)


# -- verdicts ---------------------------------------------------------------------------


def ev(since: float | None, age: float = 100.0, sent: float = 0.2) -> Evidence:
    return Evidence(
        age=age,
        last_pong_age=since,
        last_frame_age=since,
        consecutive_missed=3,
        pings_pending=1,
        last_sent_age=sent,
    )


EOF = Verdict("transport_eof", CATEGORY_TRANSPORT)


def eof(since: float | None, age: float = 100.0) -> CloseInfo:
    return CloseInfo(TRANSPORT, 1006, "", "eof", evidence=ev(since, age))


def test_mosquittos_silent_close_is_judged_at_its_timing() -> None:
    # keepalive 2 s: mosquitto closes 3 to about 10 s after the last packet
    assert (early(2), late(2)) == pytest.approx((2.45, 10.56))
    v = mqtt_verdict(EOF, eof(4.0), 2, None)
    assert v.key == "justified_timeout"
    assert v.category == "heartbeat_timeout"
    assert v.why == (
        "closed without a close frame: no PINGRESP for 4.000s >= keepalive 2s "
        "(the broker may close at 1.5 x = 3s); the last PINGREQ went 0.200s ago"
    )
    # a restart: well within the keepalive, and long after it: not its timeout
    assert mqtt_verdict(EOF, eof(0.4), 2, None) == EOF
    assert mqtt_verdict(EOF, eof(30.0), 2, None) == EOF
    # no PINGRESP ever: since the CONNACK
    v = mqtt_verdict(EOF, eof(None, age=3.5), 2, None)
    assert v.key == "justified_timeout"
    assert "no packet since the CONNACK for 3.500s" in v.why
    # keepalive 1 s: mosquitto's whole seconds make it 1 s, not 1.5 s
    assert early(1) == pytest.approx(0.95)
    assert mqtt_verdict(EOF, eof(1.0), 1, None).key == "justified_timeout"
    # keepalive 0: the broker never times out
    assert mqtt_verdict(EOF, eof(4.0), 0, None) == EOF


def test_a_broker_that_says_keep_alive_timeout_is_judged_by_the_evidence() -> None:
    said = CloseInfo(SERVER, 0x8D, "keep alive timeout", "eof", evidence=ev(0.5))
    server = Verdict("server_141", CATEGORY_SERVER)
    v = mqtt_verdict(server, said, 2, (0x8D, "keep alive timeout"), imposed=2)
    assert v.key == "false_timeout"
    assert v.why == (
        "DISCONNECT 0x8D keep alive timeout, but the last PINGRESP came 0.500s ago "
        "< keepalive 2s (the server's Server Keep Alive)"
    )
    late_info = CloseInfo(SERVER, 0x8D, "keep alive timeout", "eof", evidence=ev(2.5))
    assert mqtt_verdict(server, late_info, 2, (0x8D, "")).key == "justified_timeout"
    # RabbitMQ's "MQTT died"
    died = CloseInfo(SERVER, 1000, "MQTT died", evidence=ev(3.1))
    v = mqtt_verdict(Verdict("server_1000_normal", CATEGORY_SERVER), died, 2, None)
    assert v.key == "justified_timeout"
    assert v.why.startswith('close 1000 "MQTT died": ')


def test_other_disconnects_are_counted_by_their_reason() -> None:
    info = CloseInfo(SERVER, 0x8B, "server shutting down", "eof", evidence=ev(0.1))
    v = mqtt_verdict(
        Verdict("server_139", CATEGORY_SERVER), info, 10, (0x8B, "server shutting down")
    )
    assert v == Verdict(
        "server_mqtt_server_shutting_down", CATEGORY_SERVER, "DISCONNECT 0x8b server shutting down"
    )
    taken = mqtt_verdict(EOF, info, 10, (0x8E, "session taken over"))
    assert taken.key == "server_mqtt_session_taken_over"
    # our own closes are ours
    ours = Verdict("client_zombie", "client")
    assert mqtt_verdict(ours, CloseInfo(CLIENT, 1001, "", cause="zombie"), 10, None) == ours


def test_a_profile_with_its_own_server_heartbeat_keeps_its_rules() -> None:
    table = '[target.server_heartbeat]\ninterval = "10s"\ntimeout = "15s"\nabrupt_after = "15s"\n'
    p = profile(table)
    proto = Mqtt("c", Mqtt.shared_state(p.target))
    assert not proto.state.implied
    assert proto.judge(EOF, eof(4.0)) == EOF
    proto.farewell = (0x8D, "keep alive timeout")  # named, not judged
    assert proto.judge(EOF, eof(4.0)).key == "server_mqtt_keep_alive_timeout"
    assert Mqtt("c", MqttState(profile().target)).state.implied


def test_the_summary_is_the_brokers_answers(tmp_path: Path) -> None:
    state = MqttState(profile("[target.mqtt]\nversion = 5\n").target)
    summary = state.summary()
    assert summary == {
        "version": "5",
        "keepalive": "10s",
        "connacks": 0,
        "sessions_present": 0,
        "refusals": {},
        "server_keep_alive_s": {},
        "disconnects": {},
        "protocol_errors": 0,
    }


def test_the_proxy_drops_a_masked_pingreq_and_passes_the_rest() -> None:

    flt = FrameFilter(Dropper(DropHeartbeat(nth=1), random.Random(1)), kinds_of("mqtt"))
    flt.in_http = False
    connect = client_frame(OP_BINARY, mp.connect(version=4, client_id="c", keepalive=2))
    ping = client_frame(OP_BINARY, mp.PINGREQ_BYTES)
    assert flt.feed(connect + ping[:3]) == connect  # a frame goes once complete
    assert flt.feed(ping[3:]) == b""  # the first heartbeat: dropped
    assert flt.feed(ping) == ping
    assert flt.dropped == [("ping", 1)]


def test_the_mosquitto_recipe_listens_on_loopback_only(tmp_path: Path) -> None:

    assert RECIPES["mosquitto"].dialect == "mqtt"
    text = mosquitto_config(9001, 1883, {"max_keepalive": "10"}, None)
    lines = text.splitlines()
    # a plain listener too (websockets alone: "Unable to start any listening
    # sockets"), and socket_domain ipv4 after each, or it binds every interface
    assert lines.index("listener 1883 127.0.0.1") < lines.index("listener 9001 127.0.0.1")
    assert lines.count("socket_domain ipv4") == 2
    assert "protocol websockets" in lines
    assert "max_keepalive 10" in lines
    assert "allow_anonymous true" in lines
    locked = mosquitto_config(9001, 1883, {}, tmp_path / "passwd")
    assert "allow_anonymous false" in locked
    assert f"password_file {tmp_path / 'passwd'}" in locked
    with pytest.raises(ValueError, match="max_keepalive=ten: expected whole seconds"):
        mosquitto_config(9001, 1883, {"max_keepalive": "ten"}, None)


def test_username_and_password_go_together_for_the_recipe(tmp_path: Path) -> None:

    assert _password_file(tmp_path, {}) is None
    with pytest.raises(ValueError, match="username and password go together"):
        _password_file(tmp_path, {"username": "u"})
