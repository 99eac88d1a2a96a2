"""``protocol = "sockjs"``: frames, session paths and recognisers with plain
strings, the profile's [target.sockjs], the recipe's options, and runs under
MockClock against a fake server written from sockjs-node 0.3.24's
WebSocket transport (lib/trans-websocket.js): ``o``, RFC 6455 pings with a
pong wait, ``c[3000,"No response from heartbeat"]`` then close 1000, the
echo endpoint; and Spring's ``h`` frames."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, CloseConnection, Ping, Pong, Request, TextMessage

from soak.classify import CLIENT, SERVER, TRANSPORT, Classifier, CloseInfo, Evidence, Verdict
from soak.config.sockjs import SockjsConfig, implied_heartbeat, sockjs_kind
from soak.config.target import TargetConfig
from soak.errors import ProfileError
from soak.protocols import PROTOCOLS
from soak.protocols.base import SERVER_BEAT
from soak.protocols.sniff import sniff
from soak.protocols.sockjs import (
    Sockjs,
    SockjsState,
    farewell_verdict,
    parse_frame,
    session_path,
)
from soak.proxy.frames import kinds_of
from soak.servers.sockjs import SOCKJS
from soak.wsframe import OP_TEXT
from tests.support.runs import events, make_profile, one_client, run_in_memory, serving


def proto(**cfg: Any) -> Sockjs:
    return Sockjs("c1", SockjsState(TargetConfig(sockjs=SockjsConfig(**cfg))))


def test_registered_under_its_name() -> None:
    assert PROTOCOLS["sockjs"] is Sockjs
    assert proto().subprotocols() == ()


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("o", ("open", None)),
        ("h", ("heartbeat", None)),
        ('a["hello","wo\\"rld"]', ("messages", ["hello", 'wo"rld'])),
        ("a[]", ("messages", [])),
        ('c[3000,"No response from heartbeat"]', ("close", (3000, "No response from heartbeat"))),
    ],
)
def test_frames(text: str, parsed: tuple[str, Any]) -> None:
    assert parse_frame(text) == parsed


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("x", "starts with 'x'"),
        ("", "starts with ''"),
        ("a[", "bad JSON after 'a'"),
        ('a{"x":1}', "a without an array"),
        ("c[3000]", 'c without [code,"reason"]'),
        ('c["3000","x"]', 'c without [code,"reason"]'),
        ('c[true,"x"]', 'c without [code,"reason"]'),
    ],
)
def test_bad_frames_say_what_is_wrong(text: str, said: str) -> None:
    with pytest.raises(ValueError, match="not a SockJS frame") as err:
        parse_frame(text)
    assert said in str(err.value)


def test_each_connection_gets_a_new_session_under_the_prefix() -> None:
    rng = random.Random(1)
    one = session_path("/echo", rng)
    assert re.fullmatch(r"/echo/[0-9]{3}/[a-z0-9]{8}/websocket", one)
    assert session_path("/echo", rng) != one
    assert re.fullmatch(r"/[0-9]{3}/[a-z0-9]{8}/websocket", session_path("/", rng))
    assert re.fullmatch(
        r"/app/stomp/[0-9]{3}/[a-z0-9]{8}/websocket\?t=1", session_path("/app/stomp/?t=1", rng)
    )
    # a full session URL is used as it is
    assert session_path("/echo/1/abc/websocket", rng) == "/echo/1/abc/websocket"


def test_recognisers() -> None:
    p = proto(echo=True)
    assert p.client_pings
    assert p.expects_reply
    assert p.pong_text("h") == SERVER_BEAT
    opcode, data = p.ping_frame(12, 1790000000123) or (0, b"")
    assert (opcode, data) == (OP_TEXT, b'["soak:12:1790000000123"]')
    # the echo endpoint writes it back in an a frame (fast path, or batched)
    assert p.pong_text('a["soak:12:1790000000123"]') == 12
    assert p.pong_text('a["other","soak:13:5"]') == 13
    assert p.pong_text('a["soak:0:5"]') is None
    assert p.pong_text('a["hello"]') is None
    assert p.pong_text("o") is None
    assert p.pong_text("zzz") is None  # sockjs-client ignores what it cannot read, so does soak
    assert p.farewell is None
    assert p.pong_text('c[3000,"No response from heartbeat"]') is None
    assert p.farewell == (3000, "No response from heartbeat")
    p.opened()
    assert p.farewell is None
    # without echo, soak sends nothing and an a frame is the application's
    quiet = proto()
    assert not quiet.client_pings
    assert quiet.pong_text('a["soak:12:5"]') is None


def test_the_server_heartbeat_each_style_implies() -> None:
    ws = proto(heartbeat_delay=2.0, heartbeat_timeout=0.5)
    assert (ws.server_interval, ws.server_timeout, ws.silence_timeout) == (2.0, 0.5, None)
    h = proto(heartbeats="h", heartbeat_delay=25.0, heartbeat_timeout=5.0)
    assert (h.server_interval, h.server_timeout, h.silence_timeout) == (None, None, 30.0)
    sh = implied_heartbeat(None)
    assert sh is not None
    assert (sh.interval, sh.timeout, sh.close_codes) == (25.0, 10.0, ())
    assert implied_heartbeat(SockjsConfig(heartbeats="h")) is None


def ev(age: float = 5.0, beat: float | None = 0.5, pong: float | None = None) -> Evidence:
    return Evidence(
        age=age,
        last_pong_age=pong,
        last_frame_age=0.5,
        consecutive_missed=0,
        pings_pending=0,
        server_beat_age=beat,
        answered=None if pong is not None else True,
    )


def test_a_close_after_its_c_frame_is_judged_by_the_frame() -> None:
    server = implied_heartbeat(SockjsConfig(heartbeat_delay=1.0, heartbeat_timeout=0.5))
    classifier = Classifier(server)
    farewell = (3000, "No response from heartbeat")
    info = CloseInfo(SERVER, 1000, "Normal closure", evidence=ev(beat=0.5))
    plain = classifier.classify(info)
    assert plain.key == "server_1000_normal"
    v = farewell_verdict(plain, info, farewell, classifier)
    assert v.key == "justified_timeout"
    assert v.why.startswith('c[3000,"No response from heartbeat"] then close 1000: no server ')
    # its ping came just now: it could not have waited its pong wait
    early = CloseInfo(SERVER, 1000, "Normal closure", evidence=ev(beat=0.1))
    assert farewell_verdict(plain, early, farewell, classifier).key == "false_timeout"
    # the TCP end after the frame: the frame is what it said
    lost = CloseInfo(SERVER, 3000, "No response from heartbeat", "eof", evidence=ev(beat=0.5))
    assert farewell_verdict(plain, lost, farewell, classifier).why.startswith(
        'c[3000,"No response from heartbeat"]: '
    )
    # another c frame: counted by its code
    other = farewell_verdict(plain, info, (2010, "Another connection still open"), classifier)
    assert (other.key, other.why) == (
        "server_2010",
        'c[2010,"Another connection still open"] then close 1000',
    )
    # our own close, or no frame: unchanged
    mine = Verdict("client_shutdown", "client")
    assert farewell_verdict(mine, CloseInfo(CLIENT, 1000), farewell, classifier) is mine
    loss = Verdict("transport_eof", "transport")
    assert farewell_verdict(loss, CloseInfo(TRANSPORT, 1006), None, classifier) is loss


def test_the_proxy_knows_its_heartbeats() -> None:
    kind = kinds_of("sockjs")
    assert kind is sockjs_kind
    assert kind(0x9, True, b"") == "ping"
    assert kind(0xA, True, b"") == "pong"
    assert kind(0x1, True, b"h") == "ping"
    assert kind(0x1, True, b'["soak:1:2"]') == "ping"
    assert kind(0x1, True, b'a["soak:1:2"]') == "pong"
    assert kind(0x1, True, b'a["hello"]') is None
    assert kind(0x1, False, b"h") is None


def test_sniffing_names_the_dialect() -> None:
    seen = sniff("o")
    assert seen is not None
    assert seen.protocol == "sockjs"
    assert '(try protocol = "sockjs")' in seen.explain("json")


# -- the profile ------------------------------------------------------------------------

BODY = """
[[clients.stages]]
kind = "ramp"
to = 1
duration = "1s"
"""


def sockjs_profile(table: str, protocol: str = "sockjs") -> TargetConfig:
    return make_profile(BODY, protocol=protocol, target_extra="[target.sockjs]\n" + table).target


def test_the_table() -> None:
    t = sockjs_profile(
        'heartbeats = "h"\nheartbeat_delay = "5s"\nheartbeat_timeout = "2s"\n'
        'open_timeout = "3s"\necho = true\n'
    )
    assert t.sockjs == SockjsConfig("h", 5.0, 2.0, 3.0, True)
    assert t.server_heartbeat is None  # Spring times nobody out
    plain = make_profile(BODY, protocol="sockjs").target
    assert plain.server_heartbeat == implied_heartbeat(None)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('heartbeats = "ping"\n', "target.sockjs.heartbeats: expected one of ws-ping, h"),
        ('heartbeat_delay = "0s"\n', "target.sockjs.heartbeat_delay: expected a duration greater"),
        ("heartbeat_timeout = 10\n", "target.sockjs.heartbeat_timeout: expected a duration like"),
        ('echo = "yes"\n', 'target.sockjs.echo: expected true or false, got "yes"'),
        ("prefix = 1\n", "target.sockjs.prefix: unknown field"),
    ],
)
def test_bad_table_values_name_the_field(table: str, message: str) -> None:
    with pytest.raises(ProfileError) as err:
        sockjs_profile(table)
    assert message in str(err.value)
    assert str(err.value).startswith("test.toml: ")


def test_the_table_on_another_dialect_names_both() -> None:
    with pytest.raises(ProfileError) as err:
        sockjs_profile("echo = true\n", protocol="ws-ping")
    assert 'target.sockjs: is only used with protocol = "sockjs", got "ws-ping"' in str(err.value)


def test_the_recipe_options() -> None:
    env = SOCKJS.env({"heartbeat_delay": "1000", "pong_wait": "500", "heartbeats": "h"})
    assert env == {
        "PREFIX": "/echo",
        "HEARTBEAT_DELAY": "1000",
        "PONG_WAIT": "500",
        "HEARTBEATS": "h",
    }
    assert SOCKJS.url(4002) == "ws://127.0.0.1:4002/echo"
    for opts, said in (
        ({"heartbeat_delay": "1s"}, "heartbeat_delay: expected milliseconds > 0, got '1s'"),
        ({"pong_wait": "0"}, "pong_wait: expected milliseconds > 0"),
        ({"heartbeat_delay": "10000", "pong_wait": "500"}, "cannot change with heartbeat_delay"),
        ({"heartbeats": "ping"}, "heartbeats: expected ws-ping or h"),
        ({"prefix": "echo"}, "prefix: expected a path like /echo"),
    ):
        with pytest.raises(ValueError, match=re.escape(said)):
            SOCKJS.env(opts)


# -- runs against a fake server ---------------------------------------------------------

SESSION = re.compile(r"/echo/[0-9]{3}/[a-z0-9]{8}/websocket")


@dataclass
class FakeSockjs:
    """sockjs-node's WebSocket transport with an echo endpoint."""

    delay: float = 2.0  # heartbeat_delay
    wait: float = 1.0  # the pong wait (10 s in sockjs-node)
    style: str = "ws-ping"  # or "h": Spring's frames, no timeout
    ignore_pongs: bool = False  # a buggy server: our pongs never count
    beats: int | None = None  # stop beating after this many
    first: str = "o"  # what it sends first
    paths: list[str] = field(default_factory=list)
    echoed: int = 0

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
        ponged = [True]
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, Request):
                    self.paths.append(event.target)
                    await stream.send_all(ws.send(AcceptConnection()))
                    await stream.send_all(ws.send(TextMessage(self.first)))
                    if self.first == "o":
                        nursery.start_soon(self._beat, stream, ws, ponged)
                elif isinstance(event, Pong):
                    if not self.ignore_pongs:
                        ponged[0] = True
                elif isinstance(event, TextMessage):
                    messages = json.loads(event.data)
                    self.echoed += len(messages)
                    reply = "a" + json.dumps(messages, separators=(",", ":"))
                    await stream.send_all(ws.send(TextMessage(reply)))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        await stream.send_all(ws.send(event.response()))
                    return

    async def _beat(self, stream: trio.abc.Stream, ws: WSConnection, ponged: list[bool]) -> None:
        n = 0
        async with trio.open_nursery() as waits:
            while self.beats is None or n < self.beats:
                await trio.sleep(self.delay)
                n += 1
                if self.style == "h":
                    await stream.send_all(ws.send(TextMessage("h")))
                    continue
                ponged[0] = False
                await stream.send_all(ws.send(Ping(b"")))
                waits.start_soon(self._pong_wait, stream, ws, ponged)

    async def _pong_wait(
        self, stream: trio.abc.Stream, ws: WSConnection, ponged: list[bool]
    ) -> None:
        await trio.sleep(self.wait)
        if not ponged[0] and ws.state is ConnectionState.OPEN:
            frame = 'c[3000,"No response from heartbeat"]'
            await stream.send_all(ws.send(TextMessage(frame)))
            await stream.send_all(ws.send(CloseConnection(1000, "Normal closure")))


