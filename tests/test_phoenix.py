"""The Phoenix Channels dialect: the V2 messages with plain text, the
table, and runs under MockClock against a fake endpoint built from the
protocol's wire examples (tests/support/fakes/phoenix.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from soak.classify import (
    CATEGORY_HEARTBEAT,
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    SERVER,
    CloseInfo,
    Evidence,
    Verdict,
)
from soak.config.phoenix import PhoenixConfig, idle_heartbeat
from soak.errors import ProfileError
from soak.protocols import PROTOCOLS
from soak.protocols.base import NO_HEARTBEAT
from soak.protocols.phoenix import (
    Phoenix,
    PhoenixState,
    idle_verdict,
    join_message,
    phoenix_verdict,
    with_vsn,
)
from soak.run.runner import Runner
from tests.support.fakes.phoenix import FakePhoenix
from tests.support.fakes.running import body, closes, run_fake
from tests.support.runs import make_profile

# the wire examples of the specification
HEARTBEAT = '[null,"12","phoenix","heartbeat",{}]'
REPLY = '[null,"12","phoenix","phx_reply",{"response":{},"status":"ok"}]'
REPLY_OTHER_ORDER = '[null,"12","phoenix","phx_reply",{"status":"ok","response":{}}]'
JOIN_REPLY = '["1","1","room:lobby","phx_reply",{"response":{},"status":"ok"}]'


def test_registered_under_its_name() -> None:
    assert PROTOCOLS["phoenix"] is Phoenix


def test_the_heartbeat_is_on_topic_phoenix_with_the_seq_as_ref() -> None:
    assert Phoenix("c").ping_frame(12, 0) == (1, HEARTBEAT.encode())


@pytest.mark.parametrize("text", [REPLY, REPLY_OTHER_ORDER])
def test_the_reply_on_our_ref_answers_that_heartbeat(text: str) -> None:
    assert Phoenix("c").pong_text(text) == 12


def test_a_reply_with_spaces_or_an_error_status_still_answers_its_ref() -> None:
    p = Phoenix("c")
    assert p.pong_text('[null, "7", "phoenix", "phx_reply", {"status": "ok", "response": {}}]') == 7
    assert p.pong_text('[null,"8","phoenix","phx_reply",{"status":"error","response":{}}]') == 8
    # a ref no heartbeat can have is an unknown pong, not a sentinel
    assert p.pong_text('[null,"0","phoenix","phx_reply",{"status":"ok","response":{}}]') == (
        NO_HEARTBEAT
    )


@pytest.mark.parametrize(
    "text",
    [
        JOIN_REPLY,
        '["1",null,"room:lobby","new_msg",{"body":"phoenix"}]',
        '[null,"3","phoenix","heartbeat",{}]',
        "not json phoenix phx_reply",
        '{"topic":"phoenix","event":"phx_reply","payload":{},"ref":"1"}',
    ],
)
def test_channel_traffic_and_v1_messages_are_not_heartbeats(text: str) -> None:
    assert Phoenix("c").pong_text(text) is None


def test_the_url_gets_vsn_2_unless_it_names_one() -> None:
    assert with_vsn("/socket/websocket") == "/socket/websocket?vsn=2.0.0"
    assert with_vsn("/socket/websocket?token=x") == "/socket/websocket?token=x&vsn=2.0.0"
    assert with_vsn("/socket/websocket?vsn=1.0.0") == "/socket/websocket?vsn=1.0.0"


def test_the_join_message() -> None:
    assert join_message("room:lobby", None) == '["1","1","room:lobby","phx_join",{}]'
    assert join_message("room:1", {"token": "t"}) == '["1","1","room:1","phx_join",{"token":"t"}]'


def ev(**kw: object) -> Evidence:
    base: dict[str, object] = dict(
        age=10.0, last_pong_age=None, last_frame_age=1.0, consecutive_missed=0, pings_pending=0
    )
    base.update(kw)
    return Evidence(**base)  # type: ignore[arg-type]


def test_the_idle_close_is_judged_by_the_last_heartbeat_reply() -> None:
    false = idle_verdict(ev(last_pong_age=1.0, last_sent_age=1.0), 3.0)
    assert false.key == FALSE_TIMEOUT
    assert false.why.startswith("last heartbeat reply 1.000s ago < the endpoint's idle timeout 3s")
    just = idle_verdict(ev(last_pong_age=3.5, last_sent_age=3.5, consecutive_missed=3), 3.0)
    assert just.key == JUSTIFIED_TIMEOUT
    assert just.why == (
        "no heartbeat reply for 3.500s >= the endpoint's idle timeout 3s "
        "(3 missed; sent: the last 3.500s ago)"
    )


def test_only_1002_with_an_empty_reason_is_the_idle_timeout() -> None:
    v = Verdict("justified_timeout", CATEGORY_HEARTBEAT)
    e = ev(last_pong_age=0.5)
    assert phoenix_verdict(v, CloseInfo(SERVER, 1002, "", evidence=e), 3.0).key == FALSE_TIMEOUT
    other = phoenix_verdict(v, CloseInfo(SERVER, 1002, "bad frame", evidence=e), 3.0)
    assert (other.key, other.why) == ("server_1002_protocol_error", "bad frame")
    kept = Verdict("server_1011_internal_error", "server")
    assert phoenix_verdict(kept, CloseInfo(SERVER, 1011, "", evidence=e), 3.0) is kept


def test_the_table_and_its_implied_server_heartbeat() -> None:
    profile = make_profile(
        body(),
        protocol="phoenix",
        target_extra='[target.phoenix]\ntopic = "room:lobby"\npayload = { a = 1 }\n'
        'idle_timeout = "3s"\n',
    )
    assert profile.target.phoenix == PhoenixConfig(
        topic="room:lobby", payload={"a": 1}, idle_timeout=3.0
    )
    assert profile.target.server_heartbeat == idle_heartbeat(3.0)
    plain = make_profile(body(), protocol="phoenix")
    assert plain.target.server_heartbeat == idle_heartbeat(60.0)
    assert PhoenixState(plain.target).join_text is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('topic = ""\n', 'target.phoenix.topic: expected a channel topic like "room:lobby"'),
        ("payload = 3\n", "target.phoenix.payload: expected a table (phx_join's payload), got 3"),
        ("payload = { a = 1 }\n", "target.phoenix.payload: is phx_join's payload: set topic too"),
        ('idle_timeout = "0s"\n', "target.phoenix.idle_timeout: expected a duration greater"),
        ("join = 1\n", "target.phoenix.join: unknown field"),
    ],
)
def test_bad_table_values_name_the_field(table: str, message: str) -> None:
    with pytest.raises(ProfileError) as err:
        make_profile(body(), protocol="phoenix", target_extra="[target.phoenix]\n" + table)
    assert message in str(err.value)


def test_the_table_on_another_dialect_names_both() -> None:
    with pytest.raises(ProfileError) as err:
        make_profile(body(), protocol="json", target_extra='[target.phoenix]\ntopic = "a"\n')
    assert 'target.phoenix: is only used with protocol = "phoenix"' in str(err.value)


# -- runs against the fake endpoint ------------------------------------------------------


async def test_clients_are_held_with_no_miss_and_no_close(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakePhoenix(idle_timeout=3.0)
    table = (
        '[target.phoenix]\ntopic = "room:lobby"\npayload = { user = "soak" }\nidle_timeout = "3s"\n'
    )
    summary, _evs = await run_fake(
        "phoenix",
        server,
        body(clients=20, hold="15s"),
        tmp_path,
        table=table,
        url="ws://127.0.0.1:9/socket/websocket",
    )
    tot = summary["totals"]
    assert tot["connects"] == 20
    assert tot["missed"] == 0
    assert tot["pings"] == tot["pongs"] == server.heartbeats >= 20 * 14
    assert tot["closes"] == {"client_shutdown": 20}
    assert server.closed == []  # never idle: a heartbeat every second
    assert set(server.targets) == {"/socket/websocket?vsn=2.0.0"}
    assert server.joins == [("room:lobby", {"user": "soak"})] * 20


async def test_a_silent_client_gets_the_idle_close_judged_justified(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # from 2.5 s our heartbeats are lost on the way: the endpoint closes 1002
    # 3 s after the last one it got (at 2 s: 5 s)
    server = FakePhoenix(idle_timeout=3.0, deaf_after=2.5)
    summary, evs = await run_fake(
        "phoenix",
        server,
        body(hold="6s", max_missed=50, attempts=0),
        tmp_path,
        table='[target.phoenix]\nidle_timeout = "3s"\n',
    )
    (close, *_) = closes(evs)
    assert server.closed[0][1:] == (1002, "")
    assert close["reason"] == JUSTIFIED_TIMEOUT
    assert close["initiator"] == "server"
    assert close["code"] == 1002
    assert close["why"].startswith("no heartbeat reply for 3.")
    assert ">= the endpoint's idle timeout 3s" in close["why"]
    assert summary["totals"]["justified_timeouts"] >= 1


async def test_an_idle_close_despite_replies_is_false(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # a buggy endpoint whose idle timer does not see heartbeats: it replies,
    # then closes 3 s after the upgrade
    server = FakePhoenix(idle_timeout=3.0, ignore_heartbeats=True)
    _summary, evs = await run_fake(
        "phoenix",
        server,
        body(hold="3500ms", attempts=0),
        tmp_path,
        table='[target.phoenix]\nidle_timeout = "3s"\n',
    )
    (close, *_) = closes(evs)
    assert close["reason"] == FALSE_TIMEOUT
    assert close["evidence"]["age_s"] == 3.0
    assert "< the endpoint's idle timeout 3s: our heartbeats were reaching it" in close["why"]


async def test_a_refused_join_is_a_handshake_failure(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakePhoenix(refuse_join="unauthorized")
    summary, evs = await run_fake(
        "phoenix",
        server,
        body(hold="3s", attempts=1),
        tmp_path,
        table='[target.phoenix]\ntopic = "room:secret"\n',
    )
    assert summary["totals"]["handshake_failures"] == {"join_refused": 2}
    fail = next(e for e in evs if e["event"] == "handshake_failure")
    assert fail["error"] == (
        "ws://127.0.0.1:9/ws: the join of 'room:secret' was refused (status 'error'): unauthorized"
    )


async def test_a_restart_is_a_storm_every_client_comes_back_from(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakePhoenix(idle_timeout=60.0)

    async def restart(runner: Runner) -> None:
        await trio.sleep(3.0)
        await server.restart(down_for=1.5)

    summary, _evs = await run_fake(
        "phoenix",
        server,
        body(clients=20, hold="12s", attempts=0, reconnect='preset = "phoenix"\n'),
        tmp_path,
        during=restart,
    )
    (storm,) = summary["storms"]
    assert storm["lost"] == 20
    assert storm["recovered"] == 20
    assert storm["gave_up"] == 0
    assert storm["start_s"] == pytest.approx(3.0, abs=0.01)
    tot = summary["totals"]
    assert tot["closes"]["transport_eof"] == 20
    assert tot["reconnects"] == 20
    rec = summary["latency_ms"]["reconnect"]
    assert rec["count"] == 20
    # phoenix.js's list has no jitter: refused after 10, 60, 160, 310, 510,
    # 760 ms and 1.26 s (down for 1.5 s), every client back at 2.26 s, in lockstep
    assert rec["min"] == pytest.approx(2260, rel=0.01)
    assert rec["max"] == pytest.approx(2260, rel=0.01)
    assert server.refused == 20 * 7
    assert "justified_timeout" not in tot["closes"]


def test_the_impairment_proxy_knows_its_heartbeats() -> None:
    from soak.proxy.frames import kinds_of

    kind = kinds_of("phoenix")
    assert kind(0x1, True, HEARTBEAT.encode()) == "ping"
    assert kind(0x1, True, REPLY.encode()) == "pong"
    assert kind(0x1, True, JOIN_REPLY.encode()) is None
    assert kind(0x1, False, HEARTBEAT.encode()) is None


def test_the_shipped_profile_is_consistent_for_soak_doctor() -> None:
    from soak.config.load import load_profile
    from soak.doctor.consistency import check_consistency
    from soak.shipped import shipped

    (path,) = [s.path for s in shipped() if s.name == "phoenix"]
    profile = load_profile(str(path), {})
    assert [f.code for f in check_consistency(profile=profile) if f.severity == "error"] == []


async def test_heartbeats_dropped_by_the_impairment_proxy_are_a_justified_idle_close(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakePhoenix(idle_timeout=3.0)
    text = body(hold="3500ms", max_missed=50, attempts=0)
    text += '[impairment.drop_heartbeat]\np = 1.0\ndirection = "up"\n'
    _, evs = await run_fake(
        "phoenix", server, text, tmp_path, table='[target.phoenix]\nidle_timeout = "3s"\n'
    )
    assert server.heartbeats == 0  # every one dropped on the way up
    assert server.closed == [(3.0, 1002, "")]
    (close, *_) = closes(evs)
    assert close["reason"] == JUSTIFIED_TIMEOUT
    assert close["why"].startswith("no heartbeat reply for the whole connection >= ")
