"""``protocol = "graphql-ws-legacy"`` (subscriptions-transport-ws, the old
protocol whose subprotocol is ``graphql-ws``): its messages with plain
strings, [target.graphql_ws_legacy], the proxy's view of ``ka``, and runs
under MockClock against a fake server written from the library's
src/server.ts: connection_init, ack or connection_error, one-way ka."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from soak.config.graphql_ws import GraphqlWsLegacyConfig
from soak.config.target import Secret, TargetConfig
from soak.errors import ProfileError
from soak.protocols import PROTOCOLS
from soak.protocols.base import SERVER_BEAT
from soak.protocols.graphql_ws_legacy import (
    GraphqlWsLegacy,
    GraphqlWsLegacyState,
    refusal,
    server_message,
)
from soak.proxy.frames import kinds_of
from soak.servers.graphql_ws import GRAPHQL_WS_LEGACY
from tests.support.runs import events, make_profile, one_client, run_in_memory, serving


def proto(cfg: GraphqlWsLegacyConfig | None = None) -> GraphqlWsLegacy:
    return GraphqlWsLegacy("c1", GraphqlWsLegacyState(TargetConfig(graphql_ws_legacy=cfg)))


def test_registered_and_it_sends_no_heartbeat_of_its_own() -> None:
    assert PROTOCOLS["graphql-ws-legacy"] is GraphqlWsLegacy
    p = proto()
    assert p.subprotocols() == ("graphql-ws",)
    assert p.client_pings is False
    # the server's default sends no ka: nothing is expected of it
    assert (p.server_interval, p.server_timeout) == (None, None)
    q = proto(GraphqlWsLegacyConfig(keepalive=1.0, ka_timeout=30.0))
    # closed as a zombie when no ka came for ka_timeout (interval + timeout)
    assert (q.server_interval, q.server_timeout) == (1.0, 29.0)


def test_ka_is_the_servers_beat_and_nothing_else_is() -> None:
    p = proto()
    assert p.pong_text('{"type":"ka"}') == SERVER_BEAT
    assert p.pong_text('{ "type" : "ka" }') == SERVER_BEAT
    assert p.pong_text('{"type":"data","id":"1","payload":{"data":{"ka":1}}}') is None
    assert p.pong_text('{"type":"complete","id":"1"}') is None
    assert p.pong_text('not json with a "ka"') is None  # lenient, as its client


def test_messages_and_refusals() -> None:
    assert server_message('{"type":"connection_ack"}') == ("connection_ack", None)
    with pytest.raises(ValueError, match="not a subscriptions-transport-ws message \\(not JSON\\)"):
        server_message("2probe")
    with pytest.raises(ValueError, match="not a subscriptions-transport-ws message: "):
        server_message('{"type":"pong"}')
    err = refusal({"message": "Prohibited connection!"}, "ws://h/graphql")
    assert err.cause == "connection_error"
    assert str(err) == "ws://h/graphql: connection_error: Prohibited connection!"
    assert str(refusal(None, "u")) == "u: connection_error"


def test_connection_init_carries_the_payload_and_token() -> None:
    cfg = GraphqlWsLegacyConfig(payload={"a": 1}, token_field="authToken")
    target = TargetConfig(graphql_ws_legacy=cfg, token=Secret("t0k"), token_prefix="")
    assert json.loads(GraphqlWsLegacyState(target).init_text) == {
        "type": "connection_init",
        "payload": {"a": 1, "authToken": "t0k"},
    }


def test_the_proxy_sees_ka_as_a_heartbeat() -> None:
    kind = kinds_of("graphql-ws-legacy")
    assert kind(0x1, True, b'{"type":"ka"}') == "ping"
    assert kind(0x1, True, b'{"type":"data"}') is None
    assert kind(0x9, True, b"") == "ping"
    assert kinds_of("graphql-ws")(0x1, True, b'{"type":"pong","payload":{"seq":1}}') == "pong"


BODY = """
[[clients.stages]]
kind = "ramp"
to = 1
duration = "1s"
"""


def legacy_profile(table: str) -> TargetConfig:
    return make_profile(
        BODY, protocol="graphql-ws-legacy", target_extra="[target.graphql_ws_legacy]\n" + table
    ).target


def test_the_table() -> None:
    t = legacy_profile('keepalive = "10s"\nka_timeout = "30s"\npayload = { x = "y" }\n')
    assert t.graphql_ws_legacy == GraphqlWsLegacyConfig(
        payload={"x": "y"}, keepalive=10.0, ka_timeout=30.0
    )
    assert t.server_heartbeat is None  # its server never times a client out


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'keepalive = "30s"\n',
            "target.graphql_ws_legacy.ka_timeout: expected more than keepalive (30s): every "
            'connection would be closed between two ka, got "30s"',
        ),
        (
            'keepalive = "5s"\nka_timeout = "2s"\n',
            "target.graphql_ws_legacy.ka_timeout: expected more than keepalive (5s)",
        ),
        ("payload = 3\n", "target.graphql_ws_legacy.payload: expected a table"),
        ('init_delay = "1s"\n', "target.graphql_ws_legacy.init_delay: unknown field"),
    ],
)
def test_bad_values_name_the_field(table: str, message: str) -> None:
    with pytest.raises(ProfileError) as err:
        legacy_profile(table)
    assert message in str(err.value)


def test_the_new_protocols_table_on_the_old_one_names_both() -> None:
    with pytest.raises(ProfileError) as err:
        make_profile(
            BODY,
            protocol="graphql-ws-legacy",
            target_extra='[target.graphql_ws]\nkeepalive = "1s"\n',
        )
    assert (
        'target.graphql_ws: is only used with protocol = "graphql-ws", got "graphql-ws-legacy"'
        in str(err.value)
    )


def test_the_recipe() -> None:
    assert GRAPHQL_WS_LEGACY.env({"keepalive": "500", "token": "t"}) == {
        "WS_PATH": "/graphql",
        "KEEPALIVE": "500",
        "TOKEN": "t",
    }
    with pytest.raises(ValueError, match="option keepalive: expected milliseconds"):
        GRAPHQL_WS_LEGACY.env({"keepalive": "-1"})


@dataclass
class FakeLegacy:
    """subscriptions-transport-ws's server, as its src/server.ts behaves."""

    keepalive: float | None = None  # ka right after the ack, then this often
    token: str | None = None
    ka_until: float = float("inf")  # no more ka from then on
    inits: list[Any] = field(default_factory=list)
    others: list[str] = field(default_factory=list)  # anything else the client sent

    async def serve(self, stream: trio.abc.Stream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            async with trio.open_nursery() as nursery:
                await self._serve(stream, ws, nursery)
                nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _serve(
        self, stream: trio.abc.Stream, ws: WSConnection, nursery: trio.Nursery
    ) -> None:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, Request):
                    if "graphql-ws" not in event.subprotocols:
                        await stream.send_all(ws.send(AcceptConnection()))
                        await stream.send_all(ws.send(CloseConnection(1002)))
                        continue
                    await stream.send_all(ws.send(AcceptConnection(subprotocol="graphql-ws")))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        await stream.send_all(ws.send(event.response()))
                    return
                elif isinstance(event, TextMessage):
                    msg = json.loads(event.data)
                    if msg["type"] != "connection_init":
                        self.others.append(event.data)
                        continue
                    self.inits.append(msg.get("payload"))
                    if (
                        self.token is not None
                        and (msg.get("payload") or {}).get("token") != self.token
                    ):
                        error = {
                            "type": "connection_error",
                            "payload": {"message": "Prohibited connection!"},
                        }
                        await stream.send_all(ws.send(TextMessage(json.dumps(error))))
                        await trio.sleep(0.01)
                        await stream.send_all(ws.send(CloseConnection(1011)))
                        continue
                    await stream.send_all(ws.send(TextMessage('{"type":"connection_ack"}')))
                    if self.keepalive is not None:
                        nursery.start_soon(self._ka, stream, ws)

    async def _ka(self, stream: trio.abc.Stream, ws: WSConnection) -> None:
        assert self.keepalive is not None
        while trio.current_time() < self.ka_until:
            await stream.send_all(ws.send(TextMessage('{"type":"ka"}')))
            await trio.sleep(self.keepalive)


