"""``protocol = "sockjs"`` against the real server: sockjs-node (npm sockjs
0.3.24) with an echo endpoint on 127.0.0.1 (soak.servers, recipe "sockjs"),
its heartbeat delay at 1 s and its pong wait at 500 ms so that its
heartbeat timeout comes within seconds. Skipped, naming what is missing,
where node, npm or the registry cannot be had."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner

from soak.cli import cli
from soak.recorder import Recorder, now_wall
from soak.run.runner import Runner
from soak.servers import RealServer, ServerUnavailable, start
from soak.servers.sockjs import SOCKJS
from tests.support.runs import make_profile

pytestmark = pytest.mark.process

BODY = """
[run]
label = "sockjs"
report_interval = "1s"
[clients]
max_connecting = 50
[[clients.stages]]
kind = "ramp"
to = {clients}
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "{hold}"
[heartbeat]
interval = "500ms"
timeout = "500ms"
max_missed = 100
[reconnect]
jitter = "full"
initial_delay = "{delay}"
max_delay = "{delay}"
max_attempts = {attempts}
{extra}
"""
TABLE = 'heartbeat_delay = "1s"\nheartbeat_timeout = "500ms"\n'


def body(
    clients: int = 1, hold: str = "3s", *, delay: str = "500ms", attempts: int = 5, extra: str = ""
) -> str:
    return BODY.format(clients=clients, hold=hold, delay=delay, attempts=attempts, extra=extra)


@contextlib.contextmanager
def server(where: Path, *, port: int = 0, **options: str) -> Iterator[RealServer]:
    try:
        with start(SOCKJS, where, port=port, options=options) as srv:
            yield srv
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


async def run(
    text: str, url: str, results: Path, table: str = TABLE
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    profile = make_profile(
        text, url=url, results=results, protocol="sockjs", target_extra="[target.sockjs]\n" + table
    )
    recorder = Recorder(results, profile.run.label, now_wall())
    with trio.fail_after(60):
        outcome = await Runner(profile, recorder, manage_gc=False).run()
    lines = (recorder.path / "events.jsonl").read_text().splitlines()
    return outcome.summary, [json.loads(x) for x in lines]


async def test_clients_are_held_echoed_and_its_pings_answered(tmp_path: Path) -> None:
    with server(tmp_path / "srv", heartbeat_delay="1000", pong_wait="500") as srv:
        summary, _ = await run(
            body(clients=20, hold="3500ms"), srv.url, tmp_path / "r", TABLE + "echo = true\n"
        )
    tot = summary["totals"]
    assert tot["connects"] == 20
    assert tot["handshake_failure_total"] == 0
    assert tot["closes"] == {"client_shutdown": 20}
    assert tot["missed"] == 0
    assert tot["server_missed"] == 0
    # every heartbeat echoed (a["soak:..."]), but for one in flight at the end
    assert tot["pongs"] + tot.get("abandoned", 0) == tot["pings"]
    assert tot["pongs"] >= 20 * 6
    # its RFC 6455 pings, once a second on each session, all answered
    assert tot["server_pings"] >= 20 * 3
    assert summary["latency_ms"]["server_gap"]["p50"] == pytest.approx(1000, abs=100)


async def test_unanswered_pings_are_its_justified_heartbeat_timeout(tmp_path: Path) -> None:
    """The impairment proxy drops our pongs going up: sockjs-node writes
    c[3000,"No response from heartbeat"] 500 ms after its first ping, then
    closes 1000; soak judges it by the c frame: justified."""
    impair = '[impairment.drop_heartbeat]\np = 1.0\ndirection = "up"\n'
    text = body(clients=3, hold="2500ms", delay="5s", extra=impair)
    with server(tmp_path / "srv", heartbeat_delay="1000", pong_wait="500") as srv:
        summary, evs = await run(text, srv.url, tmp_path / "r")
    tot = summary["totals"]
    assert tot["closes"]["justified_timeout"] == 3
    assert tot["justified_timeouts"] == 3
    assert tot.get("false_timeouts", 0) == 0
    closes = [e for e in evs if e["event"] == "close" and e["reason"] == "justified_timeout"]
    for close in closes:
        assert close["initiator"] == "server"
        assert close["code"] == 1000  # on the wire; the c frame said why
        assert close["category"] == "heartbeat_timeout"
        assert close["why"].startswith('c[3000,"No response from heartbeat"] then close 1000: ')
        assert close["evidence"]["age_s"] == pytest.approx(1.5, abs=0.3)


async def test_spring_style_h_frames_are_its_heartbeats(tmp_path: Path) -> None:
    with server(tmp_path / "srv", heartbeat_delay="500", heartbeats="h") as srv:
        table = 'heartbeats = "h"\nheartbeat_delay = "500ms"\nheartbeat_timeout = "500ms"\n'
        summary, _ = await run(body(clients=5, hold="2500ms"), srv.url, tmp_path / "r", table)
    tot = summary["totals"]
    assert tot["closes"] == {"client_shutdown": 5}
    assert tot["pings"] == 0  # sockjs-client sends none: neither does soak
    assert tot["server_pings"] >= 5 * 4
    assert summary["latency_ms"]["server_gap"]["p50"] == pytest.approx(500, abs=60)


async def test_h_frames_dropped_are_a_silence_zombie(tmp_path: Path) -> None:
    impair = '[impairment.drop_heartbeat]\np = 1.0\ndirection = "down"\n'
    text = body(clients=2, hold="2s", delay="5s", extra=impair)
    with server(tmp_path / "srv", heartbeat_delay="500", heartbeats="h") as srv:
        table = 'heartbeats = "h"\nheartbeat_delay = "500ms"\nheartbeat_timeout = "500ms"\n'
        summary, evs = await run(text, srv.url, tmp_path / "r", table)
    tot = summary["totals"]
    assert tot["server_pings"] == 0
    assert tot["closes"]["client_zombie"] == 2
    for zombie in [e for e in evs if e.get("reason") == "client_zombie"]:
        assert zombie["evidence"]["age_s"] == pytest.approx(1.0, abs=0.1)


async def test_a_restart_is_a_storm_every_client_survives(tmp_path: Path) -> None:
    clients = 30
    stacks: list[contextlib.ExitStack] = []
    first = contextlib.ExitStack()
    srv = first.enter_context(server(tmp_path / "a"))
    stacks.append(first)

    async def restart() -> None:
        await trio.sleep(2.0)
        await trio.to_thread.run_sync(first.close)
        await trio.sleep(0.5)
        again = contextlib.ExitStack()
        stacks.append(again)
        await trio.to_thread.run_sync(
            lambda: again.enter_context(start(SOCKJS, tmp_path / "b", port=srv.port))
        )

    text = body(clients=clients, hold="8s", attempts=30)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(restart)
            summary, evs = await run(text, srv.url, tmp_path / "r", table="")
    finally:
        for stack in reversed(stacks):
            stack.close()
    (storm,) = summary["storms"]
    assert storm["lost"] == clients
    assert storm["recovered"] == clients
    assert storm["gave_up"] == 0
    assert 1.5 <= storm["start_s"] < 6.0  # node takes its time to exit on a busy machine
    tot = summary["totals"]
    assert tot["reconnects"] == clients
    assert summary["latency_ms"]["reconnect"]["count"] == clients
    assert [e for e in evs if e["event"] == "close" and e["category"] == "heartbeat_timeout"] == []


def test_two_workers(tmp_path: Path) -> None:
    with server(tmp_path / "srv", heartbeat_delay="1000", pong_wait="500") as srv:
        profile = tmp_path / "sockjs.toml"
        profile.write_text(
            f'[target]\nurl = "{srv.url}"\nprotocol = "sockjs"\n'
            "[target.sockjs]\n" + TABLE + "echo = true\n" + body(clients=10, hold="3s")
        )
        res = CliRunner().invoke(
            cli,
            ["run", str(profile), "--workers", "2", "--quiet", "--results-dir", str(tmp_path)],
        )
    assert res.exit_code == 0, res.output
    (run_dir,) = [d for d in tmp_path.iterdir() if (d / "summary.json").exists()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["workers"]["count"] == 2
    assert summary["workers"]["planned_clients"] == [5, 5]
    tot = summary["totals"]
    assert tot["connects"] == 10
    assert tot["closes"] == {"client_shutdown": 10}
    assert tot["pongs"] >= 10 * 5
    assert tot["server_pings"] >= 10 * 2
