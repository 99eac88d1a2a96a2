"""protocol = "socket.io" against the real server: npm socket.io@4 on
127.0.0.1 (soak.servers, recipe "socket.io"), with 1 s pings. Skipped,
naming what is missing, when node or npm cannot be had."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from soak.doctor.target import check_target
from soak.recorder import Recorder, now_wall
from soak.run.runner import Runner
from soak.servers import RealServer, ServerUnavailable, recipe, start
from tests.support.runs import make_profile

pytestmark = pytest.mark.process

# pings every 1 s; 2 s for the answer leaves room for a busy machine
TIMINGS = {"ping_interval": "1000", "ping_timeout": "2000"}


@contextlib.contextmanager
def socketio_server(where: Path, port: int = 0, **options: str) -> Iterator[RealServer]:
    try:
        with start(recipe("socket.io"), where, port=port, options={**TIMINGS, **options}) as srv:
            yield srv
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    with socketio_server(tmp_path_factory.mktemp("socketio")) as srv:
        yield srv


BODY = """
[run]
label = "sio-real"
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
interval = "1s"
timeout = "1s"
max_missed = 3
[reconnect]
enabled = {reconnect}
jitter = "full"
initial_delay = "200ms"
max_delay = "1s"
max_attempts = 0
"""


def body(clients: int, hold: str, *, reconnect: bool = True, extra: str = "") -> str:
    return BODY.format(clients=clients, hold=hold, reconnect=str(reconnect).lower()) + extra


async def run(
    tmp_path: Path,
    url: str,
    text: str,
    *,
    table: str = "",
    keys: str = "",
    environ: dict[str, str] | None = None,
    during: Any = None,
) -> tuple[dict[str, Any], Path]:
    profile = make_profile(
        text,
        url=url,
        results=tmp_path,
        protocol="socket.io",
        target_extra=keys + (f"[target.socketio]\n{table}\n" if table else ""),
        environ=environ,
    )
    recorder = Recorder(tmp_path, profile.run.label, now_wall())
    runner = Runner(profile, recorder, manage_gc=False)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            if during is not None:
                nursery.start_soon(during)
            outcome = await runner.run()
            nursery.cancel_scope.cancel()
    return outcome.summary, recorder.path


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (path / "events.jsonl").read_text().splitlines()]


async def test_clients_are_held_answering_every_server_ping(
    tmp_path: Path, server: RealServer
) -> None:
    summary, _ = await run(tmp_path, server.url, body(20, "4s"))
    tot = summary["totals"]
    assert tot["connects"] == 20
    assert tot["closes"] == {"client_shutdown": 20}
    assert (tot["missed"], tot["server_missed"], tot["zombies"]) == (0, 0, 0)
    assert tot["pings"] == 0  # a client's 2 would end the session at once
    assert tot["server_pings"] >= 40  # about 3 a client in 4 s
    # the server pings pingInterval after each answer reaches it (0.1 %:
    # the histogram's precision)
    assert summary["latency_ms"]["server_gap"]["min"] >= 1000.0 * 0.999
    proto = summary["protocol"]
    assert proto["sessions"] == 20
    assert proto["server_timings_ms"] == ["pingInterval 1000, pingTimeout 2000"]


async def test_engine_io_3_against_the_same_server(tmp_path: Path, server: RealServer) -> None:
    summary, _ = await run(tmp_path, server.url, body(10, "4s"), table="eio = 3")
    tot = summary["totals"]
    assert tot["connects"] == 10
    assert tot["closes"] == {"client_shutdown": 10}
    assert (tot["missed"], tot["zombies"]) == (0, 0)
    assert tot["pongs"] >= 20
    assert tot["pongs"] + tot["abandoned"] == tot["pings"]
    assert summary["protocol"]["engine_io"] == "3"


async def test_dropped_answers_are_the_servers_justified_ping_timeout(
    tmp_path: Path, server: RealServer
) -> None:
    extra = '[impairment.drop_heartbeat]\np = 1.0\ndirection = "up"\nfrom = "1.5s"\n'
    summary, path = await run(tmp_path, server.url, body(5, "6s", reconnect=False, extra=extra))
    tot = summary["totals"]
    # the ping of ~2 s goes unanswered: closed without status ~2 s later
    assert tot["closes"] == {"justified_timeout": 5}
    assert tot["justified_timeouts"] == 5
    assert tot["false_timeouts"] == 0
    closes = [e for e in read_events(path) if e["event"] == "close"]
    assert {(c["initiator"], c["code"]) for c in closes} == {("server", 1005)}
    assert all(c["why"].startswith("the server's ping timeout: ") for c in closes)


async def test_connect_error_refusal_and_the_servers_disconnect(tmp_path: Path) -> None:
    with socketio_server(tmp_path / "srv", auth_token="s3cret", disconnect_after="1500") as srv:
        # no token: "Not authorized", permanent after three refusals
        summary, path = await run(tmp_path / "none", srv.url, body(2, "3s"))
        tot = summary["totals"]
        assert tot["connects"] == 0
        assert tot["handshake_failures"]["connect_error"] >= 3
        assert "Not authorized" in tot["permanent_failure"]["error"]
        assert summary["exit_code"] == 3
        fails = [e for e in read_events(path) if e["event"] == "handshake_failure"]
        assert 'refused: Not authorized ({"reason": "no token"})' in fails[0]["error"]
        # the token, on another namespace: connected, then disconnected by the server
        summary, path = await run(
            tmp_path / "token",
            srv.url,
            body(2, "3s", reconnect=False),
            table='namespace = "/admin"',
            keys='token_env = "SIO_TOKEN"\n',
            environ={"SIO_TOKEN": "s3cret"},
        )
        tot = summary["totals"]
        assert tot["connects"] == 2
        assert tot["closes"] == {"server_socketio_disconnect": 2}
        assert summary["protocol"]["disconnects"] == 2


async def test_a_server_restart_is_measured_as_a_storm(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(socketio_server(tmp_path / "a"))
        port = first.port

        async def restart() -> None:
            await trio.sleep(2.0)
            await trio.to_thread.run_sync(first.stop)
            await trio.sleep(1.0)
            await trio.to_thread.run_sync(
                stack.enter_context, socketio_server(tmp_path / "b", port=port)
            )

        summary, _ = await run(tmp_path / "run", first.url, body(20, "9s"), during=restart)
    tot = summary["totals"]
    (storm,) = summary["storms"]
    assert storm["lost"] == 20
    assert storm["recovered"] == 20
    assert storm["gave_up"] == 0
    lost = {k: v for k, v in tot["closes"].items() if k.startswith("transport_")}
    assert sum(lost.values()) == 20  # the process died: no close frame
    assert tot["closes"]["client_shutdown"] == 20
    assert tot["connects"] == 40
    assert tot["handshake_failures"].get("refused", 0) >= 1  # during the outage


def test_two_workers(tmp_path: Path, server: RealServer) -> None:
    profile = tmp_path / "sio.toml"
    head = f'[target]\nurl = "{server.url}"\nprotocol = "socket.io"\n'
    profile.write_text(head + body(20, "4s"), encoding="utf-8")
    argv = [sys.executable, "-m", "soak", "run", str(profile), "--workers", "2", "--quiet"]
    argv += ["--results-dir", str(tmp_path / "results")]
    done = subprocess.run(
        argv,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    (run_dir,) = (tmp_path / "results").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    tot = summary["totals"]
    assert tot["connects"] == 20
    assert tot["closes"] == {"client_shutdown": 20}
    assert (tot["missed"], tot["server_missed"]) == (0, 0)
    assert tot["server_pings"] >= 40
    proto = summary["protocol"]
    assert proto["sessions"] == 20  # counts add up across workers
    assert len(proto["workers"]) == 2


async def test_doctor_upgrades_as_the_dialect_asks(tmp_path: Path, server: RealServer) -> None:
    profile = make_profile(body(1, "1s"), url=server.url, protocol="socket.io")
    findings = await check_target(profile)
    codes = [f.code for f in findings]
    assert "target-handshake-ok" in codes, [f.message for f in findings]
    assert "target-heartbeat-skipped" in codes
