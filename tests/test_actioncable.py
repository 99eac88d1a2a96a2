"""``protocol = "actioncable"``: messages and verdicts with plain strings,
the profile's [target.actioncable], the recipe's options, and runs under
MockClock against a fake server written from ActionCable 6.1's
connection/base.rb and server/connections.rb: the welcome, subscribe and
its confirmation or rejection, a ping to every connection every 3 s from
one timer, ``disconnect`` with its reason then close 1000, and a server
that never drops a quiet client."""

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

from soak.classify import CLIENT, SERVER, CloseInfo, Verdict
from soak.config.actioncable import ActionCableConfig, identifier_text
from soak.config.target import TargetConfig
from soak.errors import ProfileError
from soak.protocols import PROTOCOLS
from soak.protocols.actioncable import (
    ActionCable,
    ActionCableState,
    disconnect_key,
    disconnect_verdict,
    message,
)
from soak.protocols.base import SERVER_BEAT
from soak.protocols.sniff import sniff
from soak.servers.actioncable import ACTIONCABLE
from tests.support.runs import events, make_profile, one_client, run_in_memory, serving


def proto(**cfg: Any) -> ActionCable:
    return ActionCable("c1", ActionCableState(TargetConfig(actioncable=ActionCableConfig(**cfg))))


def test_registered_with_its_subprotocols_and_shape() -> None:
    assert PROTOCOLS["actioncable"] is ActionCable
    p = proto()
    assert p.subprotocols() == ("actioncable-v1-json", "actioncable-unsupported")
    assert not p.client_pings
    assert not p.expects_reply
    # stale after 6 s without a ping: its interval (3 s) + 3 s
    assert (p.server_interval, p.server_timeout) == (3.0, 3.0)
    fast = proto(beat_interval=0.5, stale_after=1.0)
    assert (fast.server_interval, fast.server_timeout) == (0.5, 0.5)


def test_recognisers() -> None:
    p = proto()
    assert p.pong_text('{"type":"ping","message":1790000000}') == SERVER_BEAT
    assert p.pong_text('{ "message": 1, "type": "ping" }') == SERVER_BEAT
    assert p.pong_text('{"type":"welcome"}') is None
    assert p.pong_text('{"identifier":"{}","message":{"n":1}}') is None
    assert p.pong_text("not json") is None
    assert p.farewell is None
    assert p.pong_text('{"type":"disconnect","reason":"server_restart","reconnect":true}') is None
    assert p.farewell == (None, "server_restart")
    assert p.reconnect
    p.pong_text('{"type":"disconnect","reason":"unauthorized","reconnect":false}')
    assert p.farewell == (None, "unauthorized")
    assert not p.reconnect
    p.opened()
    assert p.farewell is None
    assert p.reconnect


def test_messages_and_the_identifier() -> None:
    assert message('{"type":"welcome"}') == {"type": "welcome"}
    with pytest.raises(ValueError, match="not an ActionCable message \\(not JSON\\)"):
        message("o")
    with pytest.raises(ValueError, match="not an object"):
        message("[1]")
    # as JSON.stringify writes it, keys in the profile's order
    assert identifier_text({"channel": "Chat", "room": 1}) == '{"channel":"Chat","room":1}'
    state = ActionCableState(
        TargetConfig(actioncable=ActionCableConfig(identifier={"channel": "Chat"}))
    )
    assert json.loads(state.subscribe or "") == {
        "command": "subscribe",
        "identifier": '{"channel":"Chat"}',
    }
    assert ActionCableState(TargetConfig()).subscribe is None


def test_a_close_after_its_disconnect_is_counted_by_its_reason() -> None:
    plain = Verdict("server_1000_normal", "server")
    info = CloseInfo(SERVER, 1000, "")
    v = disconnect_verdict(plain, info, (None, "server_restart"), True)
    assert (v.key, v.category) == ("server_disconnect_server_restart", "server")
    assert v.why == 'disconnect "server_restart" (reconnect: true), then close 1000'
    gone = disconnect_verdict(plain, CloseInfo(SERVER, None, "x"), (None, "unauthorized"), False)
    assert gone.why == (
        'disconnect "unauthorized" (reconnect: false; the official client would not reconnect)'
    )
    assert disconnect_verdict(plain, info, None, True) is plain
    mine = Verdict("client_shutdown", "client")
    assert disconnect_verdict(mine, CloseInfo(CLIENT, 1000), (None, "x"), True) is mine
    assert disconnect_key("invalid_request") == "server_disconnect_invalid_request"
    assert disconnect_key("") == "server_disconnect_none"
    assert disconnect_key("Bad Thing!") == "server_disconnect_bad_thing_"


def test_sniffing_names_the_dialect() -> None:
    seen = sniff('{"type":"welcome"}')
    assert seen is not None
    assert seen.protocol == "actioncable"


# -- the profile ------------------------------------------------------------------------

