"""Each impairment's own scope: a fraction of the connections, a time window
and a direction, from a profile's [impairment.NAME] tables or soak proxy's
--scope option, validated with errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio.testing
from click.testing import CliRunner
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from soak.cli import cli
from soak.config.load import parse_profile
from soak.config.tables.impairment import parse_scope_option
from soak.errors import ProfileError
from soak.gateway import Gateway, GatewayConfig
from soak.proxy import ImpairmentConfig, Latency, Proxy, Scope
from soak.proxy.config import NatIdle, TimedDrop
from soak.proxy.frames import DropHeartbeat
from soak.proxy.impair import Link, selected
from soak.proxy.server import Connect
from tests.support.runs import gateway_opener, make_profile, run_in_memory

BASE = '[target]\nurl = "ws://127.0.0.1:9/ws"\n[[clients.stages]]\nkind = "hold"\nduration = "1s"\n'

SCOPED = """
[impairment]
fraction = 0.5               # the shared fraction, for impairments without their own
nat_idle = "30s"
[impairment.latency]
delay = "100ms"
jitter = "10ms"
dist = "normal"
direction = "down"
fraction = 0.25
from = "10s"
until = "1m"
[impairment.black_hole]
at = "5m"
fraction = 0.1
[impairment.drop_heartbeat]
nth = 2
direction = "up"
from = "30s"
"""


def config_of(text: str) -> ImpairmentConfig:
    profile = parse_profile(BASE + text, "p.toml", {})
    assert profile.impairment is not None
    return profile.impairment.proxy_config()


def test_tables_give_each_impairment_its_own_scope() -> None:
    config = config_of(SCOPED)
    assert config.latency == (
        Latency(0.1, 0.01, "normal", ("down",), Scope(start=10.0, end=60.0, fraction=0.25)),
    )
    assert config.nat_idle == NatIdle(30.0, Scope(fraction=0.5))
    assert config.black_hole == TimedDrop(300.0, 0.1)
    assert config.drop_heartbeat == DropHeartbeat(2)
    assert config.drop_heartbeat_directions == ("up",)
    assert config.drop_heartbeat_scope == Scope(start=30.0, fraction=0.5)


def test_flat_syntax_is_unchanged() -> None:
    config = config_of(
        '[impairment]\nlatency = "100ms"\ndirection = "down"\nfraction = 0.5\n'
        'reset_at = "1m"\ndrop_heartbeat = 1\n'
    )
    assert config.latency == (Latency(0.1, 0.0, "uniform", ("down",), Scope(fraction=0.5)),)
    assert config.reset == TimedDrop(60.0, 0.5)
    # heartbeat drops count both ways whatever the shared direction says
    assert config.drop_heartbeat_directions == ("up", "down")


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        (
            '[impairment.latency]\ndelay = "1s"\nfraction = 1.5\n',
            "impairment.latency.fraction: expected a fraction between 0 and 1, got 1.5",
        ),
        (
            '[impairment.bandwidth]\nrate = "1kB"\nfraction = -0.1\n',
            "impairment.bandwidth.fraction: expected a number >= 0, got -0.1",
        ),
        (
            '[impairment.latency]\ndelay = "1s"\nfrom = "10s"\nuntil = "5s"\n',
            'impairment.latency.until: expected a time after from (10s), got "5s"',
        ),
        (
            '[impairment.nat_idle]\ntimeout = "1s"\nfrom = "10s"\nuntil = "10s"\n',
            "impairment.nat_idle.until: expected a time after from (10s)",
        ),
        (
            '[impairment.latency]\ndelay = "1s"\nfrom = "-5s"\n',
            "impairment.latency.from: expected a duration of zero or more",
        ),
        (
            '[impairment.latency]\ndelay = "1s"\nspeed = 3\n',
            "impairment.latency.speed: unknown field; valid fields: delay, jitter, dist, "
            "fraction, from, until, direction",
        ),
        (
            '[impairment.lateny]\ndelay = "1s"\n',
            "impairment.lateny: unknown impairment (did you mean 'latency'?); impairments: "
            "latency, bandwidth, nat_idle, black_hole, reset, drop_heartbeat",
        ),
        (
            '[impairment.nat_idle]\ntimeout = "1s"\ndirection = "up"\n',
            "impairment.nat_idle.direction: unknown field",
        ),
        ('[impairment.reset]\nat = "1s"\nuntil = "2s"\n', "impairment.reset.until: unknown field"),
        (
            '[impairment.bandwidth]\nrate = "1kB"\ndirection = "left"\n',
            'impairment.bandwidth.direction: expected one of up, down, both, got "left"',
        ),
        ('[impairment.latency]\njitter = "1s"\n', "impairment.latency.delay: is required"),
        (
            "[impairment.drop_heartbeat]\nfraction = 0.5\n",
            "impairment.drop_heartbeat.nth: is required (or p)",
        ),
        (
            '[impairment]\njitter = "1s"\n[impairment.latency]\ndelay = "1s"\n',
            "impairment.jitter: goes in the [impairment.latency] table when latency is one",
        ),
        (
            '[impairment]\nblack_hole = "1s"\n',
            "impairment.black_hole: expected a table like [impairment.black_hole]",
        ),
        (
            '[impairment]\nblack_hole_at = "1s"\n[impairment.black_hole]\nat = "2s"\n',
            "impairment.black_hole_at: is given twice: here and in [impairment.black_hole]",
        ),
    ],
)
def test_bad_scopes_name_the_field(snippet: str, message: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(BASE + snippet, "p.toml", {})
    assert str(info.value).startswith("p.toml: ")
    assert message in str(info.value)


def test_scope_option_reads_like_a_table() -> None:
    assert parse_scope_option("latency:fraction=0.5,from=10s,until=1m,direction=down") == {
        "latency_fraction": 0.5,
        "latency_from": 10.0,
        "latency_until": 60.0,
        "latency_direction": "down",
    }
    assert parse_scope_option("reset:fraction=1") == {"reset_fraction": 1.0}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--latency", "1s", "--scope", "latency:fraction=2"],
            "--scope latency.fraction: expected a fraction between 0 and 1, got 2.0",
        ),
        (
            ["--latency", "1s", "--scope", "latency:fraction=most"],
            '--scope latency.fraction: expected a number >= 0, got "most"',
        ),
        (
            ["--latency", "1s", "--scope", "latency:from=10s,until=5s"],
            "--scope latency.until: expected a time after from (10s)",
        ),
        (
            ["--latency", "1s", "--scope", "latency:speed=3"],
            "--scope latency.speed: unknown field",
        ),
        (
            ["--latency", "1s", "--scope", "latncy:fraction=0.5"],
            "--scope: expected NAME:KEY=VALUE,... with NAME one of latency, bandwidth, "
            "nat_idle, drop_heartbeat, black_hole, reset (did you mean 'latency'?)",
        ),
        (["--latency", "1s", "--scope", "latency"], "--scope: expected at least one of"),
        (["--latency", "1s", "--scope", "latency:fraction"], "expected KEY=VALUE items"),
        (
            ["--latency", "1s", "--scope", "latency:fraction=0.1,fraction=0.2"],
            "--scope latency.fraction: is given twice",
        ),
        (
            ["--scope", "black_hole:fraction=0.5"],
            "--scope black_hole: black_hole is not set (no --black-hole-at)",
        ),
    ],
)
def test_bad_scope_options_are_named(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["proxy", "--upstream", "127.0.0.1:9", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


# -- the model, with plain numbers --------------------------------------------------------


def handshake_and_pings(n: int) -> tuple[bytes, list[bytes]]:
    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    request = client.send(Request(host="gateway.test", target="/ws"))
    server.receive_data(request)
    client.receive_data(server.send(AcceptConnection()))
    pings = [
        client.send(TextMessage(data=json.dumps({"type": "ping", "seq": i}))) for i in range(n)
    ]
    return request, pings


def test_heartbeat_drop_counts_only_inside_its_window() -> None:
    config = ImpairmentConfig(
        drop_heartbeat=DropHeartbeat(nth=1), drop_heartbeat_scope=Scope(start=10.0, end=20.0)
    )
    link = Link(config, 0, now=0.0)
    request, pings = handshake_and_pings(4)
    assert link.filter("up", 0.0, request) == request
    assert link.filter("up", 5.0, pings[0]) == pings[0]  # before the window: not counted
    assert link.filter("up", 10.0, pings[1]) == b""  # the first inside it goes
    assert link.filter("up", 15.0, pings[2]) == pings[2]
    assert [(e["t"], e["n"]) for e in link.events()] == [(10.0, 1)]
    link2 = Link(config, 1, now=0.0)
    link2.filter("up", 0.0, request)
    assert link2.filter("up", 25.0, pings[0]) == pings[0]  # after it: untouched


def test_heartbeat_drop_direction_and_fraction() -> None:
    config = ImpairmentConfig(
        drop_heartbeat=DropHeartbeat(nth=1),
        drop_heartbeat_directions=("down",),
        drop_heartbeat_scope=Scope(fraction=0.5),
        seed=4,
    )
    request, pings = handshake_and_pings(1)
    dropped = []
    for conn in range(40):
        link = Link(config, conn, now=0.0)
        link.filter("up", 0.0, request)
        link.filter("down", 0.0, request)  # (a response's bytes, as far as framing goes)
        assert link.filter("up", 1.0, pings[0]) == pings[0]  # up is never touched
        dropped.append(link.filter("down", 1.0, pings[0]) == b"")
    assert dropped == [selected(4, "drop_heartbeat", c, 0.5) for c in range(40)]
    assert 0 < sum(dropped) < 40


# -- the proxy under MockClock, configured from a profile --------------------------------


async def echo(stream: trio.abc.Stream) -> None:
    async for data in stream:
        await stream.send_all(data)


WINDOWED = """
[impairment.latency]
delay = "100ms"
direction = "down"
fraction = 0.5
from = "5s"
until = "10s"
"""


async def test_latency_only_inside_its_window_and_on_its_fraction(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = config_of(WINDOWED)
    proxy = Proxy(config, start=trio.current_time())
    n = 20
    delays: dict[int, list[float]] = {}
    async with trio.open_nursery() as nursery:
        clients = []
        for _ in range(n):
            client, proxy_client = trio.testing.memory_stream_pair()
            proxy_up, server = trio.testing.memory_stream_pair()

            async def connect(up: trio.abc.Stream = proxy_up) -> trio.abc.Stream:
                return up

            async def handle(
                down: trio.abc.Stream = proxy_client,
                up: Connect = connect,
                *,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
            ) -> None:
                # one at a time: the proxy numbers connections as they come,
                # so client i is connection i
                task_status.started()
                await proxy.handle(down, up)

            await nursery.start(handle)
            nursery.start_soon(echo, server)
            clients.append(client)

        async def round_trip(conn: int, client: trio.abc.Stream, sent: float) -> None:
            await client.send_all(b"hb")
            assert await client.receive_some() == b"hb"
            delays.setdefault(conn, []).append(round(trio.current_time() - sent, 9))

        for t in (1.0, 4.9, 5.0, 7.0, 9.9, 10.0, 12.0):
            await trio.sleep_until(t)
            async with trio.open_nursery() as each:
                for conn, client in enumerate(clients):
                    each.start_soon(round_trip, conn, client, t)
        nursery.cancel_scope.cancel()
    picked = {c for c in range(n) if selected(config.seed, "latency0", c, 0.5)}
    assert 0 < len(picked) < n
    for conn in range(n):
        # the echo is sent back at once; the down direction is delayed at
        # arrival times 5.0 (the window's start) up to 10.0 (its end, excluded)
        inside = 0.1 if conn in picked else 0.0
        assert delays[conn] == [0.0, 0.0, inside, inside, inside, 0.0, 0.0], conn


RUN = """
[run]
label = "windowed"
report_interval = "5s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 10
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "30s"
[heartbeat]
interval = "1s"
timeout = "2s"
[impairment]
seed = 3
[impairment.latency]
delay = "100ms"
direction = "down"
fraction = 0.5
from = "10s"
until = "20s"
"""


async def test_a_run_impairs_only_the_chosen_connections_in_the_window(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    profile = make_profile(RUN, results=tmp_path)
    outcome, path = await run_in_memory(profile, tmp_path, gateway_opener(Gateway(GatewayConfig())))
    events = [json.loads(x) for x in (path / "events.jsonl").read_text().splitlines()]
    latency = [e for e in events if e.get("impairment") == "latency"]
    assert {e["conn"] for e in latency} == {c for c in range(10) if selected(3, "latency0", c, 0.5)}
    assert all(10.0 <= e["t"] < 20.0 for e in latency)
    rtt = outcome.summary["latency_ms"]["rtt_service"]
    assert rtt["min"] == pytest.approx(0.0, abs=0.01)
    assert rtt["max"] == pytest.approx(100.0, rel=0.001)
    assert outcome.summary["totals"]["missed"] == 0
