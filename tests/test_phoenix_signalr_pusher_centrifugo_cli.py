"""The four dialects built from their specifications, through the CLI on
real sockets: each against its fake server on 127.0.0.1 (no real server is
installable here), one process and ``--workers 2``. The counts' floors are
low on purpose: worker processes start slowly on a busy machine, and what
is checked is that every client was held, not how many heartbeats fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from soak.cli import cli
from tests.support.fakes.centrifugo import FakeCentrifugo
from tests.support.fakes.phoenix import FakePhoenix
from tests.support.fakes.pusher import FakePusher
from tests.support.fakes.running import body
from tests.support.fakes.signalr import FakeSignalr
from tests.support.fakes.tcp import served
from tests.support.fakes.wsfake import FakeServer

pytestmark = pytest.mark.process

CASES: dict[str, tuple[FakeServer, str, str]] = {
    # protocol: (its fake, the URL's path, its table)
    "phoenix": (
        FakePhoenix(idle_timeout=2.0),
        "/socket/websocket",
        '[target.phoenix]\ntopic = "room:lobby"\nidle_timeout = "2s"\n',
    ),
    "signalr": (
        FakeSignalr(keep_alive=0.5, client_timeout=2.0),
        "/hub",
        '[target.signalr]\nkeep_alive = "500ms"\nclient_timeout = "2s"\nserver_timeout = "2s"\n',
    ),
    "pusher": (
        FakePusher(activity_timeout=2, pong_timeout=1.0),
        "/app/key",
        '[target.pusher]\nactivity_timeout = "2s"\npong_timeout = "1s"\n',
    ),
    "centrifugo": (
        FakeCentrifugo(ping_interval=1, pong_timeout=0.5),
        "/connection/websocket",
        '[target.centrifugo]\nping_interval = "1s"\npong_timeout = "500ms"\n',
    ),
}


def run(tmp_path: Path, protocol: str, workers: int) -> tuple[dict[str, Any], FakeServer]:
    fake, path, table = _fresh(protocol)
    with served(fake) as port:
        profile = tmp_path / f"{protocol}.toml"
        profile.write_text(
            f'[target]\nurl = "ws://127.0.0.1:{port}{path}"\nprotocol = "{protocol}"\n'
            + table
            + body(clients=10, hold="3s", interval="500ms", timeout="400ms")
        )
        res = CliRunner().invoke(
            cli,
            [
                "run",
                str(profile),
                "--workers",
                str(workers),
                "--results-dir",
                str(tmp_path / "r"),
                "--quiet",
            ],
        )
    assert res.exit_code == 0, res.output
    (run_dir,) = (tmp_path / "r").iterdir()
    summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    return summary, fake


def _fresh(protocol: str) -> tuple[FakeServer, str, str]:
    """The case with a new fake (each run its own state)."""
    fake, path, table = CASES[protocol]
    return type(fake)(**_options(fake)), path, table


def _options(fake: FakeServer) -> dict[str, Any]:
    keys = {
        FakePhoenix: ("idle_timeout",),
        FakeSignalr: ("keep_alive", "client_timeout"),
        FakePusher: ("activity_timeout", "pong_timeout"),
        FakeCentrifugo: ("ping_interval", "pong_timeout"),
    }[type(fake)]
    return {k: getattr(fake, k) for k in keys}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("protocol", list(CASES))
def test_held_through_the_cli(tmp_path: Path, protocol: str, workers: int) -> None:
    summary, fake = run(tmp_path, protocol, workers)
    tot = summary["totals"]
    assert tot["connects"] == 10
    assert tot["closes"] == {"client_shutdown": 10}
    assert tot["missed"] == 0
    assert fake.accepted == 10
    assert fake.closed == []
    if workers == 2:
        assert summary["workers"]["planned_clients"] == [5, 5]
    if protocol == "centrifugo":
        assert tot["pings"] == 0
        assert tot["server_pings"] >= 10 * 2
    elif protocol == "signalr":
        assert tot["pongs"] == 0  # one-way
        assert tot["pings"] >= 10 * 2
        assert tot["server_pings"] >= 10 * 2
    else:
        assert tot["pongs"] + tot.get("abandoned", 0) == tot["pings"] >= 10 * 2
    if protocol == "phoenix":
        assert {t for t in fake.targets} == {"/socket/websocket?vsn=2.0.0"}
