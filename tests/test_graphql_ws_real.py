"""``protocol = "graphql-ws"`` against the real server: the reference
implementation (npm graphql-ws 6.4.2, ws, graphql) and its ``ws`` adapter,
on 127.0.0.1 (soak.servers, recipe "graphql-ws"), with its keepAlive at
1 s so that its heartbeat timeout comes within seconds; and the old
protocol's (npm subscriptions-transport-ws, recipe "graphql-ws-legacy").
Skipped, naming what is missing, where node, npm or the registry cannot be
had."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
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
from soak.servers.graphql_ws import GRAPHQL_WS, GRAPHQL_WS_LEGACY
from tests.support.runs import make_profile

pytestmark = pytest.mark.process

BODY = """
[run]
label = "gql"
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
max_missed = {max_missed}
[reconnect]
jitter = "full"
initial_delay = "{delay}"
max_delay = "{max_delay}"
max_attempts = {attempts}
{extra}
"""


def body(
    clients: int = 1,
    hold: str = "3s",
    *,
    max_missed: int = 3,
    delay: str = "500ms",
    max_delay: str = "1s",
    attempts: int = 5,
    extra: str = "",
) -> str:
    return BODY.format(
        clients=clients,
        hold=hold,
        max_missed=max_missed,
        delay=delay,
        max_delay=max_delay,
        attempts=attempts,
        extra=extra,
    )


@contextlib.contextmanager
def server(where: Path, port: int = 0, **options: str) -> Iterator[RealServer]:
    try:
        with start(GRAPHQL_WS, where, port=port, options=options) as srv:
            yield srv
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


async def run(
    text: str, url: str, results: Path, table: str = 'keepalive = "1s"\n'
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    profile = make_profile(
        text,
        url=url,
        results=results,
        protocol="graphql-ws",
        target_extra="[target.graphql_ws]\n" + table,
    )
    recorder = Recorder(results, profile.run.label, now_wall())
    with trio.fail_after(60):
        outcome = await Runner(profile, recorder, manage_gc=False).run()
    lines = (recorder.path / "events.jsonl").read_text().splitlines()
    return outcome.summary, [json.loads(x) for x in lines]


async def test_clients_are_held_with_no_close_and_no_miss(tmp_path: Path) -> None:
    with server(tmp_path / "srv", keepalive="1000") as srv:
        table = 'keepalive = "1s"\npayload = { client = "soak" }\n'
        summary, _ = await run(body(clients=20, hold="3500ms"), srv.url, tmp_path / "r", table)
    tot = summary["totals"]
    assert tot["connects"] == 20
    assert tot["handshake_failure_total"] == 0
    assert tot["closes"] == {"client_shutdown": 20}
    assert tot["missed"] == 0
    assert tot["late"] == 0
    # every ping answered, but for one still in flight when the run closed it
    assert tot["pongs"] + tot.get("abandoned", 0) == tot["pings"]
    assert tot["pongs"] >= 20 * 6
    assert summary["latency_ms"]["rtt"]["count"] == tot["pongs"]
    # its RFC 6455 pings, once a second on each connection, all answered
    assert tot["server_pings"] >= 20 * 3
    assert summary["latency_ms"]["server_gap"]["p50"] == pytest.approx(1000, abs=100)


async def test_dropped_answers_are_its_justified_heartbeat_timeout(tmp_path: Path) -> None:
    """The impairment proxy drops every heartbeat going up (our pings and
    our pongs to its pings): the adapter terminates each connection 2 s
    after the upgrade, with no close frame, and soak calls it justified."""
    impair = '[impairment.drop_heartbeat]\np = 1.0\ndirection = "up"\n'
    text = body(clients=3, hold="3s", max_missed=100, delay="5s", max_delay="5s", extra=impair)
    with server(tmp_path / "srv", keepalive="1000") as srv:
        summary, evs = await run(text, srv.url, tmp_path / "r")
    tot = summary["totals"]
    assert tot["closes"]["justified_timeout"] == 3
    assert tot["justified_timeouts"] == 3
    assert tot.get("false_timeouts", 0) == 0
    assert tot["pongs"] == 0
    closes = [e for e in evs if e["event"] == "close" and e["reason"] == "justified_timeout"]
    for close in closes:
        assert close["initiator"] == "transport"
        assert close["category"] == "heartbeat_timeout"
        assert close["evidence"]["age_s"] == pytest.approx(2.0, abs=0.25)
        assert close["why"].startswith("no pong to our heartbeats for the whole connection")
        # the adapter's last ping came one keepAlive before it terminated
        came = re.search(r"its last ping came ([0-9.]+)s before and was answered", close["why"])
        assert came is not None, close["why"]
        assert float(came.group(1)) == pytest.approx(1.0, abs=0.25)


async def test_a_late_connection_init_is_closed_4408(tmp_path: Path) -> None:
    with server(tmp_path / "srv", init_wait="300") as srv:
        summary, evs = await run(
            body(hold="1s", attempts=1), srv.url, tmp_path / "r", 'init_delay = "2s"\n'
        )
    failures = summary["totals"]["handshake_failures"]
    assert failures == {"close_4408_connection_initialisation_timeout": 2}  # and the retry
    fail = next(e for e in evs if e["event"] == "handshake_failure")
    assert fail["t"] == pytest.approx(0.3, abs=0.2)
    assert '4408 "Connection initialisation timeout"' in fail["error"]


async def test_the_payload_reaches_it_and_a_wrong_one_is_forbidden(tmp_path: Path) -> None:
    with server(tmp_path / "srv", token="s3cret") as srv:
        good, _ = await run(
            body(hold="1s"), srv.url, tmp_path / "good", 'payload = { token = "s3cret" }\n'
        )
        bad, _ = await run(
            body(hold="1s", attempts=1), srv.url, tmp_path / "bad", 'payload = { token = "x" }\n'
        )
    assert good["totals"]["connects"] == 1
    assert good["totals"]["handshake_failure_total"] == 0
    assert bad["totals"]["connects"] == 0
    assert bad["totals"]["handshake_failures"] == {"close_4403_forbidden": 2}


async def test_a_server_that_picks_no_subprotocol_is_refused(tmp_path: Path) -> None:
    with server(tmp_path / "srv", pick_subprotocol="false") as srv:
        summary, evs = await run(body(hold="1s", attempts=1), srv.url, tmp_path / "r")
    assert summary["totals"]["handshake_failures"] == {"subprotocol": 2}
    fail = next(e for e in evs if e["event"] == "handshake_failure")
    assert "the server chose subprotocol none; soak offered 'graphql-transport-ws'" in fail["error"]


async def test_a_restart_is_a_storm_every_client_survives(tmp_path: Path) -> None:
    """Stop the server (SIGTERM: node exits, the kernel closes every socket)
    and start it again on the same port: a reconnect storm, measured. Its
    keepAlive is the default 12 s here, so no end can fall on its timer."""
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
            lambda: again.enter_context(start(GRAPHQL_WS, tmp_path / "b", port=srv.port))
        )

    # the hold leaves time for node to start again on a busy machine
    text = body(clients=clients, hold="10s", attempts=30)
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
    assert 1.5 <= storm["start_s"] < 3.0
    tot = summary["totals"]
    assert tot["closes"]["transport_eof"] + tot["closes"].get("transport_reset", 0) == clients
    assert tot["reconnects"] == clients
    assert "justified_timeout" not in tot["closes"]
    assert "false_timeout" not in tot["closes"]
    assert summary["latency_ms"]["reconnect"]["count"] == clients
    assert [e for e in evs if e["event"] == "close" and e["category"] == "heartbeat_timeout"] == []


def test_two_workers(tmp_path: Path) -> None:
    with server(tmp_path / "srv", keepalive="1000") as srv:
        profile = tmp_path / "gql.toml"
        profile.write_text(
            f'[target]\nurl = "{srv.url}"\nprotocol = "graphql-ws"\n'
            '[target.graphql_ws]\nkeepalive = "1s"\n' + body(clients=10, hold="3s")
        )
        res = CliRunner().invoke(
            cli,
            [
                "run",
                str(profile),
                "--workers",
                "2",
                "--results-dir",
                str(tmp_path / "r"),
                "--quiet",
            ],
        )
    assert res.exit_code == 0, res.output
    (run_dir,) = (tmp_path / "r").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["workers"]["count"] == 2
    assert summary["workers"]["planned_clients"] == [5, 5]
    tot = summary["totals"]
    assert tot["connects"] == 10
    assert tot["missed"] == 0
    assert tot["closes"] == {"client_shutdown": 10}
    assert tot["pongs"] + tot.get("abandoned", 0) == tot["pings"]
    assert tot["pongs"] >= 10 * 5
    assert tot["server_pings"] >= 10 * 2


# -- the old protocol: subscriptions-transport-ws -----------------------------------------


@contextlib.contextmanager
def legacy_server(where: Path, **options: str) -> Iterator[RealServer]:
    try:
        with start(GRAPHQL_WS_LEGACY, where, options=options) as srv:
            yield srv
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


async def run_legacy(
    text: str, url: str, results: Path, table: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    profile = make_profile(
        text,
        url=url,
        results=results,
        protocol="graphql-ws-legacy",
        target_extra="[target.graphql_ws_legacy]\n" + table,
    )
    recorder = Recorder(results, profile.run.label, now_wall())
    with trio.fail_after(60):
        outcome = await Runner(profile, recorder, manage_gc=False).run()
    lines = (recorder.path / "events.jsonl").read_text().splitlines()
    return outcome.summary, [json.loads(x) for x in lines]


LEGACY_TABLE = 'keepalive = "500ms"\nka_timeout = "1500ms"\n'


async def test_legacy_clients_are_held_and_its_ka_recorded(tmp_path: Path) -> None:
    with legacy_server(tmp_path / "srv", keepalive="500") as srv:
        summary, _ = await run_legacy(
            body(clients=10, hold="2500ms"), srv.url, tmp_path / "r", LEGACY_TABLE
        )
    tot = summary["totals"]
    assert tot["connects"] == 10
    assert tot["closes"] == {"client_shutdown": 10}
    assert tot["pings"] == 0  # the protocol has no client heartbeat
    assert tot["server_missed"] == 0
    assert tot["server_pings"] >= 10 * 5  # one with the ack, then every 500 ms
    assert summary["latency_ms"]["server_gap"]["p50"] == pytest.approx(500, abs=50)


async def test_legacy_ka_dropped_is_a_zombie_as_its_client_says(tmp_path: Path) -> None:
    impair = '[impairment.drop_heartbeat]\np = 1.0\ndirection = "down"\n'
    text = body(clients=3, hold="2500ms", delay="5s", max_delay="5s", extra=impair)
    with legacy_server(tmp_path / "srv", keepalive="500") as srv:
        summary, evs = await run_legacy(text, srv.url, tmp_path / "r", LEGACY_TABLE)
    tot = summary["totals"]
    assert tot["server_pings"] == 0
    assert tot["closes"]["client_zombie"] == 3
    assert tot["server_missed"] == 3
    for zombie in [e for e in evs if e.get("reason") == "client_zombie"]:
        assert zombie["evidence"]["age_s"] == pytest.approx(1.5, abs=0.1)
        assert zombie["text"] == "zombie: server heartbeats stopped"


async def test_legacy_connection_error(tmp_path: Path) -> None:
    with legacy_server(tmp_path / "srv", token="s3cret") as srv:
        summary, evs = await run_legacy(
            body(hold="1s", attempts=1), srv.url, tmp_path / "r", 'payload = { token = "no" }\n'
        )
    assert summary["totals"]["handshake_failures"] == {"connection_error": 2}
    fail = next(e for e in evs if e["event"] == "handshake_failure")
    assert fail["error"].endswith(": connection_error: Prohibited connection!")


def test_soak_server_stops_its_server_on_sigterm(tmp_path: Path) -> None:
    """``soak server graphql-ws`` prints the node server's pid; SIGTERM to
    soak stops that server too (it is not left behind as an orphan)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "soak", "server", "graphql-ws", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    node = 0
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # bounded: the install and start are (soak.servers)
        if "(pid " not in first:
            proc.wait(timeout=30)
            if proc.returncode == 3:
                pytest.skip(first.strip())
            raise AssertionError(first)
        node = int(first.split("(pid ", 1)[1].split(")", 1)[0])
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        deadline = time.monotonic() + 10
        while _alive(node) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(node), f"node server {node} outlived soak server"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if node and _alive(node):  # an orphan after a failure: stopped by its pid
            os.kill(node, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of nobody we know is gone as far as serving goes
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"