BODY = """
[[clients.stages]]
kind = "ramp"
to = 1
duration = "1s"
"""


def cable_profile(table: str, protocol: str = "actioncable") -> TargetConfig:
    target = make_profile(BODY, protocol=protocol, target_extra="[target.actioncable]\n" + table)
    return target.target


def test_the_table() -> None:
    t = cable_profile(
        'identifier = { channel = "ChatChannel", room = "lobby" }\n'
        'beat_interval = "1s"\nstale_after = "2500ms"\nwelcome_timeout = "3s"\n'
    )
    assert t.actioncable == ActionCableConfig(
        identifier={"channel": "ChatChannel", "room": "lobby"},
        beat_interval=1.0,
        stale_after=2.5,
        welcome_timeout=3.0,
    )
    # the server never drops a quiet client: no server heartbeat to judge
    assert t.server_heartbeat is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('identifier = "ChatChannel"\n', "target.actioncable.identifier: expected a table like"),
        ("identifier = { room = 1 }\n", "target.actioncable.identifier: expected a channel name"),
        (
            'identifier = { channel = "C", at = 1979-05-27T07:32:00Z }\n',
            "target.actioncable.identifier: expected a table of JSON values",
        ),
        ('beat_interval = "0s"\n', "target.actioncable.beat_interval: expected a duration greater"),
        (
            'beat_interval = "3s"\nstale_after = "3s"\n',
            "target.actioncable.stale_after: expected more than beat_interval (3s): every "
            'connection would be stale between two pings, got "3s"',
        ),
        ("welcome_timeout = 5\n", "target.actioncable.welcome_timeout: expected a duration like"),
        ("channel = 1\n", "target.actioncable.channel: unknown field"),
    ],
)
def test_bad_table_values_name_the_field(table: str, message: str) -> None:
    with pytest.raises(ProfileError) as err:
        cable_profile(table)
    assert message in str(err.value)
    assert str(err.value).startswith("test.toml: ")


def test_the_table_on_another_dialect_names_both() -> None:
    with pytest.raises(ProfileError) as err:
        cable_profile('stale_after = "9s"\n', protocol="json")
    assert 'target.actioncable: is only used with protocol = "actioncable", got "json"' in str(
        err.value
    )


def test_the_recipe_options() -> None:
    env = ACTIONCABLE.env({"beat_interval": "0.5", "token": "t", "disconnect_after": "2"})
    assert env == {"BEAT_INTERVAL": "0.5", "TOKEN": "t", "DISCONNECT_AFTER": "2", "REJECT": "false"}
    assert ACTIONCABLE.url(4003) == "ws://127.0.0.1:4003/cable"
    with pytest.raises(ValueError, match="beat_interval: expected seconds > 0, got '500ms'"):
        ACTIONCABLE.env({"beat_interval": "500ms"})
    with pytest.raises(ValueError, match="beat_interval: expected seconds > 0, got '0'"):
        ACTIONCABLE.env({"beat_interval": "0"})
    with pytest.raises(ValueError, match="reject: expected true or false"):
        ACTIONCABLE.env({"reject": "yes"})


# -- runs against a fake server ---------------------------------------------------------


