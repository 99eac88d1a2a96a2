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