async def run_sockjs(body: str, tmp_path: Path, server: FakeSockjs, table: str) -> dict[str, Any]:
    profile = make_profile(
        body,
        url="ws://127.0.0.1:9/echo",
        results=tmp_path,
        protocol="sockjs",
        target_extra="[target.sockjs]\n" + table,
    )
    outcome, _ = await run_in_memory(profile, tmp_path, serving(server.serve))
    summary: dict[str, Any] = outcome.summary
    return summary


TABLE = 'heartbeat_delay = "2s"\nheartbeat_timeout = "1s"\n'


async def test_a_session_held_echoed_and_pinged(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeSockjs()
    summary = await run_sockjs(one_client(hold="9500ms"), tmp_path, server, TABLE + "echo = true\n")
    (path,) = server.paths
    assert SESSION.fullmatch(path), path
    tot = summary["totals"]
    assert tot["connects"] == 1
    assert tot["pings"] == tot["pongs"] == server.echoed == 10  # at 0, 1, ... 9 s
    assert tot["server_pings"] == 4  # at 2, 4, 6, 8 s, all answered
    assert tot["closes"] == {"client_shutdown": 1}


async def test_its_heartbeat_timeout_is_judged_by_its_c_frame(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # our pongs reach it but do not count: c[3000] 1 s after its first ping
    server = FakeSockjs(ignore_pongs=True)
    summary = await run_sockjs(one_client(hold="4s", attempts=1), tmp_path, server, TABLE)
    assert summary["totals"]["closes"]["justified_timeout"] == 1
    (close,) = [e for e in events(tmp_path) if e["event"] == "close" and e["t"] < 4]
    assert (close["initiator"], close["code"], close["text"]) == ("server", 1000, "Normal closure")
    assert close["evidence"]["age_s"] == 3.0
    assert close["why"].startswith('c[3000,"No response from heartbeat"] then close 1000: ')


async def test_with_echo_our_frames_getting_through_make_it_a_false_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeSockjs(ignore_pongs=True)
    summary = await run_sockjs(
        one_client(hold="4s", attempts=1), tmp_path, server, TABLE + "echo = true\n"
    )
    assert summary["totals"]["closes"]["false_timeout"] == 1
    (close,) = [e for e in events(tmp_path) if e.get("reason") == "false_timeout"]
    assert "last pong" in close["why"]


async def test_h_frames_that_stop_are_a_silence_zombie(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeSockjs(style="h", beats=2)
    table = 'heartbeats = "h"\nheartbeat_delay = "2s"\nheartbeat_timeout = "1s"\n'
    summary = await run_sockjs(one_client(hold="8s", attempts=1), tmp_path, server, table)
    tot = summary["totals"]
    assert tot["server_pings"] >= 2
    assert tot["closes"]["client_zombie"] == 1
    (zombie,) = [e for e in events(tmp_path) if e.get("reason") == "client_zombie"]
    assert zombie["t"] == 7.0  # the last h at 4 s, + 2 s + 1 s


async def test_a_c_frame_instead_of_o_is_a_handshake_failure(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeSockjs(first='c[2010,"Another connection still open"]')
    summary = await run_sockjs(one_client(hold="2s", attempts=1), tmp_path, server, TABLE)
    assert summary["totals"]["handshake_failures"] == {"close_2010": 2}
    fail = next(e for e in events(tmp_path) if e["event"] == "handshake_failure")
    assert 'c[2010,"Another connection still open"] instead of the open frame o' in fail["error"]


async def test_another_dialect_is_named(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeSockjs(first='{"type":"welcome"}')
    summary = await run_sockjs(one_client(hold="2s", attempts=1), tmp_path, server, TABLE)
    assert summary["totals"]["handshake_failures"] == {"protocol": 2}
    fail = next(e for e in events(tmp_path) if e["event"] == "handshake_failure")
    assert '(try protocol = "actioncable")' in fail["error"]
