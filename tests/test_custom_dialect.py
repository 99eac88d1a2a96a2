"""protocol = "custom", pure: templates, matchers, the [target.dialect]
table and its bad input, and the dialect's recognisers on plain text and
bytes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from soak.config.load import parse_profile
from soak.config.patterns import compile_matcher, compile_template
from soak.config.target import TargetConfig
from soak.errors import ProfileError, ProtocolError
from soak.protocols import PROTOCOLS
from soak.protocols.base import OLDEST, SERVER_BEAT, SERVER_PING
from soak.protocols.custom import Custom, CustomState
from soak.protocols.json_ping import JsonPing
from soak.wsframe import OP_BINARY, OP_TEXT

HEAD = '[target]\nurl = "ws://127.0.0.1:9/ws"\nprotocol = "custom"\n'
TAIL = '[clients]\n[[clients.stages]]\nkind = "hold"\nduration = "1s"\n'


def target(table: str, protocol: str = "custom") -> TargetConfig:
    head = HEAD.replace('"custom"', f'"{protocol}"')
    return parse_profile(head + table + "\n" + TAIL, "p.toml", {}).target


def error(table: str, protocol: str = "custom") -> str:
    with pytest.raises(ProfileError) as info:
        target(table, protocol)
    return str(info.value)


def dialect(table: str, client_id: str = "soak-000007") -> Custom:
    t = target(table)
    proto = Custom(client_id, Custom.shared_state(t))
    proto.opened()
    return proto


# -- templates -----------------------------------------------------------------------


def test_a_template_renders_its_placeholders_and_escapes_the_id_in_json() -> None:
    tpl = compile_template('{"seq":{seq},"t":{ts_ms},"id":"{client_id}"}', "json")
    assert tpl.render(12, 1790000000123, 'a"b') == '{"seq":12,"t":1790000000123,"id":"a\\"b"}'
    assert json.loads(tpl.render(1, 2, 'a"b'))["id"] == 'a"b'
    text = compile_template("PING {seq} {client_id}", "text")
    assert text.render(3, 0, 'a"b') == 'PING 3 a"b'  # text: inserted as it is


def test_templates_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{sequence\}"):
        compile_template('{"seq":{sequence}}', "json")
    with pytest.raises(ValueError, match="which is not JSON"):
        compile_template('{"id":{client_id}}', "json")
    with pytest.raises(ValueError, match="which is not JSON"):
        compile_template('{"seq":{seq}', "json")
    with pytest.raises(ValueError, match=r"\{seq\} is not known here"):
        compile_template("3{seq}", "text", ("client_id",))
    with pytest.raises(ValueError, match="hex digits"):
        compile_template("c0 0", "hex")
    assert compile_template("c0 00", "hex").raw == b"\xc0\x00"


# -- matchers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matcher", "text", "hit"),
    [
        ('/type == "pong"', '{"type":"pong","seq":1}', True),
        ('/type == "pong"', '{"type":"ping","note":"pong"}', False),
        ('/type == "pong"', "pong", False),  # not JSON
        ("/ok == true", '{"ok":true}', True),
        ("/ok == true", '{"ok":1}', False),  # true is not 1
        ("/type == 6", '{"type":6.0}', True),
        ("/payload/seq", '{"payload":{"seq":0}}', True),
        ("/payload/seq", '{"payload":{}}', False),
        ('/1 == "ref"', '[null,"ref"]', True),
        ("/a~1b == 1", '{"a/b":1}', True),
        ("text:3", "3", True),
        ("text:3", "30", False),
        ("prefix:0{", '0{"sid":"x"}', True),
        ("regex:^a\\[", 'a["x"]', True),
        ("regex:^a\\[", 'ha["x"]', False),
    ],
)
def test_matchers(matcher: str, text: str, hit: bool) -> None:
    m = compile_matcher(matcher)
    assert (m.maybe(text) and m.match_text(text)) is hit
    assert m.match_bytes(text.encode()) is hit  # text matchers read binary too


def test_a_hex_matcher_reads_binary_only() -> None:
    m = compile_matcher("hex:d000")
    assert m.match_bytes(b"\xd0\x00")
    assert not m.match_bytes(b"\xd0\x00\x00")
    assert not m.match_text("d000")


@pytest.mark.parametrize(
    ("matcher", "message"),
    [
        ("pong", "expected a matcher like"),
        ("json:/type", "expected a matcher like"),
        ("/type == pong", "expected a JSON value after == (a string in double quotes), got pong"),
        ("type", "expected a matcher like"),
        ("regex:(", "expected a regular expression"),
        ("hex:zz", "expected hex digits"),
        ("text:", "expected something after text:"),
        ("/a~2", "a JSON pointer escapes only ~0"),
    ],
)
def test_bad_matchers(matcher: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        compile_matcher(matcher)


# -- the table -----------------------------------------------------------------------


def test_an_empty_table_or_none_is_the_json_dialect() -> None:
    assert target("").dialect is None
    assert target("[target.dialect]\n").dialect is not None
    proto = Custom("soak-000007", CustomState(target("")))
    builtin = JsonPing("soak-000007")
    assert proto.ping_frame(5, 1790000000123) == builtin.ping_frame(5, 1790000000123)
    pong = '{"type":"pong","timestamp":1,"clientId":"x","seq":5,"serverTime":2}'
    assert proto.pong_text(pong) == builtin.pong_text(pong) == 5
    assert (proto.client_pings, proto.expects_reply, proto.max_in_flight) == (True, True, None)
    assert "custom" in PROTOCOLS


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '[target.dialect]\nsend = \'{"seq":{seq},"id":{client_id}}\'\n',
            'p.toml: target.dialect.send: renders as \'{"seq":1,"id":soak-1}\', which is not '
            "JSON (Expecting value at character 14); write {client_id} inside quotes, or use "
            'format = "text", got "{"seq":{seq},"id":{client_id}}"',
        ),
        (
            "[target.dialect]\nsend = 'PING {sequence}'\nformat = \"text\"\n",
            "p.toml: target.dialect.send: unknown placeholder {sequence}; expected {seq}, "
            '{ts_ms}, {client_id}, got "PING {sequence}"',
        ),
        (
            '[target.dialect]\nreply = "pong"\n',
            "p.toml: target.dialect.reply: expected a matcher like '/type == \"pong\"', "
            '"/payload/seq", "text:3", "prefix:0{", "regex:^a\\\\[" or "hex:d000", got "pong"',
        ),
        (
            '[target.dialect]\nformat = "yaml"\n',
            'p.toml: target.dialect.format: expected one of json, text, hex, got "yaml"',
        ),
        (
            '[target.dialect]\nsend = "c000"\nformat = "hex"\n',
            'p.toml: target.dialect.format: format = "hex" needs frame = "binary", got "hex"',
        ),
        (
            '[target.dialect]\nsend = \'{"type":"ping"}\'\n',
            "p.toml: target.dialect.send: has no {seq} for the reply to echo (match = "
            '"pointer"); add it, or use match = "fifo", got "{"type":"ping"}"',
        ),
        (
            '[target.dialect]\nsend = ""\nreply = ""\n',
            "p.toml: target.dialect: expected something to measure: send, server_ping, "
            "server_beat or silence_timeout",
        ),
        (
            '[target.dialect]\nsend = ""\n',
            "p.toml: target.dialect.reply: needs send (a reply answers the client's heartbeat); "
            'use reply = "", got "/type == "pong""',
        ),
        (
            '[target.dialect]\nserver_ping = "text:2"\n',
            "p.toml: target.dialect.answer: is required with server_ping (a server message "
            "that needs no answer is a server_beat)",
        ),
        (
            '[target.dialect]\nserver_ping = "text:2"\nanswer = "3 {seq}"\nformat = "text"\n',
            "p.toml: target.dialect.answer: {seq} is not known here; expected {client_id}, "
            'got "3 {seq}"',
        ),
        (
            '[target.dialect]\nserver_interval = "25s"\n',
            "p.toml: target.dialect.server_timeout: expected server_interval and "
            "server_timeout together",
        ),
        (
            '[target.dialect]\nmatch = "regex"\nseq_regex = "seq"\n',
            'p.toml: target.dialect.seq_regex: expected a group around the seq, like "seq=(\\d+)", '
            'got "seq"',
        ),
        (
            '[target.dialect]\nseq_pointer = "seq"\n',
            'p.toml: target.dialect.seq_pointer: expected a JSON pointer like "/seq" or '
            '"/payload/seq", got "seq"',
        ),
        (
            '[target.dialect]\nsubprotocols = ["graphql ws"]\n',
            "p.toml: target.dialect.subprotocols: expected a list of subprotocol names like "
            '["mqtt"], got a list',
        ),
        (
            "[target.dialect]\ntimeout_close_codes = [999]\n",
            "p.toml: target.dialect.timeout_close_codes: expected a list of close codes "
            "1000-4999, got a list",
        ),
        (
            '[target.dialect]\nsilence = "10s"\n',
            "p.toml: target.dialect.silence: unknown field (did you mean 'silence_timeout'?)",
        ),
        (
            '[[target.dialect.handshake]]\ntimeout = "1s"\n',
            "p.toml: target.dialect.handshake[0]: expected send, expect or both in a "
            "handshake step",
        ),
        (
            '[[target.dialect.handshake]]\nsend = \'{"hi":1}\'\nrefuse = "text:no"\n',
            "p.toml: target.dialect.handshake[0].refuse: needs expect (what the step waits "
            'for), got "text:no"',
        ),
        (
            '[[target.dialect.handshake]]\nexpect = "text:ok"\ntimeout = "soon"\n',
            "p.toml: target.dialect.handshake[0].timeout: expected a duration like",
        ),
    ],
)
def test_bad_tables_name_the_field(table: str, message: str) -> None:
    assert error(table).startswith(message)


def test_the_table_on_another_protocol_names_both() -> None:
    assert error("[target.dialect]\n", protocol="json") == (
        'p.toml: target.dialect: is only used with protocol = "custom", got "json"'
    )


def test_the_timeout_signature_fills_the_server_heartbeat() -> None:
    t = target(
        '[target.dialect]\nsend = ""\nreply = ""\nserver_ping = "text:2"\nanswer = "3"\n'
        'format = "text"\nserver_interval = "25s"\nserver_timeout = "20s"\n'
        'timeout_close_codes = [1005]\ntimeout_reason = "ping timeout"\n'
    )
    sh = t.server_heartbeat
    assert sh is not None
    assert (sh.interval, sh.timeout, sh.max_missed) == (25.0, 20.0, 1)
    assert (sh.close_codes, sh.reason_pattern) == ((1005,), "ping timeout")
    # the profile's own [target.server_heartbeat] wins
    t = target(
        "[target.dialect]\ntimeout_close_codes = [4408]\n"
        '[target.server_heartbeat]\ninterval = "5s"\n'
    )
    assert t.server_heartbeat is not None
    assert t.server_heartbeat.close_codes == (4000,)
    assert target("[target.dialect]\n").server_heartbeat is None


# -- the recognisers -----------------------------------------------------------------


def test_engine_io_4_shape() -> None:
    p = dialect(
        '[target.dialect]\nsend = ""\nreply = ""\nformat = "text"\nserver_ping = "text:2"\n'
        'answer = "3"\nserver_beat = "prefix:42"\nsubprotocols = ["x"]\n'
    )
    assert (p.client_pings, p.expects_reply) == (False, False)
    assert p.pong_text("2") == SERVER_PING
    assert p.answer() == (OP_TEXT, b"3")
    assert p.pong_text('42["news",{}]') == SERVER_BEAT
    assert p.pong_text("3") is None
    assert p.subprotocols() == ("x",)


def test_mqtt_shape_binary_fifo() -> None:
    p = dialect(
        '[target.dialect]\nsend = "c000"\nformat = "hex"\nframe = "binary"\n'
        'reply = "hex:d000"\nmatch = "fifo"\n'
    )
    assert p.ping_frame(1, 0) == (OP_BINARY, b"\xc0\x00")
    assert p.max_in_flight == 1
    assert p.pong_binary(b"\xd0\x00") == OLDEST
    assert p.pong_binary(b"\x30\x00") is None


def test_seq_by_regex_and_by_pointer() -> None:
    p = dialect(
        "[target.dialect]\nsend = 'PING {seq}'\nformat = \"text\"\nreply = 'regex:^PONG '\n"
        "match = \"regex\"\nseq_regex = 'PONG ([0-9]+)'\n"
    )
    assert p.ping_frame(42, 0) == (OP_TEXT, b"PING 42")
    assert p.pong_text("PONG 42") == 42
    assert p.pong_text("PONG x") is None
    q = dialect(
        '[target.dialect]\nsend = \'{"type":"ping","payload":{"seq":{seq}}}\'\n'
        'reply = \'/type == "pong"\'\nseq_pointer = "/payload/seq"\n'
    )
    assert q.pong_text('{"type":"pong","payload":{"seq":9}}') == 9
    assert q.pong_text('{"type":"pong","payload":{"seq":true}}') is None
    assert q.pong_text('{"type":"pong","payload":{"seq":0}}') is None
    assert q.pong_text('{"type":"pong"}') is None


def test_a_foreign_greeting_among_the_first_messages_is_a_protocol_error() -> None:
    p = dialect("[target.dialect]\n")
    with pytest.raises(
        ProtocolError, match=r'it speaks the OpenClaw Gateway protocol, not protocol = "custom"'
    ):
        p.pong_text('{"type":"event","event":"connect.challenge","payload":{"nonce":"n"}}')
    # later messages are the application's: never sniffed
    q = dialect("[target.dialect]\n")
    for _ in range(3):
        assert q.pong_text('{"type":"news"}') is None
    assert q.pong_text('0{"sid":"x","pingInterval":1}') is None
    # a new connection sniffs again
    q.opened()
    with pytest.raises(ProtocolError, match=r"Engine\.IO open packet"):
        q.pong_text('0{"sid":"x","pingInterval":1}')


def test_the_json_dialect_sniffs_only_messages_that_are_not_pongs() -> None:
    p = JsonPing("soak-000001")
    p.opened()
    assert p.pong_text('{"type":"pong","seq":3}') == 3
    with pytest.raises(ProtocolError, match=r'\(try protocol = "graphql-ws"\)'):
        p.pong_text('{"type":"connection_ack"}')


def test_every_example_of_the_docs_loads() -> None:
    page = Path(__file__).resolve().parent.parent / "docs/dialects/custom.md"
    blocks = re.findall(r"^```toml\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)
    assert len(blocks) >= 6
    for block in blocks:
        t = target(block)
        assert t.dialect is not None, block
        Custom("soak-000001", CustomState(t))  # compiles
    mqtt = next(b for b in blocks if "mqtt" in b)
    p = Custom("soak-000001", CustomState(target(mqtt)))
    step = p.state.steps[0]
    assert step.send is not None
    assert step.send.raw[:2] == b"\x10\x16"
    assert step.expect is not None
    assert step.expect.match_bytes(bytes.fromhex("20020000"))
    assert step.refuse is not None
    assert step.refuse.match_bytes(bytes.fromhex("20020005"))
    assert not step.refuse.match_bytes(bytes.fromhex("20020000"))
