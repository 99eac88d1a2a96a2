"""The Centrifugo dialect (protocol v2, JSON): commands and replies with
plain text, the table, and runs under MockClock against a fake server
built from the protocol's wire examples (tests/support/fakes/centrifugo.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from soak.classify import FALSE_TIMEOUT, JUSTIFIED_TIMEOUT, SERVER, CloseInfo, Verdict
from soak.config.centrifugo import CentrifugoConfig, no_pong_heartbeat
from soak.config.target import Secret, TargetConfig
from soak.errors import HandshakeError, ProfileError
from soak.protocols import PROTOCOLS
from soak.protocols.base import SERVER_BEAT, SERVER_PING
from soak.protocols.centrifugo import (
    Centrifugo,
    CentrifugoState,
    connect_command,
    named_refusal,
    replies,
    terminal,
)
from soak.run.runner import Runner
from tests.support.fakes.centrifugo import FakeCentrifugo
from tests.support.fakes.running import body, closes, run_fake
from tests.support.runs import make_profile


def test_registered_under_its_name() -> None:
    assert PROTOCOLS["centrifugo"] is Centrifugo


def test_the_server_pings_and_the_client_answers() -> None:
    p = Centrifugo("c")
    assert p.client_pings is False
    assert p.pong_text("{}") == SERVER_PING
    assert p.answer() == (1, b"{}")
    # several replies in one frame, newline separated
    assert p.pong_text('{"push":{"channel":"x","pub":{"data":1}}}\n{}') == SERVER_PING
    assert p.pong_text('{"push":{"channel":"x","pub":{"data":{}}}}') is None
    p.pong = False  # the connect reply said pong: false: nothing to answer
    assert p.pong_text("{}") == SERVER_BEAT


def test_the_connect_command() -> None:
    assert connect_command("soak", None) == '{"id":1,"connect":{"name":"soak"}}'
    assert connect_command("js", "t") == '{"id":1,"connect":{"token":"t","name":"js"}}'
    target = TargetConfig(token=Secret("jwt"))
    assert CentrifugoState(target).connect_text == (
        '{"id":1,"connect":{"token":"jwt","name":"soak"}}'
    )


def test_replies_split_on_newlines() -> None:
    assert replies('{"id":1,"connect":{}}\n{}\n') == [{"id": 1, "connect": {}}, {}]
    with pytest.raises(ValueError, match="not JSON"):
        replies("{}\nnope")


def test_the_connect_reply_teaches_the_ping_interval_and_pong() -> None:
    p = Centrifugo("c")
    reply = {"id": 1, "connect": {"client": "abc", "version": "5.4.9", "ping": 3, "pong": True}}
    p._connected(reply, "ws://x")
    assert (p.client, p.server_version, p.server_interval, p.pong) == ("abc", "5.4.9", 3.0, True)
    assert p.server_timeout == 10.0  # centrifuge-js's maxServerPingDelay


def test_connect_errors_are_refusals() -> None:
    p = Centrifugo("c")
    with pytest.raises(HandshakeError) as err:
        p._connected({"id": 1, "error": {"code": 101, "message": "unauthorized"}}, "ws://x")
    assert (err.value.cause, err.value.permanent) == ("connect_error_101", True)
    assert str(err.value) == "ws://x: the connect command was refused: 101 unauthorized"
    with pytest.raises(HandshakeError) as err:
        p._connected({"id": 1, "error": {"code": 100, "message": "internal"}}, "ws://x")
    assert err.value.permanent is False


def test_terminal_disconnects_during_the_connect_are_permanent() -> None:
    assert [terminal(c) for c in (3000, 3012, 3499, 3500, 3999, 4500, 4999, None)] == [
        False,
        False,
        False,
        True,
        True,
        True,
        True,
        False,
    ]
    named = named_refusal(HandshakeError("close_3500", 'closed with 3500 "invalid token"'))
    assert (named.cause, named.permanent) == ("3500_invalid_token", True)
    kept = HandshakeError("eof", "x")
    assert named_refusal(kept) is kept


def test_server_closes_are_named() -> None:
    p = Centrifugo("c")
    v = p.judge(Verdict("server_3001", "server"), CloseInfo(SERVER, 3001, "shutdown"))
    assert v == Verdict("server_3001_shutdown", "server", "shutdown; centrifugo: reconnect")
    v = p.judge(Verdict("server_3503", "server"), CloseInfo(SERVER, 3503, ""))
    assert (v.key, v.why) == ("server_3503_force_disconnect", "no reconnect")


def test_the_table_and_its_implied_server_heartbeat() -> None:
    table = '[target.centrifugo]\nname = "probe"\nping_interval = "2s"\npong_timeout = "1s"\n'
    profile = make_profile(body(), protocol="centrifugo", target_extra=table)
    cfg = CentrifugoConfig(name="probe", ping_interval=2.0, pong_timeout=1.0)
    assert profile.target.centrifugo == cfg
    assert profile.target.server_heartbeat == no_pong_heartbeat(cfg)
    assert no_pong_heartbeat(cfg).close_codes == (3012,)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('name = ""\n', 'target.centrifugo.name: expected a client name like "soak"'),
        ("name = 3\n", "target.centrifugo.name: expected a string, got 3"),
        ('pong_timeout = "-1s"\n', "target.centrifugo.pong_timeout: expected a duration of zero"),
        ('token = "t"\n', "target.centrifugo.token: unknown field"),
    ],
)
def test_bad_table_values_name_the_field(table: str, message: str) -> None:
    with pytest.raises(ProfileError) as err:
        make_profile(body(), protocol="centrifugo", target_extra="[target.centrifugo]\n" + table)
    assert message in str(err.value)


# -- runs against the fake server --------------------------------------------------------

FAST = '[target.centrifugo]\nping_interval = "1s"\npong_timeout = "500ms"\n'
FAST += 'max_server_ping_delay = "1s"\n'
URL = "ws://127.0.0.1:9/connection/websocket"


async def test_clients_are_held_with_no_close(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeCentrifugo(ping_interval=1, pong_timeout=0.5, token="jwt")
    summary, _ = await run_fake(
        "centrifugo",
        server,
        body(clients=20, hold="15s"),
        tmp_path,
        table='token_env = "CF_TOKEN"\n' + FAST,
        url=URL,
        environ={"CF_TOKEN": "jwt"},
    )
    tot = summary["totals"]
    assert tot["connects"] == 20
    assert tot["closes"] == {"client_shutdown": 20}
    assert tot["pings"] == 0  # the server pings in this protocol
    assert tot["server_pings"] == server.pongs >= 20 * 14
    assert tot["server_missed"] == 0
    assert server.closed == []
    assert server.connects == [{"token": "jwt", "name": "soak"}] * 20


async def test_a_lost_answer_is_3012_no_pong_judged_justified(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # from 2.5 s our answers are lost on the way: its ping at 3 s goes
    # unanswered, 3012 "no pong" 0.5 s later
    server = FakeCentrifugo(ping_interval=1, pong_timeout=0.5, deaf_after=2.5)
    summary, evs = await run_fake(
        "centrifugo", server, body(hold="5s", attempts=0), tmp_path, table=FAST, url=URL
    )
    (close, *_) = closes(evs)
    assert (close["code"], close["text"]) == (3012, "no pong")
    assert close["reason"] == JUSTIFIED_TIMEOUT
    assert close["why"].startswith("no server ping for 0.5")
    assert summary["totals"]["justified_timeouts"] == 1


async def test_3012_despite_answers_is_false(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # a buggy server that does not count our answers but closes before its
    # own pong timeout has passed since its last ping
    server = FakeCentrifugo(ping_interval=1, pong_timeout=0.5, ignore_pongs=True)
    table = FAST.replace('pong_timeout = "500ms"', 'pong_timeout = "2s"')
    _summary, evs = await run_fake(
        "centrifugo", server, body(hold="3s", attempts=0), tmp_path, table=table, url=URL
    )
    (close, *_) = closes(evs)
    assert close["code"] == 3012
    assert close["reason"] == FALSE_TIMEOUT
    assert close["why"].startswith("last server ping 0.500s ago < its pong timeout 2s")


async def test_a_server_that_stops_pinging_is_a_zombie(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # it says ping every 1 s but never pings: after 1 + 1 s soak drops it, as
    # centrifuge-js after maxServerPingDelay
    server = FakeCentrifugo(ping_interval=1, pong_timeout=0.5)
    server._pings = _never  # type: ignore[method-assign]
    summary, evs = await run_fake(
        "centrifugo", server, body(hold="2500ms", attempts=0), tmp_path, table=FAST, url=URL
    )
    (close, *_) = closes(evs)
    assert close["reason"] == "client_zombie"
    assert close["evidence"]["age_s"] == 2.0
    assert summary["totals"]["server_missed"] == 1


async def _never(conn: object) -> None:
    await trio.sleep_forever()


async def test_a_bad_token_is_refused_for_good(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeCentrifugo(token="right")
    summary, evs = await run_fake(
        "centrifugo",
        server,
        body(clients=5, hold="20s", attempts=0),
        tmp_path,
        table=FAST,
        url=URL,
    )
    tot = summary["totals"]
    assert set(tot["handshake_failures"]) == {"connect_error_101"}
    assert tot["reconnect_failed"] == 5
    fail = next(e for e in evs if e["event"] == "handshake_failure")
    assert fail["permanent"] is True


async def test_a_restart_is_a_storm_every_client_comes_back_from(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeCentrifugo(ping_interval=1, pong_timeout=0.5)

    async def restart(runner: Runner) -> None:
        await trio.sleep(3.0)
        await server.restart(down_for=1.0)

    text = body(clients=20, hold="30s", reconnect='preset = "centrifuge"\n')
    summary, _evs = await run_fake(
        "centrifugo", server, text, tmp_path, table=FAST, url=URL, during=restart
    )
    (storm,) = summary["storms"]
    assert storm["lost"] == 20
    assert storm["recovered"] == 20
    assert storm["gave_up"] == 0
    assert storm["start_s"] == pytest.approx(3.0, abs=0.01)
    tot = summary["totals"]
    assert tot["closes"]["server_3001_shutdown"] == 20
    assert tot["reconnects"] == 20
    # full jitter over [0.5 s, 1 s] then [0.5, 1.5]...: spread, never all at once
    rec = summary["latency_ms"]["reconnect"]
    assert rec["count"] == 20
    assert rec["min"] >= 500 * 0.99
    assert rec["max"] > rec["min"]


def test_the_impairment_proxy_knows_its_heartbeats() -> None:
    from soak.proxy.frames import kinds_of

    kind = kinds_of("centrifugo")
    assert kind(0x1, True, b"{}") == "ping"
    assert kind(0x1, True, b'{"id":1,"connect":{}}') is None


def test_the_shipped_profile_is_consistent_for_soak_doctor() -> None:
    from soak.config.load import load_profile
    from soak.doctor.consistency import check_consistency
    from soak.shipped import shipped

    (path,) = [s.path for s in shipped() if s.name == "centrifugo"]
    profile = load_profile(str(path), {})
    assert [f.code for f in check_consistency(profile=profile) if f.severity == "error"] == []


async def test_answers_dropped_by_the_impairment_proxy_are_a_justified_3012(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # the server's {} comes down, our {} is dropped on the way up
    server = FakeCentrifugo(ping_interval=1, pong_timeout=0.5)
    text = body(hold="1800ms", attempts=0)
    text += '[impairment.drop_heartbeat]\np = 1.0\ndirection = "up"\n'
    summary, evs = await run_fake("centrifugo", server, text, tmp_path, table=FAST, url=URL)
    assert server.pongs == 0
    assert server.closed[0] == (1.5, 3012, "no pong")
    (close, *_) = closes(evs)
    assert close["reason"] == JUSTIFIED_TIMEOUT
    assert close["why"] == (
        "no server ping for 0.500s >= its pong timeout 0.5s; its pings answered by the "
        "client, the last answer sent 0.500s ago"
    )
    assert summary["totals"]["server_pings"] == 1
