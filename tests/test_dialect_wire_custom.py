"""protocol = "custom", pure: the handshake steps of docs/dialects/custom.md
over a scripted connection (what is sent, as text, bytes or hex; the
refusal; the timeout naming the step and the last message; sniffing of the
first messages) and binary replies. The table itself is
tests/test_custom_dialect.py."""

from __future__ import annotations

import json
import time

import pytest
import trio
import trio.testing

from soak.config.load import parse_profile
from soak.errors import HandshakeError, ProtocolError
from soak.protocols.custom import Custom
from tests.support.scripted import URL, ScriptedIO

HEAD = f'[target]\nurl = "{URL}"\nprotocol = "custom"\n'
TAIL = '[clients]\n[[clients.stages]]\nkind = "hold"\nduration = "1s"\n'
GREETING = '0{"sid":"abc","pingInterval":25000,"pingTimeout":20000}'


def dialect(table: str) -> Custom:
    target = parse_profile(HEAD + table + "\n" + TAIL, "p.toml", {}).target
    proto = Custom("soak-000007", Custom.shared_state(target))
    proto.opened()
    return proto


ENGINE_IO = """
[target.dialect]
format = "text"
send = ""
reply = ""
silence_timeout = "30s"
[[target.dialect.handshake]]
expect = 'prefix:0{"sid"'
timeout = "5s"
[[target.dialect.handshake]]
send = "40"
expect = "prefix:40"
refuse = "prefix:44"
permanent = true
"""


async def test_the_steps_send_and_wait_in_order(autojump_clock: trio.testing.MockClock) -> None:
    p = dialect(ENGINE_IO)
    io = ScriptedIO("3", GREETING, "2", '40{"sid":"x"}')  # what matches neither is skipped
    await p.handshake(io)
    assert io.sent == ["40"]
    assert io.incoming == []


async def test_a_refusal_is_rejected_with_its_text_and_permanent_as_the_step_says(
    autojump_clock: trio.testing.MockClock,
) -> None:
    p = dialect(ENGINE_IO)
    with pytest.raises(HandshakeError) as info:
        await p.handshake(ScriptedIO(GREETING, '44{"message":"Not authorized"}'))
    assert info.value.cause == "rejected"
    assert info.value.permanent
    assert str(info.value) == (
        f'{URL}: refused in handshake step 2: \'44{{"message":"Not authorized"}}\''
    )


async def test_no_match_in_time_names_the_step_and_the_last_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    p = dialect(ENGINE_IO)
    start = trio.current_time()
    with pytest.raises(HandshakeError) as info:
        await p.handshake(ScriptedIO('{"type": "something_else"}', "x"))
    assert trio.current_time() - start == pytest.approx(5.0)
    assert info.value.cause == "timeout"
    assert str(info.value) == (
        f"{URL}: handshake step 1: no message matching 'prefix:0{{\"sid\"' within 5s "
        "(the last message: 'x')"
    )


async def test_no_message_at_all_says_only_the_matcher(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(HandshakeError) as info:
        await dialect(ENGINE_IO).handshake(ScriptedIO())
    assert str(info.value) == (
        f"{URL}: handshake step 1: no message matching 'prefix:0{{\"sid\"' within 5s"
    )


async def test_a_greeting_among_the_first_three_messages_of_a_step_names_the_dialect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    table = '[target.dialect]\n[[target.dialect.handshake]]\nexpect = "text:ready"\n'
    with pytest.raises(HandshakeError) as info:
        await dialect(table).handshake(ScriptedIO("a", "b", GREETING))
    assert info.value.cause == "protocol"
    assert str(info.value) == (
        f"{URL}: handshake step 1: the server sent an Engine.IO open packet ({GREETING!r}): "
        'it speaks Socket.IO (Engine.IO), not protocol = "custom" (try protocol = "socket.io")'
    )
    late = dialect(table)
    with pytest.raises(HandshakeError) as timeout:
        await late.handshake(ScriptedIO("a", "b", "c", GREETING))
    assert timeout.value.cause == "timeout"  # the fourth is not sniffed


async def test_after_the_handshake_nothing_more_is_sniffed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    table = '[target.dialect]\n[[target.dialect.handshake]]\nexpect = "text:ready"\n'
    p = dialect(table)
    await p.handshake(ScriptedIO("ready"))
    assert p.pong_text(GREETING) is None


@pytest.mark.parametrize(
    ("frame", "sent"),
    [("text", "hello soak-000007"), ("binary", b"hello soak-000007")],
)
async def test_a_text_step_goes_out_in_the_dialects_frame(
    frame: str, sent: str | bytes, autojump_clock: trio.testing.MockClock
) -> None:
    table = (
        f'[target.dialect]\nformat = "text"\nframe = "{frame}"\nsend = ""\nreply = ""\n'
        'silence_timeout = "30s"\n'
        '[[target.dialect.handshake]]\nsend = "hello {client_id}"\n'
    )
    io = ScriptedIO()
    await dialect(table).handshake(io)
    assert io.sent == [sent]


async def test_a_step_sends_the_time_in_milliseconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    table = "[target.dialect]\n[[target.dialect.handshake]]\nsend = '{\"t\":{ts_ms}}'\n"
    io = ScriptedIO()
    before = int(time.time() * 1000)
    await dialect(table).handshake(io)
    after = int(time.time() * 1000)
    assert before <= json.loads(str(io.sent[0]))["t"] <= after


async def test_a_hex_step_goes_out_as_its_bytes(autojump_clock: trio.testing.MockClock) -> None:
    table = (
        '[target.dialect]\nformat = "hex"\nframe = "binary"\nsend = "c0 00"\nreply = "hex:d0 00"\n'
        'match = "fifo"\n[[target.dialect.handshake]]\nsend = "10 02 00 3c"\n'
    )
    io = ScriptedIO()
    await dialect(table).handshake(io)
    assert io.sent == [b"\x10\x02\x00\x3c"]


def test_a_binary_reply_carries_its_seq_by_pointer() -> None:
    p = dialect('[target.dialect]\nframe = "binary"\n')
    assert p.pong_binary(b'{"type":"pong","seq":41}') == 41
    assert p.pong_binary(b'{"type":"pong","seq":"x"}') is None


def test_a_binary_server_beat_is_recognised() -> None:
    p = dialect('[target.dialect]\nframe = "binary"\nserver_beat = "text:beat"\n')
    assert p.pong_binary(b"beat") is not None
    assert p.pong_binary(b"other") is None


def test_a_greeting_stops_the_sniffing_for_the_connection() -> None:
    p = dialect("[target.dialect]\n")
    with pytest.raises(ProtocolError):
        p.pong_text(GREETING)
    assert p.pong_text(GREETING) is None  # said once; the client closes the connection
