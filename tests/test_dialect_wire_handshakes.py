"""The server-speaks-first handshakes, pure, over a scripted connection:
ActionCable (a server that chose ``actioncable-unsupported``, no welcome in
time) and subscriptions-transport-ws (connection_ack after ``ka``, what
else is refused, no ack in time), and what each sets up for the
connection's one-way beats."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from soak.config.actioncable import ActionCableConfig
from soak.config.graphql_ws import GraphqlWsLegacyConfig
from soak.config.target import TargetConfig
from soak.errors import HandshakeError
from soak.protocols.actioncable import ActionCable, ActionCableState
from soak.protocols.graphql_ws_legacy import GraphqlWsLegacy, GraphqlWsLegacyState
from tests.support.scripted import URL, ScriptedIO


def cable(identifier: dict[str, str] | None = None) -> ActionCable:
    cfg = ActionCableConfig(identifier=identifier, welcome_timeout=2.5)
    return ActionCable("c", ActionCableState(TargetConfig(actioncable=cfg)))


async def test_a_server_without_a_protocol_version_soak_speaks_is_final(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(HandshakeError) as info:
        await cable().handshake(ScriptedIO(subprotocol="actioncable-unsupported"))
    assert info.value.cause == "subprotocol"
    assert info.value.permanent
    assert str(info.value) == (
        f"{URL}: the server chose actioncable-unsupported: it speaks no protocol version soak "
        "offers (actioncable-v1-json)"
    )


async def test_the_v1_json_subprotocol_goes_on_to_the_welcome(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await cable().handshake(ScriptedIO('{"type":"welcome"}', subprotocol="actioncable-v1-json"))


@pytest.mark.parametrize(
    ("identifier", "incoming", "waited"),
    [
        (None, ('{"type":"ping","message":1}',), "welcome"),
        (
            {"channel": "HeartbeatChannel"},
            ('{"type":"welcome"}',),
            "welcome and confirm_subscription",
        ),
    ],
)
async def test_no_welcome_in_time_says_what_was_awaited(
    identifier: dict[str, str] | None,
    incoming: tuple[str, ...],
    waited: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    with pytest.raises(HandshakeError) as info:
        await cable(identifier).handshake(ScriptedIO(*incoming))
    assert trio.current_time() - start == pytest.approx(2.5)
    assert info.value.cause == "welcome_timeout"
    assert str(info.value) == (
        f"{URL}: no {waited} within 2.5s (target.actioncable.welcome_timeout)"
    )


# -- subscriptions-transport-ws -------------------------------------------------------------


def legacy(**cfg: Any) -> GraphqlWsLegacy:
    state = GraphqlWsLegacyState(TargetConfig(graphql_ws_legacy=GraphqlWsLegacyConfig(**cfg)))
    return GraphqlWsLegacy("soak-000003", state)


def test_with_a_keepalive_a_missing_ka_is_a_zombie_after_ka_timeout() -> None:
    p = legacy(keepalive=10.0, ka_timeout=25.0)
    assert (p.server_interval, p.server_timeout) == (10.0, 15.0)
    assert p.client_pings is False
    assert p.client_id == "soak-000003"
    quiet = GraphqlWsLegacy("c")
    assert (quiet.server_interval, quiet.server_timeout) == (None, None)
    assert quiet.state.init_text == '{"type":"connection_init"}'


async def test_ka_before_the_ack_is_skipped(autojump_clock: trio.testing.MockClock) -> None:
    io = ScriptedIO('{"type":"ka"}', '{"type":"ka"}', '{"type":"connection_ack"}')
    await legacy().handshake(io)
    assert io.sent == ['{"type":"connection_init"}']
    assert io.incoming == []


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "hello",
            "not a subscriptions-transport-ws message (not JSON): 'hello'; expected connection_ack",
        ),
        (
            '{"type":"next"}',
            'not a subscriptions-transport-ws message: \'{"type":"next"}\'; '
            "expected connection_ack",
        ),
        ('{"type":"data","id":"1"}', "expected connection_ack, got a data message"),
        ('{"type":"complete"}', "expected connection_ack, got a complete message"),
    ],
)
async def test_anything_else_before_the_ack_is_a_protocol_failure(
    text: str, says: str, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(HandshakeError) as info:
        await legacy().handshake(ScriptedIO(text))
    assert info.value.cause == "protocol"
    assert str(info.value) == f"{URL}: {says}"


async def test_no_ack_in_time_says_so(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    with pytest.raises(HandshakeError) as info:
        await legacy(ack_timeout=3.0).handshake(ScriptedIO('{"type":"ka"}'))
    assert trio.current_time() - start == pytest.approx(3.0)
    assert info.value.cause == "ack_timeout"
    assert str(info.value) == (
        f"{URL}: no connection_ack within 3s of connection_init "
        "(target.graphql_ws_legacy.ack_timeout)"
    )