@dataclass
class FakeCable:
    """ActionCable as connection/base.rb and server/connections.rb have it."""

    interval: float = 3.0  # BEAT_INTERVAL: one timer, pings at multiples of it
    pings: int | None = None  # stop pinging after this many (a wedged event loop)
    token: str | None = None  # ?token= must match, else disconnect unauthorized
    reject: bool = False
    disconnect_at: float | None = None  # disconnect "server_restart" then close 1000
    first: str = '{"type":"welcome"}'
    subscribed: list[str] = field(default_factory=list)
    subprotocols: list[list[str]] = field(default_factory=list)

    async def serve(self, stream: trio.abc.Stream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            async with trio.open_nursery() as nursery:
                await self._serve(stream, ws, nursery)
                nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _send(self, stream: trio.abc.Stream, ws: WSConnection, doc: dict[str, Any]) -> None:
        text = json.dumps(doc, separators=(",", ":"))
        await stream.send_all(ws.send(TextMessage(text)))

    async def _disconnect(
        self, stream: trio.abc.Stream, ws: WSConnection, reason: str, again: bool
    ) -> None:
        await self._send(stream, ws, {"type": "disconnect", "reason": reason, "reconnect": again})
        await stream.send_all(ws.send(CloseConnection(1000, "")))

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
                    self.subprotocols.append(list(event.subprotocols))
                    await stream.send_all(ws.send(AcceptConnection(subprotocol=SUB)))
                    if self.token is not None and not event.target.endswith(f"?token={self.token}"):
                        await self._disconnect(stream, ws, "unauthorized", False)
                        continue
                    await stream.send_all(ws.send(TextMessage(self.first)))
                    nursery.start_soon(self._beat, stream, ws)
                    if self.disconnect_at is not None:
                        nursery.start_soon(self._later, stream, ws)
                elif isinstance(event, TextMessage):
                    cmd = json.loads(event.data)
                    assert cmd["command"] == "subscribe"
                    self.subscribed.append(cmd["identifier"])
                    kind = "reject_subscription" if self.reject else "confirm_subscription"
                    await self._send(stream, ws, {"identifier": cmd["identifier"], "type": kind})
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        await stream.send_all(ws.send(event.response()))
                    return

    async def _beat(self, stream: trio.abc.Stream, ws: WSConnection) -> None:
        n = 0
        while self.pings is None or n < self.pings:
            now = trio.current_time()
            await trio.sleep_until((now // self.interval + 1) * self.interval)  # one global timer
            n += 1
            await self._send(stream, ws, {"type": "ping", "message": 1790000000 + n})

    async def _later(self, stream: trio.abc.Stream, ws: WSConnection) -> None:
        assert self.disconnect_at is not None
        await trio.sleep(self.disconnect_at)
        await self._disconnect(stream, ws, "server_restart", True)


SUB = "actioncable-v1-json"
TABLE = 'identifier = { channel = "HeartbeatChannel" }\n'


async def run_cable(body: str, tmp_path: Path, server: FakeCable, table: str = TABLE) -> Any:
    profile = make_profile(
        body,
        url="ws://127.0.0.1:9/cable",
        results=tmp_path,
        protocol="actioncable",
        target_extra="[target.actioncable]\n" + table,
    )
    outcome, _ = await run_in_memory(profile, tmp_path, serving(server.serve))
    return outcome.summary


async def test_welcome_subscribe_and_its_pings(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeCable()
    summary = await run_cable(one_client(hold="20s"), tmp_path, server)
    assert server.subprotocols == [["actioncable-v1-json", "actioncable-unsupported"]]
    assert server.subscribed == ['{"channel":"HeartbeatChannel"}']
    tot = summary["totals"]
    assert tot["connects"] == 1
    assert tot["pings"] == 0
    assert tot["server_pings"] == 6  # at 3, 6, ... 18 s
    assert tot["server_missed"] == 0
    assert summary["latency_ms"]["server_gap"]["p50"] == pytest.approx(3000, rel=0.01)
    assert tot["closes"] == {"client_shutdown": 1}


async def test_pings_that_stop_make_a_zombie_only_we_see(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # the server keeps the connection: only our stale rule ends it
    server = FakeCable(pings=2)
    summary = await run_cable(one_client(hold="20s", attempts=1), tmp_path, server)
    tot = summary["totals"]
    assert tot["closes"]["client_zombie"] == 1
    assert tot["server_missed"] == 1
    (zombie,) = [e for e in events(tmp_path) if e.get("reason") == "client_zombie"]
    assert zombie["t"] == 12.0  # the last ping at 6 s, + 6 s
    assert zombie["text"] == "zombie: server heartbeats stopped"


async def test_its_disconnect_is_the_close_reason(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeCable(disconnect_at=4.0)
    summary = await run_cable(one_client(hold="6s", attempts=1), tmp_path, server)
    assert summary["totals"]["closes"]["server_disconnect_server_restart"] == 1
    (close,) = [e for e in events(tmp_path) if e["event"] == "close" and e["t"] < 5]
    assert (close["initiator"], close["code"]) == ("server", 1000)
    assert close["why"] == 'disconnect "server_restart" (reconnect: true), then close 1000'


async def test_an_unauthorized_disconnect_is_a_permanent_refusal(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeCable(token="s3cret")
    summary = await run_cable(one_client(hold="5s"), tmp_path, server)
    tot = summary["totals"]
    assert tot["connects"] == 0
    # three in a row and the run knows it is permanent (soak.backoff.Permanence)
    assert tot["handshake_failures"] == {"disconnect_unauthorized": 3}
    fail = next(e for e in events(tmp_path) if e["event"] == "handshake_failure")
    assert fail["permanent"] is True


async def test_a_rejected_subscription_is_refused(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    summary = await run_cable(one_client(hold="5s"), tmp_path, FakeCable(reject=True))
    assert summary["totals"]["handshake_failures"] == {"reject_subscription": 3}


async def test_no_welcome_is_a_timeout_and_another_dialect_is_named(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    slow = await run_cable(
        one_client(hold="4s", attempts=1),
        tmp_path / "a",
        FakeCable(first='{"type":"ping","message":1}'),
        TABLE + 'welcome_timeout = "2s"\n',
    )
    assert slow["totals"]["handshake_failures"] == {"welcome_timeout": 1}
    other = await run_cable(one_client(hold="5s", attempts=1), tmp_path / "b", FakeCable(first="o"))
    assert other["totals"]["handshake_failures"] == {"protocol": 2}
    fail = next(e for e in events(tmp_path / "b") if e["event"] == "handshake_failure")
    assert '(try protocol = "sockjs")' in fail["error"]
