"""``protocol = "graphql-ws"``: the recognisers and the handshake's pieces
with plain strings, the profile's [target.graphql_ws], and runs under
MockClock against a fake server written from graphql-ws's protocol document and
its ``ws`` adapter (src/use/ws.ts): connection_init and its ack, the echoed
ping payload, server pings both kinds, the keep-alive's terminate, the close
codes by name."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from click.testing import CliRunner
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, CloseConnection, Ping, Pong, Request, TextMessage

from soak.classify import (
    CATEGORY_HEARTBEAT,
    CATEGORY_SERVER,
    SERVER,
    TRANSPORT,
    CloseInfo,
    Evidence,
    Verdict,
)
from soak.cli import cli
from soak.config.graphql_ws import GraphqlWsConfig, keepalive_heartbeat
from soak.config.heartbeat import ServerHeartbeat
from soak.config.target import Secret, TargetConfig
from soak.errors import HandshakeError, ProfileError, ProtocolError
from soak.protocols import PROTOCOLS
from soak.protocols.base import SERVER_BEAT, SERVER_PING
from soak.protocols.graphql_ws import (
    PONG,
    GraphqlWs,
    GraphqlWsState,
    graphql_ws_verdict,
    keepalive_verdict,
    message_type,
    named_refusal,
)
from soak.servers.graphql_ws import GRAPHQL_WS
from soak.wsframe import OP_TEXT
from tests.support.runs import events, make_profile, one_client, run_in_memory, serving

# -- the heartbeat on the wire --------------------------------------------------------


def proto(**target: Any) -> GraphqlWs:
    return GraphqlWs("c1", GraphqlWsState(TargetConfig(**target)))


def test_registered_under_its_name() -> None:
    assert PROTOCOLS["graphql-ws"] is GraphqlWs
    assert proto().subprotocols() == ("graphql-transport-ws",)


def test_ping_carries_the_seq_and_timestamp_in_its_payload() -> None:
    opcode, data = proto().ping_frame(12, 1790000000123) or (0, b"")
    assert opcode == OP_TEXT
    assert json.loads(data) == {
        "type": "ping",
        "payload": {"seq": 12, "timestamp": 1790000000123},
    }


def test_the_echoed_pong_gives_the_seq_fast_path_or_not() -> None:
    p = proto()
    # as the reference server writes it back (JSON.stringify of what it read)
    assert p.pong_text('{"type":"pong","payload":{"seq":12,"timestamp":1790000000123}}') == 12
    # another server's spelling: parsed
    assert p.pong_text('{ "payload": {"timestamp": 5, "seq": 13}, "type": "pong" }') == 13
    assert p.pong_text('{"type":"pong","payload":{"seq":14,"extra":[1]}}') == 14
    # a pong without our seq is the server's own beat
    assert p.pong_text('{"type":"pong"}') == SERVER_BEAT
    assert p.pong_text('{"type":"pong","payload":{"seq":"14"}}') == SERVER_BEAT
    assert p.pong_text('{"type":"pong","payload":{"seq":true}}') == SERVER_BEAT
    assert p.pong_text('{"type":"pong","payload":{"seq":0}}') == SERVER_BEAT


def test_every_ping_the_client_sends_is_recognised_in_its_echo() -> None:
    p = proto()
    for seq, ms in ((1, 0), (9, 1790000000000), (123456789, 17)):
        _, data = p.ping_frame(seq, ms) or (0, b"")
        echo = data.decode().replace('"type":"ping"', '"type":"pong"')
        assert p.pong_text(echo) == seq


def test_a_server_ping_is_answered_with_a_pong() -> None:
    p = proto()
    assert p.pong_text('{"type":"ping"}') == SERVER_PING
    assert p.pong_text('{"type":"ping","payload":{"n":1}}') == SERVER_PING
    assert p.answer() == (OP_TEXT, PONG.encode())
    assert json.loads(PONG) == {"type": "pong"}


def test_other_messages_are_not_heartbeats() -> None:
    p = proto()
    assert p.pong_text('{"type":"next","id":"1","payload":{"data":{}}}') is None
    assert p.pong_text('{"type":"complete","id":"1"}') is None
    assert p.pong_text('{"type":"connection_ack"}') is None


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("3", "not an object"),
        ('0{"sid":"x"}', "not JSON"),
        ('{"type":"hello"}', "type 'hello'"),
        ('{"kind":"pong"}', "type None"),
    ],
)
def test_an_unreadable_message_is_a_bad_response(text: str, said: str) -> None:
    with pytest.raises(ProtocolError) as err:
        proto().pong_text(text)
    assert err.value.close_code == 4004  # as the official client closes
    assert said in str(err.value)
    with pytest.raises(ValueError, match="not a graphql-transport-ws message"):
        message_type(text)


# -- connection_init, refusals ----------------------------------------------------------


def test_connection_init_without_and_with_a_payload() -> None:
    assert GraphqlWsState(TargetConfig()).init_text == '{"type":"connection_init"}'
    cfg = GraphqlWsConfig(payload={"client": "soak", "n": [1, 2]})
    state = GraphqlWsState(TargetConfig(graphql_ws=cfg))
    assert json.loads(state.init_text) == {
        "type": "connection_init",
        "payload": {"client": "soak", "n": [1, 2]},
    }


def test_the_token_goes_into_the_payload_under_token_field() -> None:
    cfg = GraphqlWsConfig(payload={"a": 1}, token_field="authorization")
    target = TargetConfig(graphql_ws=cfg, token=Secret("s3cret"), token_env="T")
    assert json.loads(GraphqlWsState(target).init_text)["payload"] == {
        "a": 1,
        "authorization": "Bearer s3cret",
    }
    # without a token, no field; the profile's payload is not changed
    assert json.loads(GraphqlWsState(TargetConfig(graphql_ws=cfg)).init_text)["payload"] == {"a": 1}
    assert cfg.payload == {"a": 1}


def test_closes_in_the_handshake_are_named_and_fatal_ones_permanent() -> None:
    late = named_refusal(
        HandshakeError("close_4408", 'u: closed with 4408 "Connection initialisation timeout"')
    )
    assert late.cause == "close_4408_connection_initialisation_timeout"
    assert not late.permanent  # the official client retries it
    bad = named_refusal(HandshakeError("close_4400", "u: closed with 4400 during the handshake"))
    assert bad.cause == "close_4400_bad_request"
    assert bad.permanent
    assert str(bad) == "u: closed with 4400 during the handshake (graphql-ws: bad request)"
    assert named_refusal(HandshakeError("close_4403", "x")).permanent is False
    assert named_refusal(HandshakeError("close_4429", "x")).permanent is True
    for cause in ("close_4000", "close_1000", "eof", "close_"):
        exc = HandshakeError(cause, "x")
        assert named_refusal(exc) is exc


# -- judging closes ---------------------------------------------------------------------


def ev(last_pong: float | None, beat: float | None = 2.0, missed: int = 0) -> Evidence:
    return Evidence(
        age=4.0,
        last_pong_age=last_pong,
        last_frame_age=0.5,
        consecutive_missed=missed,
        pings_pending=0,
        server_beat_age=beat,
    )


def test_keepalive_verdict_false_when_our_frames_were_getting_through() -> None:
    v = keepalive_verdict(ev(0.4), 2.0)
    assert v.key == "false_timeout"
    assert "last pong 0.400s ago < the server's pong wait 2s" in v.why


def test_keepalive_verdict_justified_without_a_recent_pong() -> None:
    v = keepalive_verdict(ev(None, beat=2.0, missed=3), 2.0)
    assert v.key == "justified_timeout"
    assert v.why == (
        "no pong to our heartbeats for the whole connection >= the server's pong wait 2s "
        "(3 missed); its last ping came 2.000s before and was answered"
    )
    # a pong right at the wait (minus the slack for timers) is no proof
    assert keepalive_verdict(ev(1.95), 2.0).key == "justified_timeout"
    assert keepalive_verdict(ev(1.85), 2.0).key == "false_timeout"
    lost = keepalive_verdict(ev(3.0, beat=None), 2.0)
    assert "no ping of the server reached the client" in lost.why


def test_server_closes_are_named() -> None:
    server = keepalive_heartbeat(12.0)
    for code, key in (
        (4400, "server_4400_bad_request"),
        (4403, "server_4403_forbidden"),
        (4408, "server_4408_connection_initialisation_timeout"),
        (4409, "server_4409_subscriber_already_exists"),
        (4429, "server_4429_too_many_initialisation_requests"),
        (4499, "server_4499_terminated"),
        (4500, "server_4500_internal_server_error"),
    ):
        info = CloseInfo(SERVER, code, "why")
        v = graphql_ws_verdict(Verdict(f"server_{code}", CATEGORY_SERVER), info, server)
        assert (v.key, v.category, v.why) == (key, CATEGORY_SERVER, "why")
    other = Verdict("server_1001_going_away", CATEGORY_SERVER)
    assert graphql_ws_verdict(other, CloseInfo(SERVER, 1001), server) is other


def test_only_an_abrupt_heartbeat_end_gets_the_keepalive_rule() -> None:
    server = keepalive_heartbeat(2.0)
    classic = Verdict("justified_timeout", CATEGORY_HEARTBEAT, "classic")
    abrupt = CloseInfo(TRANSPORT, 1006, "", "eof", evidence=ev(0.3))
    assert graphql_ws_verdict(classic, abrupt, server).key == "false_timeout"
    # a close frame with the user's own signature: judged as usual
    framed = CloseInfo(SERVER, 4000, "heartbeat", evidence=ev(0.3))
    assert graphql_ws_verdict(classic, framed, server) is classic
    assert graphql_ws_verdict(classic, abrupt, None) is classic
    plain = Verdict("transport_eof", "transport")
    assert graphql_ws_verdict(plain, abrupt, server) is plain
    # the profile's own [target.server_heartbeat]: judged as the profile says
    assert graphql_ws_verdict(classic, abrupt, server, adapter=False) is classic


def test_an_end_on_the_ping_timer_but_not_on_a_pong_wait_is_a_transport_loss() -> None:
    # the adapter terminates when the wait for its last ping runs out, just
    # before its next ping: that ping came ~keepalive before the end. A
    # restart that falls on the timer comes at any time after a ping.
    server = keepalive_heartbeat(2.0)
    assert server is not None
    tolerance = server.abrupt_tolerance
    classic = Verdict("false_timeout", CATEGORY_HEARTBEAT, "classic")
    for beat, key in (
        (2.0, "false_timeout"),
        (2.0 - tolerance, "false_timeout"),
        (2.0 + tolerance, "false_timeout"),
        (None, "false_timeout"),  # its ping never came: lost on the way
        (2.0 - tolerance - 0.01, "transport_eof"),
        (0.3, "transport_eof"),
    ):
        info = CloseInfo(TRANSPORT, 1006, "", "eof", evidence=ev(0.3, beat=beat))
        assert graphql_ws_verdict(classic, info, server).key == key, beat
    reset = CloseInfo(TRANSPORT, 1006, "", "reset", evidence=ev(0.3, beat=0.3))
    assert graphql_ws_verdict(classic, reset, server) == Verdict("transport_reset", "transport")


def test_the_state_knows_whose_server_heartbeat_it_judges_by() -> None:
    assert GraphqlWsState(TargetConfig(server_heartbeat=keepalive_heartbeat(12.0))).adapter
    cfg = GraphqlWsConfig(keepalive=1.0)
    target = TargetConfig(graphql_ws=cfg, server_heartbeat=keepalive_heartbeat(1.0))
    assert GraphqlWsState(target).adapter
    assert not GraphqlWsState(
        TargetConfig(graphql_ws=cfg, server_heartbeat=ServerHeartbeat())
    ).adapter
    assert not GraphqlWsState(TargetConfig(graphql_ws=cfg)).adapter


# -- the profile ------------------------------------------------------------------------

BODY = """
[[clients.stages]]
kind = "ramp"
to = 1
duration = "1s"
"""


def gql_profile(table: str, protocol: str = "graphql-ws", extra: str = "") -> TargetConfig:
    profile = make_profile(
        BODY, protocol=protocol, target_extra=extra + "[target.graphql_ws]\n" + table
    )
    return profile.target


def test_the_table_and_its_implied_server_heartbeat() -> None:
    t = gql_profile(
        'payload = { client = "soak", nested = { n = 1 } }\nkeepalive = "1500ms"\n'
        'ack_timeout = "2s"\ninit_delay = "4s"\ntoken_field = "authorization"\n'
    )
    assert t.graphql_ws == GraphqlWsConfig(
        payload={"client": "soak", "nested": {"n": 1}},
        token_field="authorization",
        keepalive=1.5,
        ack_timeout=2.0,
        init_delay=4.0,
    )
    sh = t.server_heartbeat
    assert sh is not None
    assert (sh.interval, sh.timeout, sh.abrupt_period, sh.close_codes) == (1.5, 1.5, 1.5, ())
    assert sh.abrupt_tolerance == 0.375  # a quarter of keepalive, at most 1 s
    assert keepalive_heartbeat(12.0).abrupt_tolerance == 1.0  # type: ignore[union-attr]
    # no table: the ws adapter's defaults; keepalive 0: no heartbeat to judge
    plain = make_profile(BODY, protocol="graphql-ws").target
    assert plain.server_heartbeat == keepalive_heartbeat(12.0)
    assert gql_profile('keepalive = "0s"\n').server_heartbeat is None
    # the profile's own [target.server_heartbeat] wins
    own = gql_profile(
        'keepalive = "1s"\n', extra='[target.server_heartbeat]\ninterval = "30s"\n'
    ).server_heartbeat
    assert own is not None
    assert own.interval == 30.0


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('payload = "token"\n', "target.graphql_ws.payload: expected a table"),
        (
            "payload = { when = 1979-05-27T07:32:00Z }\n",
            "target.graphql_ws.payload: expected a table of JSON values",
        ),
        ('keepalive = "12"\n', "target.graphql_ws.keepalive: expected a duration like"),
        ('ack_timeout = "0s"\n', "target.graphql_ws.ack_timeout: expected a duration greater"),
        ('token_field = ""\n', "target.graphql_ws.token_field: expected a payload key"),
        ("keep_alive = 1\n", "target.graphql_ws.keep_alive: unknown field (did you mean"),
    ],
)
def test_bad_table_values_name_the_field(table: str, message: str) -> None:
    with pytest.raises(ProfileError) as err:
        gql_profile(table)
    assert message in str(err.value)
    assert str(err.value).startswith("test.toml: ")


def test_the_table_on_another_dialect_names_both() -> None:
    with pytest.raises(ProfileError) as err:
        gql_profile('keepalive = "1s"\n', protocol="json")
    assert 'target.graphql_ws: is only used with protocol = "graphql-ws", got "json"' in str(
        err.value
    )


def test_an_unknown_dialect_lists_graphql_ws() -> None:
    with pytest.raises(ProfileError) as err:
        make_profile(BODY, protocol="graphql-transport-ws")
    assert "graphql-ws" in str(err.value)


def test_the_recipe_options() -> None:
    env = GRAPHQL_WS.env({"keepalive": "1000", "init_wait": "500", "token": "t"})
    assert (env["KEEPALIVE"], env["INIT_WAIT"], env["TOKEN"]) == ("1000", "500", "t")
    assert GRAPHQL_WS.env({})["PICK_SUBPROTOCOL"] == "true"
    with pytest.raises(ValueError, match="option keepalive: expected milliseconds >= 0, got '1s'"):
        GRAPHQL_WS.env({"keepalive": "1s"})
    with pytest.raises(ValueError, match="pick_subprotocol: expected true or false"):
        GRAPHQL_WS.env({"pick_subprotocol": "no"})
    assert GRAPHQL_WS.url(4001) == "ws://127.0.0.1:4001/graphql"


# -- runs against a fake server ---------------------------------------------------------


@dataclass
class FakeGraphqlWs:
    """A graphql-ws server as its protocol document and the ws adapter describe it."""

    keepalive: float | None = None  # RFC 6455 pings; terminate after keepalive unanswered
    init_wait: float = 3.0  # connectionInitWaitTimeout: then close 4408
    token: str | None = None  # connection_init's payload must carry it, else 4403
    ack: bool = True  # False: never acknowledges
    ack_delay: float = 0.0
    pick: bool = True  # False: picks no subprotocol
    first: str | None = None  # a message sent instead of the ack (another dialect)
    protocol_pings: float | None = None  # also {"type":"ping"} this often
    ignore_pongs: bool = False  # a buggy keep-alive: our RFC 6455 pongs never count
    deaf_after: float | None = None  # from then on it reads nothing of ours
    refuse: tuple[int, str] | None = None  # close this instead of acking
    live_close: tuple[float, int, str] | None = None  # after the ack
    raw_after_ack: str | None = None
    inits: list[Any] = field(default_factory=list)
    subprotocols: list[list[str]] = field(default_factory=list)
    pongs_to_its_pings: int = 0
    terminated: list[float] = field(default_factory=list)

    async def serve(self, stream: trio.abc.Stream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            async with trio.open_nursery() as nursery:
                await self._serve(stream, ws, nursery)
                nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _text(self, stream: trio.abc.Stream, ws: WSConnection, text: str) -> None:
        await stream.send_all(ws.send(TextMessage(text)))

    async def _close(self, stream: trio.abc.Stream, ws: WSConnection, code: int, why: str) -> None:
        await stream.send_all(ws.send(CloseConnection(code, why)))

    async def _serve(
        self, stream: trio.abc.Stream, ws: WSConnection, nursery: trio.Nursery
    ) -> None:
        acked = False
        opened = 0.0
        ponged = [True]
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            if (
                self.deaf_after is not None
                and acked
                and trio.current_time() >= opened + self.deaf_after
            ):
                continue
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, Request):
                    self.subprotocols.append(list(event.subprotocols))
                    chosen = "graphql-transport-ws"
                    if not self.pick or chosen not in event.subprotocols:
                        await stream.send_all(ws.send(AcceptConnection()))
                        if self.pick:
                            await self._close(stream, ws, 4406, "Subprotocol not acceptable")
                        continue
                    await stream.send_all(ws.send(AcceptConnection(subprotocol=chosen)))
                    opened = trio.current_time()
                    nursery.start_soon(self._init_wait, stream, ws, lambda: bool(self.inits))
                    if self.keepalive is not None:
                        nursery.start_soon(self._keepalive, stream, ws, ponged)
                elif isinstance(event, Pong):
                    if not self.ignore_pongs:
                        ponged[0] = True
                elif isinstance(event, Ping):
                    await stream.send_all(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        await stream.send_all(ws.send(event.response()))
                    return
                elif isinstance(event, TextMessage):
                    msg = json.loads(event.data)
                    kind = msg["type"]
                    if kind == "connection_init":
                        self.inits.append(msg.get("payload"))
                        acked = await self._init(stream, ws, msg.get("payload"), nursery)
                    elif kind == "ping":
                        pong: dict[str, Any] = {"type": "pong"}
                        if "payload" in msg:
                            pong["payload"] = msg["payload"]
                        await self._text(stream, ws, json.dumps(pong, separators=(",", ":")))
                    elif kind == "pong":
                        self.pongs_to_its_pings += 1

    async def _init(
        self, stream: trio.abc.Stream, ws: WSConnection, payload: Any, nursery: trio.Nursery
    ) -> bool:
        if self.refuse is not None:
            await self._close(stream, ws, *self.refuse)
            return False
        if self.token is not None and (payload or {}).get("token") != self.token:
            await self._close(stream, ws, 4403, "Forbidden")
            return False
        if self.first is not None:
            await self._text(stream, ws, self.first)
            return False
        if not self.ack:
            return False
        await trio.sleep(self.ack_delay)
        await self._text(stream, ws, '{"type":"connection_ack"}')
        if self.protocol_pings is not None:
            nursery.start_soon(self._protocol_pings, stream, ws)
        if self.live_close is not None:
            nursery.start_soon(self._live_close, stream, ws)
        if self.raw_after_ack is not None:
            await self._text(stream, ws, self.raw_after_ack)
        return True

    async def _init_wait(self, stream: trio.abc.Stream, ws: WSConnection, inited: Any) -> None:
        await trio.sleep(self.init_wait)
        if not inited():
            await self._close(stream, ws, 4408, "Connection initialisation timeout")

    async def _keepalive(
        self, stream: trio.abc.Stream, ws: WSConnection, ponged: list[bool]
    ) -> None:
        assert self.keepalive is not None
        while True:
            await trio.sleep(self.keepalive)
            if not ponged[0]:
                self.terminated.append(trio.current_time())
                await stream.aclose()  # socket.terminate(): no close frame
                return
            ponged[0] = False
            await stream.send_all(ws.send(Ping(b"")))

    async def _protocol_pings(self, stream: trio.abc.Stream, ws: WSConnection) -> None:
        assert self.protocol_pings is not None
        while True:
            await trio.sleep(self.protocol_pings)
            await self._text(stream, ws, '{"type":"ping"}')

    async def _live_close(self, stream: trio.abc.Stream, ws: WSConnection) -> None:
        assert self.live_close is not None
        after, code, reason = self.live_close
        await trio.sleep(after)
        await self._close(stream, ws, code, reason)


async def run_gql(
    body: str, tmp_path: Path, server: FakeGraphqlWs, table: str = ""
) -> dict[str, Any]:
    extra = "[target.graphql_ws]\n" + table if table else ""
    profile = make_profile(body, results=tmp_path, protocol="graphql-ws", target_extra=extra)
    outcome, _ = await run_in_memory(profile, tmp_path, serving(server.serve))
    summary: dict[str, Any] = outcome.summary
    return summary


async def test_init_ack_heartbeats_and_server_pings(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeGraphqlWs(keepalive=2.0, ack_delay=0.25, protocol_pings=3.0)
    table = 'payload = { client = "soak", version = 2 }\n'
    summary = await run_gql(one_client(hold="9500ms"), tmp_path, server, table)
    assert server.subprotocols == [["graphql-transport-ws"]]
    assert server.inits == [{"client": "soak", "version": 2}]
    tot = summary["totals"]
    assert tot["connects"] == 1
    assert tot["handshake_failure_total"] == 0
    # connection_ack came 0.25 s after connection_init: part of connecting
    assert summary["latency_ms"]["connect"]["max"] == pytest.approx(250, rel=0.01)
    # our pings, each answered by its echo (RTT per ping)
    assert tot["pings"] == tot["pongs"] == 9
    assert tot["missed"] == 0
    assert summary["latency_ms"]["rtt"]["count"] == 9
    # its RFC 6455 pings (2, 4, 6, 8 s after the upgrade) and its protocol
    # pings (3, 6, 9 s after the ack), all answered
    assert tot["server_pings"] == 4 + 3
    assert server.pongs_to_its_pings == 3
    assert server.terminated == []
    assert tot["closes"] == {"client_shutdown": 1}


async def test_a_keepalive_that_ignores_our_pongs_is_a_false_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # our pongs reach it but do not count: terminated 2 x keepalive after the upgrade
    server = FakeGraphqlWs(keepalive=2.0, ignore_pongs=True)
    summary = await run_gql(
        one_client(hold="5s", attempts=1), tmp_path, server, 'keepalive = "2s"\n'
    )
    assert server.terminated == [4.0]
    tot = summary["totals"]
    assert tot["closes"]["false_timeout"] == 1
    (close,) = [e for e in events(tmp_path) if e.get("reason") == "false_timeout"]
    assert close["initiator"] == "transport"
    assert close["evidence"]["age_s"] == 4.0
    # our own heartbeat was answered a moment before: the server had our frames
    assert close["why"].startswith("last pong ")
    assert "< the server's pong wait 2s" in close["why"]


async def test_a_server_that_stops_hearing_us_is_a_justified_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # from 0.5 s after the ack it reads nothing of ours: no pong to its ping
    # of 2 s, terminated at 4 s; our ping of 0 s was answered, those of 1, 2
    # and 3 s not (missed 0.5 s later each)
    server = FakeGraphqlWs(keepalive=2.0, deaf_after=0.5)
    body = (
        one_client(hold="5s", attempts=1)
        .replace("max_missed = 3", "max_missed = 10")
        .replace('timeout = "1s"', 'timeout = "500ms"')
    )
    summary = await run_gql(body, tmp_path, server, 'keepalive = "2s"\n')
    assert server.terminated == [4.0]
    tot = summary["totals"]
    assert tot["closes"]["justified_timeout"] == 1
    assert tot["justified_timeouts"] == 1
    (close,) = [e for e in events(tmp_path) if e.get("reason") == "justified_timeout"]
    assert close["why"] == (
        "no pong to our heartbeats for 4.000s >= the server's pong wait 2s "
        "(3 missed); its last ping came 2.000s before and was answered"
    )


async def test_a_late_connection_init_gets_4408_named(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeGraphqlWs(init_wait=3.0)
    summary = await run_gql(
        one_client(hold="10s", attempts=1), tmp_path, server, 'init_delay = "4s"\n'
    )
    tot = summary["totals"]
    assert tot["handshake_failures"] == {"close_4408_connection_initialisation_timeout": 2}
    assert server.inits == []  # it never got one: the close came first and was read
    fails = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert fails[0]["t"] == 3.0
    assert fails[0]["error"] == (
        'ws://127.0.0.1:9/ws: closed with 4408 "Connection initialisation timeout" '
        "during the handshake"
    )
    assert not fails[0].get("permanent")


async def test_forbidden_and_fatal_refusals(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    summary = await run_gql(
        one_client(hold="10s", attempts=1),
        tmp_path / "a",
        FakeGraphqlWs(token="right"),
        'payload = { token = "wrong" }\n',
    )
    assert summary["totals"]["handshake_failures"] == {"close_4403_forbidden": 2}
    # 4400 is fatal for the official client: permanent here, the run stops trying
    summary = await run_gql(
        one_client(hold="60s", attempts=0), tmp_path / "b", FakeGraphqlWs(refuse=(4400, "Bad"))
    )
    tot = summary["totals"]
    assert tot["handshake_failures"] == {"close_4400_bad_request": 3}
    assert tot["reconnect_failed"] == 1
    fails = [e for e in events(tmp_path / "b") if e["event"] == "handshake_failure"]
    assert all(e["permanent"] for e in fails)


async def test_no_ack_is_an_ack_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    summary = await run_gql(
        one_client(hold="6s", attempts=1),
        tmp_path,
        FakeGraphqlWs(ack=False),
        'ack_timeout = "2s"\n',
    )
    assert summary["totals"]["handshake_failures"] == {"ack_timeout": 2}
    (first, _) = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert first["t"] == 2.0
    assert first["error"] == (
        "ws://127.0.0.1:9/ws: no connection_ack within 2s of connection_init "
        "(target.graphql_ws.ack_timeout)"
    )


async def test_a_server_that_picks_no_subprotocol(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    summary = await run_gql(one_client(hold="3s", attempts=1), tmp_path, FakeGraphqlWs(pick=False))
    assert summary["totals"]["handshake_failures"] == {"subprotocol": 2}
    (first, _) = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert first["error"] == (
        "ws://127.0.0.1:9/ws: the server chose subprotocol none; soak offered "
        "'graphql-transport-ws'"
    )


async def test_a_server_of_another_dialect_says_what_it_sent(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    engine_io = '0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000}'
    summary = await run_gql(
        one_client(hold="3s", attempts=1), tmp_path, FakeGraphqlWs(first=engine_io)
    )
    assert summary["totals"]["handshake_failures"] == {"protocol": 2}
    (first, _) = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert first["error"].startswith(
        'ws://127.0.0.1:9/ws: not a graphql-transport-ws message (not JSON): \'0{"sid"'
    )
    assert first["error"].endswith("; expected connection_ack")


async def test_live_closes_by_name_and_a_bad_message(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeGraphqlWs(live_close=(1.5, 4500, "Internal server error"))
    summary = await run_gql(one_client(hold="2s", attempts=0), tmp_path / "a", server)
    assert summary["totals"]["closes"]["server_4500_internal_server_error"] == 1
    server = FakeGraphqlWs(raw_after_ack='{"type":"hello"}')
    summary = await run_gql(one_client(hold="500ms", attempts=0), tmp_path / "b", server)
    closes = [e for e in events(tmp_path / "b") if e["event"] == "close"]
    assert closes[0]["reason"] == "client_protocol_error"
    assert closes[0]["code"] == 4004


def test_soak_server_lists_the_recipes_and_refuses_an_unknown_option() -> None:
    listed = CliRunner().invoke(cli, ["server"])
    assert listed.exit_code == 0
    lines = {line.split()[0]: line for line in listed.output.splitlines()}
    assert "options: keepalive, init_wait, token, pick_subprotocol" in lines["graphql-ws"]
    assert "graphql-ws-legacy" in lines
    res = CliRunner().invoke(cli, ["server", "graphql-ws", "--set", "keep_alive=1000"])
    assert res.exit_code == 2
    assert (
        "graphql-ws: unknown option 'keep_alive' (known: keepalive, init_wait, token, "
        "pick_subprotocol)" in res.output
    )
    assert "Traceback" not in res.output
