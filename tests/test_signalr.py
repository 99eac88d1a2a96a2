"""The SignalR dialect (JSON hub protocol): records with plain text, the
table, and runs under MockClock against a fake hub built from the
specification's wire examples (tests/support/fakes/signalr.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from soak.classify import (
    CLIENT,
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    SERVER,
    TRANSPORT,
    CloseInfo,
    Evidence,
    Verdict,
)
from soak.config.signalr import SignalrConfig, client_timeout_heartbeat
from soak.errors import ProfileError
from soak.protocols import PROTOCOLS
from soak.protocols.base import SERVER_BEAT
from soak.protocols.signalr import (
    HANDSHAKE,
    Signalr,
    client_timeout_verdict,
    handshake_answer,
    records,
)
from soak.run.runner import Runner
from tests.support.fakes.running import body, closes, run_fake
from tests.support.fakes.signalr import FakeSignalr
from tests.support.runs import make_profile

RS = "\x1e"


def test_registered_under_its_name() -> None:
    assert PROTOCOLS["signalr"] is Signalr


def test_the_handshake_and_the_ping_on_the_wire() -> None:
    assert HANDSHAKE == '{"protocol":"json","version":1}\x1e'
    p = Signalr("c")
    assert p.ping_frame(5, 0) == (1, b'{"type":6}\x1e')
    assert p.expects_reply is False  # nobody answers a ping
    assert p.client_pings is True
    assert p.silence_timeout == 30.0  # the JS client's serverTimeout


def test_records_split_on_the_separator() -> None:
    assert records('{"type":6}\x1e{"type":1,"target":"x","arguments":[]}\x1e') == [
        {"type": 6},
        {"type": 1, "target": "x", "arguments": []},
    ]
    with pytest.raises(ValueError, match="no 0x1e at the end"):
        records('{"type":6}')
    with pytest.raises(ValueError, match="not JSON"):
        records("nope\x1e")


def test_the_handshake_answer() -> None:
    assert handshake_answer("{}\x1e") == (None, 0)
    assert handshake_answer('{}\x1e{"type":6}\x1e') == (None, 1)
    error = "Requested protocol 'messagepack' is not available."
    assert handshake_answer('{"error":"' + error + '"}\x1e') == (error, 0)
    with pytest.raises(ValueError, match="not a SignalR handshake response"):
        handshake_answer('{"type":6}\x1e')


def test_the_hubs_ping_is_a_beat_alone_or_among_other_records() -> None:
    p = Signalr("c")
    assert p.pong_text('{"type":6}\x1e') == SERVER_BEAT
    assert p.pong_text('{"type":1,"target":"m","arguments":[1]}\x1e{"type":6}\x1e') == SERVER_BEAT
    assert p.pong_text('{"type":1,"target":"m","arguments":[1]}\x1e') is None
    assert p.pong_text("not signalr") is None
    assert p.farewell is None


def test_a_close_message_is_the_hubs_farewell() -> None:
    p = Signalr("c")
    assert p.pong_text('{"type":7,"error":"Boom","allowReconnect":true}\x1e') is None
    assert p.farewell == (1000, "Boom")
    assert (p.error, p.allow_reconnect) == ("Boom", True)
    v = p.judge(Verdict("transport_eof", "transport"), CloseInfo(TRANSPORT, 1006, "", "eof", None))
    assert (v.key, v.why) == ("server_signalr_close", "Boom (allowReconnect)")
    p.opened()
    assert p.farewell is None
    assert p.error is None


def ev(sent: float | None) -> Evidence:
    return Evidence(
        age=40.0,
        last_pong_age=None,
        last_frame_age=1.0,
        consecutive_missed=0,
        pings_pending=0,
        last_sent_age=sent,
    )


def test_the_client_timeout_is_judged_by_what_the_client_sent() -> None:
    false = client_timeout_verdict(ev(2.0), 30.0)
    assert (false.key, false.why) == (
        FALSE_TIMEOUT,
        "the client last sent 2.000s ago < the hub's client timeout 30s",
    )
    just = client_timeout_verdict(ev(31.0), 30.0)
    assert (just.key, just.why) == (
        JUSTIFIED_TIMEOUT,
        "the client sent nothing for 31.000s >= the hub's client timeout 30s",
    )


def test_which_ends_carry_the_client_timeout_signature() -> None:
    p = Signalr("c")
    plain = Verdict("server_1000_normal", "server")
    # quiet that long: the timeout, whatever the hub said
    assert p.judge(plain, CloseInfo(SERVER, 1000, "", evidence=ev(30.0))).key == JUSTIFIED_TIMEOUT
    # a reason that says so, though we were sending
    said = CloseInfo(SERVER, 1011, "Client timeout elapsed", evidence=ev(1.0))
    assert p.judge(plain, said).key == FALSE_TIMEOUT
    # neither: as classified
    assert p.judge(plain, CloseInfo(SERVER, 1000, "", evidence=ev(1.0))) is plain
    ours = Verdict("client_zombie", "client")
    assert p.judge(ours, CloseInfo(CLIENT, 1001, "", cause="zombie", evidence=ev(40))) is ours


def test_the_table_and_its_implied_server_heartbeat() -> None:
    table = '[target.signalr]\nkeep_alive = "1s"\nclient_timeout = "2s"\nserver_timeout = "2s"\n'
    profile = make_profile(body(), protocol="signalr", target_extra=table)
    cfg = SignalrConfig(keep_alive=1.0, client_timeout=2.0, server_timeout=2.0)
    assert profile.target.signalr == cfg
    assert profile.target.server_heartbeat == client_timeout_heartbeat(cfg)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('keep_alive = "soon"\n', 'target.signalr.keep_alive: expected a duration like "30s"'),
        ("client_timeout = 30\n", "target.signalr.client_timeout: expected a duration"),
        (
            'server_timeout = "10s"\n',
            "target.signalr.server_timeout: expected more than keep_alive (15s)",
        ),
        ("negotiate = true\n", "target.signalr.negotiate: unknown field"),
    ],
)
def test_bad_table_values_name_the_field(table: str, message: str) -> None:
    with pytest.raises(ProfileError) as err:
        make_profile(body(), protocol="signalr", target_extra="[target.signalr]\n" + table)
    assert message in str(err.value)


# -- runs against the fake hub -----------------------------------------------------------

FAST = '[target.signalr]\nkeep_alive = "1s"\nclient_timeout = "2s"\nserver_timeout = "2500ms"\n'


async def test_clients_are_held_with_no_close(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # the hub pings every 1 s of its own silence and drops a client quiet for
    # 2 s; soak beats every 1 s and gives the hub up after 2.5 s of silence
    server = FakeSignalr(keep_alive=1.0, client_timeout=2.0, ping_with_handshake=True)
    summary, _ = await run_fake(
        "signalr", server, body(clients=20, hold="15s"), tmp_path, table=FAST
    )
    tot = summary["totals"]
    assert tot["connects"] == 20
    assert tot["closes"] == {"client_shutdown": 20}
    assert tot["missed"] == 0
    assert tot["pongs"] == 0  # one-way: nothing to answer, nothing missed
    assert tot["pings"] == server.client_pings >= 20 * 14
    assert tot["server_pings"] >= 20 * 14  # the hub's beats (one came with the handshake)
    assert tot["zombies"] == 0
    assert server.handshakes == [{"protocol": "json", "version": 1}] * 20
    assert server.closed == []


async def test_a_quiet_client_is_dropped_and_the_timeout_is_justified(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # soak beats every 3 s, the hub drops a client quiet for 2 s
    server = FakeSignalr(keep_alive=1.0, client_timeout=2.0)
    text = body(hold="2500ms", interval="3s", attempts=0)
    summary, evs = await run_fake("signalr", server, text, tmp_path, table=FAST)
    (close, *_) = closes(evs)
    assert close["reason"] == JUSTIFIED_TIMEOUT
    assert close["why"].startswith("the client sent nothing for 2.")
    assert close["why"].endswith(">= the hub's client timeout 2s")
    assert server.closed[0][1:] == (1000, "")
    assert summary["totals"]["justified_timeouts"] == 1


async def test_a_silent_hub_is_a_zombie(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # the hub never pings: after 2.5 s without a message soak gives it up,
    # as the JS client does after its serverTimeout
    server = FakeSignalr(keep_alive=1.0, client_timeout=60.0, pings=False)
    _summary, evs = await run_fake(
        "signalr", server, body(hold="3s", attempts=0), tmp_path, table=FAST
    )
    (close, *_) = closes(evs)
    assert close["reason"] == "client_zombie"
    assert close["evidence"]["age_s"] == 2.5


async def test_a_refused_protocol_is_permanent(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeSignalr(protocols=("messagepack",))
    summary, evs = await run_fake(
        "signalr", server, body(clients=5, hold="20s", attempts=0), tmp_path, table=FAST
    )
    tot = summary["totals"]
    assert set(tot["handshake_failures"]) == {"handshake_error"}
    assert tot["reconnect_failed"] == 5
    fail = next(e for e in evs if e["event"] == "handshake_failure")
    assert fail["permanent"] is True
    assert fail["error"] == (
        "ws://127.0.0.1:9/ws: the hub refused the handshake: "
        "Requested protocol 'json' is not available."
    )


async def test_a_restart_is_a_storm_and_the_preset_retries_as_the_js_client(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeSignalr(keep_alive=1.0, client_timeout=2.0)

    async def restart(runner: Runner) -> None:
        await trio.sleep(3.0)
        await server.restart(down_for=1.0)

    text = body(clients=20, hold="10s", reconnect='preset = "signalr"\n')
    summary, evs = await run_fake("signalr", server, text, tmp_path, table=FAST, during=restart)
    (storm,) = summary["storms"]
    assert storm["lost"] == 20
    assert storm["recovered"] == 20
    assert storm["start_s"] == pytest.approx(3.0, abs=0.01)
    tot = summary["totals"]
    # the hub's goodbye said why: no timeout in it, and we were sending
    assert tot["closes"]["server_signalr_close"] == 20
    assert "justified_timeout" not in tot["closes"]
    gone = [e for e in closes(evs) if e["reason"] == "server_signalr_close"]
    assert gone[0]["why"] == "Server is shutting down. (allowReconnect)"
    # withAutomaticReconnect: at once (refused: the hub is down), 2 s later back
    assert tot["reconnects"] == 20
    assert server.refused == 20
    assert summary["latency_ms"]["reconnect"]["min"] == pytest.approx(2000, rel=0.01)


def test_the_impairment_proxy_knows_its_heartbeats() -> None:
    from soak.proxy.frames import kinds_of

    kind = kinds_of("signalr")
    assert kind(0x1, True, b'{"type":6}\x1e') == "ping"
    assert kind(0x1, True, b'{"type":1,"target":"m","arguments":[]}\x1e') is None


async def test_the_preset_gives_up_after_four_retries_as_the_js_client(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # the hub goes away for good at 3 s: retries after 0, 2, 10 and 30 s, then none
    server = FakeSignalr(keep_alive=1.0, client_timeout=2.0)

    async def gone(runner: Runner) -> None:
        await trio.sleep(3.0)
        await server.restart(down_for=3600.0)

    text = body(clients=3, hold="60s", reconnect='preset = "signalr"\n')
    summary, evs = await run_fake("signalr", server, text, tmp_path, table=FAST, during=gone)
    tot = summary["totals"]
    assert tot["reconnect_attempts"] == 3 * 4
    assert tot["reconnect_failed"] == 3
    assert server.refused == 3 * 4
    tries = sorted({e["t"] for e in evs if e["event"] == "handshake_failure"})
    assert tries == pytest.approx([3.0, 5.0, 15.0, 45.0], abs=0.01)


def test_the_shipped_profile_is_consistent_for_soak_doctor() -> None:
    from soak.config.load import load_profile
    from soak.doctor.consistency import check_consistency
    from soak.shipped import shipped

    (path,) = [s.path for s in shipped() if s.name == "signalr"]
    profile = load_profile(str(path), {})
    assert [f.code for f in check_consistency(profile=profile) if f.severity == "error"] == []
