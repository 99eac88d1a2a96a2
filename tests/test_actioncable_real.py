"""``protocol = "actioncable"`` against the real server: Rails ActionCable
6.1 under puma (Debian ruby-actioncable and puma), mounted at /cable by
the recipe's rackup file (soak.servers, recipe "actioncable"), its ping
interval at 500 ms so that a stale connection shows within a second.
Skipped, naming what is missing, where puma or ruby-actioncable is not
installed."""

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
from soak.servers.actioncable import ACTIONCABLE
from tests.support.runs import make_profile

pytestmark = pytest.mark.process

BODY = """
[run]
label = "cable"
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
[reconnect]
jitter = "none"
initial_delay = "{delay}"
max_delay = "{delay}"
max_attempts = {attempts}
{extra}
"""
TABLE = (
    'identifier = { channel = "HeartbeatChannel" }\nbeat_interval = "500ms"\nstale_after = "1s"\n'
)


def body(
    clients: int = 1, hold: str = "3s", *, delay: str = "500ms", attempts: int = 5, extra: str = ""
) -> str:
    return BODY.format(clients=clients, hold=hold, delay=delay, attempts=attempts, extra=extra)


@contextlib.contextmanager
def server(where: Path, *, port: int = 0, **options: str) -> Iterator[RealServer]:
    options.setdefault("beat_interval", "0.5")
    try:
        with start(ACTIONCABLE, where, port=port, options=options) as srv:
            yield srv
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


