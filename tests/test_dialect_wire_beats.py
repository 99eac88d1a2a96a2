"""soak.beats, every dialect: how often a frame goes each way with the
dialect's defaults, and what changes it (its own table, the profile's
[target.server_heartbeat], Engine.IO 3, SockJS echo). What a user reads is
the ``why`` in soak doctor's warning and the chain's prediction, so it is
pinned whole."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from soak.beats import COMMON_HOPS, Beats, beats, race
from soak.config.profile import Profile
from tests.support.runs import make_profile

BODY = """
[[clients.stages]]
kind = "hold"
duration = "10s"
[heartbeat]
interval = "{interval}"
timeout = "5s"
"""
INF = math.inf


def profile(
    protocol: str, interval: str = "40s", extra: str = "", url: str = "ws://127.0.0.1:9/ws"
) -> Profile:
    return make_profile(
        BODY.format(interval=interval), protocol=protocol, target_extra=extra, url=url
    )


@pytest.mark.parametrize(
    ("protocol", "up", "down", "why"),
    [
        # the client pings, the server answers: both ways every interval
        ("json", 40, 40, "json: the client every 40 s"),
        ("ws-ping", 40, 40, "ws-ping: the client every 40 s"),
        ("custom", 40, 40, "custom: the client every 40 s"),
        ("mqtt", 40, 40, "mqtt: the client every 40 s"),  # PINGREQ -> PINGRESP
        ("phoenix", 40, 40, "phoenix: the client every 40 s"),  # its 60 s is a timeout
        # and the server beats on its own too (its implied heartbeat)
        (
            "openclaw",
            40,
            25,
            "openclaw: the client every 40 s and the server every 25 s "
            "([target.server_heartbeat] interval)",
        ),
        (
            "nats",
            40,
            40,
            "nats: the client every 40 s and the server every 120 s "
            "([target.server_heartbeat] interval)",
        ),
        (
            "pusher",
            40,
            40,
            "pusher: the client every 40 s and the server every 120 s "
            "([target.server_heartbeat] interval)",
        ),
        # the server's pings are answered: the client's side every 12 s too
        (
            "graphql-ws",
            12,
            12,
            "graphql-ws: the client every 40 s and the server every 12 s "
            "([target.server_heartbeat] interval)",
        ),
        # one-way beats
        (
            "signalr",
            40,
            15,
            "signalr: the client every 40 s and the server every 15 s "
            "([target.server_heartbeat] interval)",
        ),
        (
            "stomp",
            40,
            40,
            "stomp: the client every 40 s and the server every 40 s "
            "([target.server_heartbeat] interval)",
        ),
        # the server pings, the client answers; soak's interval sends nothing
        (
            "socket.io",
            25,
            25,
            "socket.io: the server every 25 s ([target.server_heartbeat] interval)",
        ),
        ("sockjs", 25, 25, "sockjs: the server every 25 s ([target.server_heartbeat] interval)"),
        (
            "centrifugo",
            25,
            25,
            "centrifugo: the server every 25 s ([target.server_heartbeat] interval)",
        ),
        # only the server speaks
        ("actioncable", INF, 3, "actioncable: the server every 3 s (the actioncable default)"),
        # nobody, unless the server sets keepAlive
        ("graphql-ws-legacy", INF, INF, "graphql-ws-legacy: no heartbeat either way"),
    ],
)
def test_each_dialects_traffic_with_its_defaults(
    protocol: str, up: float, down: float, why: str
) -> None:
    b = beats(profile(protocol))
    assert (b.up, b.down) == (up, down)
    assert b.why == why


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("ws://127.0.0.1:9/socket.io/?EIO=3", ""),
        ("ws://127.0.0.1:9/socket.io/", "[target.socketio]\neio = 3\n"),
        ("ws://127.0.0.1:9/socket.io/?EIO=3", '[target.socketio]\nnamespace = "/chat"\n'),
    ],
)
def test_engine_io_3_is_the_clients_ping_and_the_servers_answer(url: str, extra: str) -> None:
    # Engine.IO 3: "2" every heartbeat interval, "3" back; no server ping
    b = beats(profile("socket.io", "10s", extra, url=url))
    assert (b.up, b.down) == (10.0, 10.0)
    assert b.why == "socket.io: the client every 10 s"


def test_engine_io_4_named_in_the_url_is_the_servers_ping() -> None:
    b = beats(profile("socket.io", "10s", url="ws://127.0.0.1:9/socket.io/?EIO=4"))
    assert (b.up, b.down) == (25.0, 25.0)


def test_sockjs_echo_sends_the_clients_heartbeats_as_messages() -> None:
    b = beats(profile("sockjs", "10s", "[target.sockjs]\necho = true\n"))
    # ours every 10 s (the echo comes back), its heartbeat every 25 s, answered
    assert (b.up, b.down) == (10.0, 10.0)
    assert b.why == (
        "sockjs: the client every 10 s and the server every 25 s ([target.sockjs] heartbeat_delay)"
    )
    quiet = beats(profile("sockjs", "10s", "[target.sockjs]\necho = false\n"))
    assert (quiet.up, quiet.down) == (25.0, 25.0)
    assert quiet.why == "sockjs: the server every 25 s ([target.sockjs] heartbeat_delay)"


@pytest.mark.parametrize(
    ("protocol", "extra", "down", "source"),
    [
        (
            "actioncable",
            '[target.actioncable]\nbeat_interval = "2s"\n',
            2.0,
            "[target.actioncable] beat_interval",
        ),
        (
            "sockjs",
            '[target.sockjs]\nheartbeat_delay = "7s"\n',
            7.0,
            "[target.sockjs] heartbeat_delay",
        ),
        (
            "graphql-ws",
            '[target.graphql_ws]\nkeepalive = "5s"\n',
            5.0,
            "[target.graphql_ws] keepalive",
        ),
    ],
)
def test_the_dialects_own_table_sets_its_servers_interval(
    protocol: str, extra: str, down: float, source: str
) -> None:
    b = beats(profile(protocol, "40s", extra))
    assert b.down == down
    assert b.why.endswith(f"the server every {down:g} s ({source})")


def test_the_profiles_server_heartbeat_sets_a_beating_servers_interval() -> None:
    extra = '[target.server_heartbeat]\ninterval = "50s"\ntimeout = "10s"\n'
    b = beats(profile("actioncable", "40s", extra))
    assert b.down == 50.0
    assert b.why == "actioncable: the server every 50 s ([target.server_heartbeat] interval)"
    # a request-response dialect: the table is the server's timeout, not its traffic
    j = beats(profile("json", "40s", extra))
    assert (j.up, j.down) == (40.0, 40.0)
    assert j.why == "json: the client every 40 s"


def _target(**kw: object) -> SimpleNamespace:
    base: dict[str, object] = {"url": "ws://h/", "server_heartbeat": None}
    return SimpleNamespace(**{**base, **kw})


def _profile(target: SimpleNamespace, interval: float = 20.0) -> SimpleNamespace:
    return SimpleNamespace(target=target, heartbeat=SimpleNamespace(interval=interval))


def test_an_unknown_dialect_is_taken_for_a_request_response_one() -> None:
    b = beats(_profile(_target(protocol="brand-new")))
    assert (b.up, b.down) == (20.0, 20.0)
    assert b.why == "brand-new: the client every 20 s"


@pytest.mark.parametrize("value", [0, -3, None, "5s"])
def test_a_table_value_that_is_no_positive_number_falls_back(value: object) -> None:
    table = SimpleNamespace(beat_interval=value)
    b = beats(_profile(_target(protocol="actioncable", actioncable=table)))
    assert b.down == 3.0
    assert b.why == "actioncable: the server every 3 s (the actioncable default)"


def test_a_fractional_interval_is_shown_as_it_is() -> None:
    b = beats(_profile(_target(protocol="json"), interval=2.5))
    assert (b.up, b.down) == (2.5, 2.5)
    assert b.why == "json: the client every 2.5 s"


def test_the_gap_a_hop_sees_depends_on_whose_traffic_resets_it() -> None:
    b = Beats(up=10.0, down=30.0, why="x")
    assert b.gap("server") == 30.0
    assert b.gap("client") == 10.0
    assert b.gap("either") == 10.0
    assert Beats(up=30.0, down=10.0, why="x").gap("either") == 10.0


def test_race_lists_the_hops_whose_default_the_gap_reaches_exactly_or_more() -> None:
    assert race(Beats(59.9, 59.9, "")) == []
    assert race(Beats(60.0, 60.0, "")) == [
        ("nginx proxy_read_timeout (default)", 60.0, 60.0),
        ("AWS ALB/ELB idle timeout (default)", 60.0, 60.0),
    ]
    # either direction resets an idle timer: the shorter gap counts
    assert race(Beats(120.0, 30.0, "")) == []
    assert [h for h, _, _ in race(Beats(INF, 600.0, ""))] == [h for h, _ in COMMON_HOPS]
    assert race(Beats(INF, 600.0, ""))[-1] == ("AWS API Gateway WebSocket", 600.0, 600.0)


def test_a_url_whose_engine_io_soak_does_not_speak_is_taken_for_4() -> None:
    # the profile's check refuses it with its own message; beats does not fail
    b = beats(_profile(_target(protocol="socket.io", url="ws://h/?EIO=5")))
    assert (b.up, b.down) == (25.0, 25.0)
    assert b.why == "socket.io: the server every 25 s (the socket.io default)"
