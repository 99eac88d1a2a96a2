"""The Pusher Channels dialect (protocol 7): messages with plain text, the
close-code ranges, the table, and runs under MockClock against a fake
server built from the protocol document's wire examples
(tests/support/fakes/pusher.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from soak.classify import FALSE_TIMEOUT, JUSTIFIED_TIMEOUT, SERVER, CloseInfo, Evidence, Verdict
from soak.config.pusher import PusherConfig, pong_heartbeat
from soak.errors import ProfileError
from soak.protocols import PROTOCOLS
from soak.protocols.base import OLDEST, SERVER_PING
from soak.protocols.pusher import (
    Pusher,
    close_action,
    close_key,
    event_of,
    pong_verdict,
    pusher_verdict,
)
from soak.run.runner import Runner
from tests.support.fakes.pusher import FakePusher
from tests.support.fakes.running import body, closes, run_fake
from tests.support.runs import make_profile

ESTABLISHED = (
    '{"event":"pusher:connection_established",'
    '"data":"{\\"socket_id\\":\\"123.456\\",\\"activity_timeout\\":120}"}'
)


def test_registered_under_its_name() -> None:
    assert PROTOCOLS["pusher"] is Pusher


def test_ping_and_pong_on_the_wire() -> None:
    p = Pusher("c")
    assert p.ping_frame(3, 0) == (1, b'{"event":"pusher:ping","data":{}}')
    assert p.max_in_flight == 1  # the pong has no id
    assert p.pong_text('{"event":"pusher:pong","data":{}}') == OLDEST
    assert p.pong_text('{"event":"pusher:pong","data":"{}"}') == OLDEST
    assert p.pong_text('{"event":"pusher:ping","data":{}}') == SERVER_PING
    assert p.answer() == (1, b'{"event":"pusher:pong","data":{}}')
    assert p.pong_text('{"event":"new-message","channel":"c","data":"{}"}') is None
    assert p.pong_text('{"event":"pusher:p') is None  # not JSON: the application's


def test_data_is_a_json_string() -> None:
    assert event_of(ESTABLISHED) == (
        "pusher:connection_established",
        {"socket_id": "123.456", "activity_timeout": 120},
    )
    with pytest.raises(ValueError, match="no event"):
        event_of('{"data":{}}')


def test_the_url_gets_protocol_7() -> None:
    p = Pusher("c")
    assert p.resource("/app/key").startswith("/app/key?protocol=7&client=soak&version=")
    assert p.resource("/app/key?x=1").startswith("/app/key?x=1&protocol=7&")
    assert p.resource("/app/key?protocol=6") == "/app/key?protocol=6"
    assert p.resource("/app/key?xprotocol=6").startswith("/app/key?xprotocol=6&protocol=7&")


def test_close_code_ranges() -> None:
    assert [close_action(c) for c in (4001, 4099, 4100, 4199, 4200, 4299, 4300, 1000, None)] == [
        "no_reconnect",
        "no_reconnect",
        "backoff",
        "backoff",
        "reconnect",
        "reconnect",
        None,
        None,
        None,
    ]
    assert close_key(4001) == "server_4001_app_does_not_exist"
    assert close_key(4150) == "server_4150_backoff"
    assert close_key(1000) is None


def ev(pong: float | None, missed: int = 0) -> Evidence:
    return Evidence(
        age=200.0,
        last_pong_age=pong,
        last_frame_age=1.0,
        consecutive_missed=missed,
        pings_pending=0,
    )


def test_4201_is_judged_by_the_last_pong() -> None:
    false = pong_verdict(ev(10.0), 120.0, 30.0)
    assert false.key == FALSE_TIMEOUT
    assert false.why == (
        "last pusher:pong 10.000s ago < the server's activity_timeout 120s + pong timeout 30s: "
        "our frames were reaching it"
    )
    just = pong_verdict(ev(151.0, 5), 120.0, 30.0)
    assert just.key == JUSTIFIED_TIMEOUT
    assert just.why == (
        "no pusher:pong for 151.000s >= the server's activity_timeout 120s + pong timeout 30s "
        "(5 missed)"
    )


def test_server_closes_say_what_the_client_should_do() -> None:
    v = Verdict("server_4200", "server")
    info = CloseInfo(SERVER, 4200, "Generic reconnect", evidence=ev(1.0))
    assert pusher_verdict(v, info, 120, 30) == Verdict(
        "server_4200_generic_reconnect",
        "server",
        "Generic reconnect; pusher: reconnect at once (4200-4299)",
    )
    gone = pusher_verdict(v, CloseInfo(SERVER, 4009, "", evidence=ev(1.0)), 120, 30)
    assert gone.key == "server_4009_unauthorized"
    assert gone.why == "pusher: do not reconnect (4000-4099)"
    other = Verdict("server_1000_normal", "server")
    assert pusher_verdict(other, CloseInfo(SERVER, 1000, "", evidence=ev(1.0)), 120, 30) is other


def test_the_table_and_its_implied_server_heartbeat() -> None:
    table = '[target.pusher]\nactivity_timeout = "2s"\npong_timeout = "1s"\n'
    profile = make_profile(body(), protocol="pusher", target_extra=table)
    cfg = PusherConfig(activity_timeout=2.0, pong_timeout=1.0)
    assert profile.target.pusher == cfg
    assert profile.target.server_heartbeat == pong_heartbeat(cfg)
    assert pong_heartbeat(cfg).close_codes == (4201,)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'activity_timeout = "0s"\n',
            "target.pusher.activity_timeout: expected a duration greater",
        ),
        ("pong_timeout = true\n", "target.pusher.pong_timeout: expected a duration"),
        ('key = "k"\n', "target.pusher.key: unknown field"),
    ],
)
def test_bad_table_values_name_the_field(table: str, message: str) -> None:
    with pytest.raises(ProfileError) as err:
        make_profile(body(), protocol="pusher", target_extra="[target.pusher]\n" + table)
    assert message in str(err.value)


# -- runs against the fake server --------------------------------------------------------

FAST = '[target.pusher]\nactivity_timeout = "2s"\npong_timeout = "1s"\n'
URL = "ws://127.0.0.1:9/app/app-key"


async def test_clients_are_held_with_no_miss_and_no_close(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakePusher(activity_timeout=2, pong_timeout=1.0)
    summary, _ = await run_fake(
        "pusher", server, body(clients=20, hold="15s"), tmp_path, table=FAST, url=URL
    )
    tot = summary["totals"]
    assert tot["connects"] == 20
    assert tot["closes"] == {"client_shutdown": 20}
    assert tot["missed"] == 0
    assert tot["held"] == 0
    assert tot["pings"] == tot["pongs"] == server.pings >= 20 * 14
    assert server.closed == []
    assert {t.split("&version=")[0] for t in server.targets} == {
        "/app/app-key?protocol=7&client=soak"
    }


async def test_a_silent_client_gets_4201_judged_justified(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # from 2.5 s nothing of ours reaches it: its ping after 2 s of our
    # silence gets no pong, 4201 a second later
    server = FakePusher(activity_timeout=2, pong_timeout=1.0, deaf_after=2.5)
    summary, evs = await run_fake(
        "pusher", server, body(hold="7s", max_missed=50, attempts=0), tmp_path, table=FAST, url=URL
    )
    (close, *_) = closes(evs)
    assert close["code"] == 4201
    assert close["reason"] == JUSTIFIED_TIMEOUT
    assert close["why"].startswith("no pusher:pong for 3.")
    assert summary["totals"]["justified_timeouts"] == 1


async def test_the_servers_ping_is_answered(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # soak's own heartbeats every 5 s, the server's activity_timeout 2 s: it
    # pings us in between and our pong keeps the connection
    server = FakePusher(activity_timeout=2, pong_timeout=1.0)
    summary, _ = await run_fake(
        "pusher", server, body(hold="9s", interval="5s"), tmp_path, table=FAST, url=URL
    )
    tot = summary["totals"]
    assert server.pongs_to_its_pings >= 2
    assert tot["server_pings"] == server.pongs_to_its_pings
    assert tot["closes"] == {"client_shutdown": 1}


async def test_a_4000_range_refusal_is_permanent(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakePusher(refuse=(4001, "App key app-key not in this cluster"))
    summary, evs = await run_fake(
        "pusher", server, body(clients=5, hold="20s", attempts=0), tmp_path, table=FAST, url=URL
    )
    tot = summary["totals"]
    assert set(tot["handshake_failures"]) == {"4001_app_does_not_exist"}
    assert tot["reconnect_failed"] == 5
    fail = next(e for e in evs if e["event"] == "handshake_failure")
    assert fail["permanent"] is True
    assert fail["error"] == (
        f"{URL}: pusher:error 4001: App key app-key not in this cluster "
        "(pusher: do not reconnect (4000-4099))"
    )


async def test_a_backoff_refusal_is_tried_again(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakePusher(refuse=(4100, "Over capacity"))
    summary, evs = await run_fake(
        "pusher", server, body(hold="3500ms", attempts=0), tmp_path, table=FAST, url=URL
    )
    tot = summary["totals"]
    assert tot["handshake_failures"] == {"4100_over_capacity": 3}  # at 0, 1 and 3 s
    assert not any(e.get("permanent") for e in evs)


async def test_a_restart_is_a_storm_every_client_comes_back_from(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakePusher(activity_timeout=2, pong_timeout=1.0)

    async def restart(runner: Runner) -> None:
        await trio.sleep(3.0)
        await server.restart(down_for=1.5)

    text = body(clients=20, hold="10s", reconnect='preset = "pusher-js"\n')
    summary, _ = await run_fake(
        "pusher", server, text, tmp_path, table=FAST, url=URL, during=restart
    )
    (storm,) = summary["storms"]
    assert storm["lost"] == 20
    assert storm["recovered"] == 20
    assert storm["gave_up"] == 0
    assert storm["start_s"] == pytest.approx(3.0, abs=0.01)
    tot = summary["totals"]
    assert tot["closes"]["server_4200_generic_reconnect"] == 20
    assert tot["reconnects"] == 20
    # pusher-js's 1 s: refused at 4 s (still down), back at 5 s
    assert server.refused == 20
    assert summary["latency_ms"]["reconnect"]["max"] == pytest.approx(2000, rel=0.01)


def test_the_impairment_proxy_knows_its_heartbeats() -> None:
    from soak.proxy.frames import kinds_of

    kind = kinds_of("pusher")
    assert kind(0x1, True, b'{"event":"pusher:ping","data":{}}') == "ping"
    assert kind(0x1, True, b'{"event":"pusher:pong","data":{}}') == "pong"
    assert kind(0x1, True, ESTABLISHED.encode()) is None


def test_the_shipped_profile_is_consistent_for_soak_doctor() -> None:
    from soak.config.load import load_profile
    from soak.doctor.consistency import check_consistency
    from soak.shipped import shipped

    (path,) = [s.path for s in shipped() if s.name == "pusher"]
    profile = load_profile(str(path), {})
    assert [f.code for f in check_consistency(profile=profile) if f.severity == "error"] == []


async def test_heartbeats_dropped_by_the_impairment_proxy_are_a_justified_4201(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakePusher(activity_timeout=2, pong_timeout=1.0)
    text = body(hold="3500ms", max_missed=50, attempts=0)
    text += '[impairment.drop_heartbeat]\np = 1.0\ndirection = "up"\n'
    _, evs = await run_fake("pusher", server, text, tmp_path, table=FAST, url=URL)
    assert server.pings == 0
    assert server.closed == [(3.0, 4201, "Pong reply not received")]
    (close, *_) = closes(evs)
    assert close["reason"] == JUSTIFIED_TIMEOUT
    assert close["why"].startswith("no pusher:pong for the whole connection >= ")