async def run(
    text: str, url: str, results: Path, table: str = TABLE
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    profile = make_profile(
        text,
        url=url,
        results=results,
        protocol="actioncable",
        target_extra="[target.actioncable]\n" + table,
    )
    recorder = Recorder(results, profile.run.label, now_wall())
    with trio.fail_after(60):
        outcome = await Runner(profile, recorder, manage_gc=False).run()
    lines = (recorder.path / "events.jsonl").read_text().splitlines()
    return outcome.summary, [json.loads(x) for x in lines]


async def test_subscribed_clients_are_held_and_its_pings_recorded(tmp_path: Path) -> None:
    with server(tmp_path / "srv") as srv:
        summary, _ = await run(body(clients=20, hold="3s"), srv.url, tmp_path / "r")
    tot = summary["totals"]
    assert tot["connects"] == 20
    assert tot["handshake_failure_total"] == 0
    assert tot["closes"] == {"client_shutdown": 20}
    assert tot["pings"] == 0  # the protocol has no client heartbeat
    assert tot["server_missed"] == 0
    assert tot["server_pings"] >= 20 * 4
    # one timer for all connections, so no gap is longer than its interval;
    # 20 first upgrades at once may start two (Server::Base#call's
    # ``@heartbeat_timer ||=`` on concurrent puma threads): pairs of pings
    # a few ms apart, so the median gap says nothing
    assert summary["latency_ms"]["server_gap"]["max"] < 600


async def test_pings_dropped_are_a_stale_connection_seen_from_our_side(tmp_path: Path) -> None:
    """The proxy drops its pings: the server keeps the quiet connection
    (it never drops one), soak closes it as stale after 1 s, a zombie."""
    impair = '[impairment.drop_heartbeat]\np = 1.0\ndirection = "down"\n'
    text = body(clients=3, hold="2s", delay="5s", extra=impair)
    with server(tmp_path / "srv") as srv:
        summary, evs = await run(text, srv.url, tmp_path / "r")
    tot = summary["totals"]
    assert tot["server_pings"] == 0
    assert tot["closes"] == {"client_zombie": 3}
    assert tot["server_missed"] == 3
    for zombie in [e for e in evs if e.get("reason") == "client_zombie"]:
        assert zombie["text"] == "zombie: server heartbeats stopped"
        assert zombie["evidence"]["age_s"] == pytest.approx(1.0, abs=0.1)


async def test_its_disconnect_is_a_close_with_its_reason(tmp_path: Path) -> None:
    with server(tmp_path / "srv", disconnect_after="1") as srv:
        summary, evs = await run(
            body(clients=2, hold="1800ms", delay="5s"), srv.url, tmp_path / "r"
        )
    tot = summary["totals"]
    assert tot["closes"] == {"server_disconnect_server_restart": 2}
    for close in [e for e in evs if e["event"] == "close"]:
        assert close["initiator"] == "server"
        assert close["category"] == "server"
        assert close["why"] == 'disconnect "server_restart" (reconnect: true), then close 1000'


async def test_an_unauthorized_connection_is_refused_for_good(tmp_path: Path) -> None:
    with server(tmp_path / "srv", token="s3cret") as srv:
        good, _ = await run(body(hold="1s"), srv.url + "?token=s3cret", tmp_path / "good")
        bad, evs = await run(body(hold="1s"), srv.url + "?token=no", tmp_path / "bad")
    assert good["totals"]["connects"] == 1
    assert good["totals"]["handshake_failure_total"] == 0
    # reconnect false is permanent: the run knows it after three in a row
    assert list(bad["totals"]["handshake_failures"]) == ["disconnect_unauthorized"]
    fail = next(e for e in evs if e["event"] == "handshake_failure")
    assert fail["permanent"] is True
    assert 'disconnect "unauthorized" (reconnect: false) instead of welcome' in fail["error"]


async def test_a_rejected_subscription_is_refused(tmp_path: Path) -> None:
    with server(tmp_path / "srv", reject="true") as srv:
        summary, evs = await run(body(hold="1s"), srv.url, tmp_path / "r")
    # as many as the run's second allows (three make it known to be permanent)
    assert list(summary["totals"]["handshake_failures"]) == ["reject_subscription"]
    fail = next(e for e in evs if e["event"] == "handshake_failure")
    assert fail["permanent"] is True
    assert 'rejected the subscription {"channel":"HeartbeatChannel"}' in fail["error"]


async def test_a_restart_is_a_storm_every_client_survives(tmp_path: Path) -> None:
    clients = 20
    stacks: list[contextlib.ExitStack] = []
    first = contextlib.ExitStack()
    srv = first.enter_context(server(tmp_path / "a"))
    stacks.append(first)

    async def restart() -> None:
        await trio.sleep(2.0)
        await trio.to_thread.run_sync(first.close)
        await trio.sleep(0.3)
        again = contextlib.ExitStack()
        stacks.append(again)
        await trio.to_thread.run_sync(
            lambda: again.enter_context(
                start(ACTIONCABLE, tmp_path / "b", port=srv.port, options={"beat_interval": "0.5"})
            )
        )

    # the pings stop with the server: a client reconnects or goes stale
    text = body(clients=clients, hold="10s", attempts=40)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(restart)
            summary, _ = await run(text, srv.url, tmp_path / "r")
    finally:
        for stack in reversed(stacks):
            stack.close()
    (storm,) = summary["storms"]
    assert storm["lost"] == clients
    assert storm["recovered"] == clients
    assert storm["gave_up"] == 0
    assert 1.5 <= storm["start_s"] < 6.0
    tot = summary["totals"]
    assert tot["reconnects"] == clients
    assert summary["latency_ms"]["reconnect"]["count"] == clients


def test_two_workers(tmp_path: Path) -> None:
    with server(tmp_path / "srv") as srv:
        profile = tmp_path / "cable.toml"
        profile.write_text(
            f'[target]\nurl = "{srv.url}"\nprotocol = "actioncable"\n'
            "[target.actioncable]\n"
            + TABLE
            # two worker processes start on a busy machine: the welcome can take a while
            + body(clients=10, hold="3s", extra='[thresholds]\navailability = "50%"\n')
        )
        res = CliRunner().invoke(
            cli,
            ["run", str(profile), "--workers", "2", "--quiet", "--results-dir", str(tmp_path)],
        )
    assert res.exit_code == 0, res.output
    (run_dir,) = [d for d in tmp_path.iterdir() if (d / "summary.json").exists()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["workers"]["count"] == 2
    tot = summary["totals"]
    assert tot["connects"] == 10
    assert tot["closes"] == {"client_shutdown": 10}
    assert tot["server_pings"] >= 10 * 4