async def run_legacy(
    body: str, tmp_path: Path, server: FakeLegacy, table: str = ""
) -> dict[str, Any]:
    extra = "[target.graphql_ws_legacy]\n" + table if table else ""
    profile = make_profile(body, results=tmp_path, protocol="graphql-ws-legacy", target_extra=extra)
    outcome, _ = await run_in_memory(profile, tmp_path, serving(server.serve))
    summary: dict[str, Any] = outcome.summary
    return summary


async def test_ka_counted_and_nothing_sent(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeLegacy(keepalive=1.0)
    table = 'keepalive = "1s"\nka_timeout = "3s"\npayload = { client = "soak" }\n'
    summary = await run_legacy(one_client(hold="4500ms"), tmp_path, server, table)
    assert server.inits == [{"client": "soak"}]
    assert server.others == []  # no heartbeat of ours: the protocol has none
    tot = summary["totals"]
    assert tot["pings"] == 0
    assert tot["server_pings"] == 5  # at 0 (with the ack), 1, 2, 3, 4 s
    assert tot["server_missed"] == 0
    assert tot["closes"] == {"client_shutdown": 1}
    gap = summary["latency_ms"]["server_gap"]
    assert gap["count"] == 4
    assert gap["min"] == pytest.approx(1000, rel=0.001)  # HdrHistogram's precision
    assert gap["max"] == pytest.approx(1000, rel=0.001)


async def test_ka_that_stops_closes_the_connection_as_a_zombie(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # the last ka at 2 s; ka_timeout 3 s: the client gives up at 5 s
    server = FakeLegacy(keepalive=1.0, ka_until=2.5)
    table = 'keepalive = "1s"\nka_timeout = "3s"\n'
    summary = await run_legacy(one_client(hold="5500ms", attempts=0), tmp_path, server, table)
    tot = summary["totals"]
    assert tot["server_missed"] == 1
    assert tot["closes"]["client_zombie"] == 1
    (zombie,) = [e for e in events(tmp_path) if e.get("reason") == "client_zombie"]
    assert zombie["t"] == 5.0
    assert zombie["text"] == "zombie: server heartbeats stopped"


async def test_a_server_without_ka_is_left_alone(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    summary = await run_legacy(one_client(hold="60s"), tmp_path, FakeLegacy())
    tot = summary["totals"]
    assert tot["closes"] == {"client_shutdown": 1}
    assert tot["server_pings"] == 0


async def test_connection_error_is_a_refusal(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    summary = await run_legacy(
        one_client(hold="3s", attempts=1),
        tmp_path,
        FakeLegacy(token="right"),
        'payload = { token = "wrong" }\n',
    )
    assert summary["totals"]["handshake_failures"] == {"connection_error": 2}
    fail = next(e for e in events(tmp_path) if e["event"] == "handshake_failure")
    assert fail["error"] == "ws://127.0.0.1:9/ws: connection_error: Prohibited connection!"
