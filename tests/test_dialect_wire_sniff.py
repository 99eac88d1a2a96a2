"""soak.protocols.sniff, and what a dialect's handshake says about a first
message it cannot read: another dialect's greeting is named ("it speaks
Socket.IO, try protocol = ..."), but a message of the dialect's own shape
is never told to speak the dialect the profile already names."""

from __future__ import annotations

from typing import Any

import pytest

from soak.errors import HandshakeError
from soak.protocols import PROTOCOLS
from soak.protocols.sniff import sniff
from tests.support.scripted import URL, ScriptedIO


def test_a_dialect_asking_about_its_own_shape_hears_nothing() -> None:
    signalr = '{"type":1,"target":"x"}\x1e'
    assert sniff(signalr) is not None
    assert sniff(signalr).protocol == "signalr"  # type: ignore[union-attr]
    assert sniff(signalr, "signalr") is None
    assert sniff(signalr, "json") == sniff(signalr)
    mqtt = b"\x20\x02\x00\x00"  # a CONNACK, through the binary path
    assert sniff(mqtt, "mqtt") is None
    assert sniff(mqtt, "stomp") == sniff(mqtt)


@pytest.mark.parametrize(
    ("protocol", "text", "says"),
    [
        # a SignalR record that is no handshake response
        (
            "signalr",
            '{"type":1,"target":"x"}\x1e',
            'not a SignalR handshake response: \'{"type":1,"target":"x"}\\x1e\'',
        ),
        # an "a" frame whose JSON is broken
        (
            "sockjs",
            "a[nope]",
            "not a SockJS frame (bad JSON after 'a'): 'a[nope]'; expected the open frame o",
        ),
        # an oversized challenge: the size, not "it speaks OpenClaw"
        (
            "openclaw",
            '{"type":"event","event":"connect.challenge","p":"' + "x" * 30_000_000 + '"}',
            "exceeds max_frame (26214400) in the handshake",
        ),
    ],
)
async def test_an_unreadable_message_of_the_dialects_own_shape_says_what_is_wrong(
    protocol: str, text: str, says: str
) -> None:
    p: Any = PROTOCOLS[protocol]("soak-000001")
    with pytest.raises(HandshakeError) as info:
        await p.handshake(ScriptedIO(text))
    message = str(info.value)
    assert message.startswith(f"{URL}: ")
    assert says in message
    assert "it speaks" not in message


@pytest.mark.parametrize(
    "protocol", ["signalr", "sockjs", "openclaw", "phoenix", "pusher", "actioncable", "centrifugo"]
)
async def test_another_dialects_greeting_is_still_named(protocol: str) -> None:
    p: Any = PROTOCOLS[protocol]("soak-000001")
    if protocol == "phoenix":
        from soak.config.phoenix import PhoenixConfig
        from soak.config.target import TargetConfig
        from soak.protocols.phoenix import PhoenixState

        p = PROTOCOLS[protocol](
            "soak-000001", PhoenixState(TargetConfig(phoenix=PhoenixConfig(topic="room:1")))
        )
    greeting = '0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000}'
    with pytest.raises(HandshakeError) as info:
        await p.handshake(ScriptedIO(greeting))
    assert "it speaks Socket.IO (Engine.IO)" in str(info.value)
    assert f'not protocol = "{protocol}" (try protocol = "socket.io")' in str(info.value)
    assert info.value.cause == "protocol"


def _try(protocol: str) -> str:
    return f'not protocol = "json" (try protocol = "{protocol}")'


@pytest.mark.parametrize(
    ("greeting", "what", "dialect", "hint"),
    [
        (
            '{"type":"event","event":"connect.challenge"}',
            "a connect.challenge",
            "the OpenClaw Gateway protocol",
            _try("openclaw"),
        ),
        ('{"type":"welcome"}', "an ActionCable welcome", "ActionCable", _try("actioncable")),
        (
            '{"type":"confirm_subscription","identifier":"x"}',
            "an ActionCable confirm_subscription",
            "ActionCable",
            _try("actioncable"),
        ),
        (
            '{"type":"disconnect","reason":"unauthorized"}',
            "an ActionCable disconnect",
            "ActionCable",
            _try("actioncable"),
        ),
        (
            '{"type":"ping","message":1790000000}',
            "an ActionCable ping",
            "ActionCable",
            _try("actioncable"),
        ),
        (
            '{"event":"pusher:connection_established","data":"{}"}',
            "a pusher:connection_established event",
            "Pusher Channels",
            _try("pusher"),
        ),
        (
            '{"event":"phx_reply","topic":"phoenix","payload":{}}',
            "a Phoenix reply",
            "Phoenix Channels",
            _try("phoenix"),
        ),
        (
            '[null,"1","phoenix","phx_reply",{"status":"ok"}]',
            "a Phoenix message",
            "Phoenix Channels",
            _try("phoenix"),
        ),
        (
            '{"id":1,"connect":{"client":"c"}}',
            "a Centrifugo connect reply",
            "Centrifugo",
            _try("centrifugo"),
        ),
        ('{"type":"connection_ack"}', "a connection_ack message", "graphql-ws", _try("graphql-ws")),
        (
            '{"type":"ka"}',
            "a ka message",
            "subscriptions-transport-ws (legacy graphql-ws)",
            'not protocol = "json"',
        ),
    ],
)
def test_each_greeting_is_named_whole(greeting: str, what: str, dialect: str, hint: str) -> None:
    seen = sniff(greeting)
    assert seen is not None
    assert seen.explain("json") == (
        f"the server sent {what} ({greeting!r}): it speaks {dialect}, {hint}"
    )


@pytest.mark.parametrize(
    "message",
    [
        '{"event":"connect.challenge"}',  # not an event frame
        '{"type":"res","event":"connect.challenge"}',
        '{"event":"phx_reply","topic":"room:lobby"}',  # a channel's reply, not the heartbeat's
        '{"topic":"phoenix","event":"heartbeat"}',
        '{"type":"confirm"}',
        '{"type":"ping"}',  # a ping without ActionCable's message
        '{"connect":{},"id":"1"}',  # Centrifugo's ids are numbers
        '{"connect":"x","id":1}',
        '{"event":"client-pusher:x"}',
    ],
)
def test_near_misses_are_no_ones_greeting(message: str) -> None:
    assert sniff(message) is None
