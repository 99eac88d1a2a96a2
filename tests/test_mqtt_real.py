"""The MQTT dialect against a real broker: Debian's mosquitto on 127.0.0.1
(soak.servers, recipe "mosquitto"), soak as its own process. Skipped,
naming what is missing, when mosquitto is not installed (.ci/run installs
it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from soak.servers import ServerUnavailable, recipe, start

pytestmark = pytest.mark.process

RUN_TIMEOUT = 90.0  # seconds for one soak run, whatever happens
PROFILE = """
[run]
label = "mqtt-real"
report_interval = "1s"
results_dir = "{results}"
[target]
url = "{url}"
protocol = "mqtt"
connect_timeout = "10s"
[target.mqtt]
version = {version}
keepalive = "{keepalive}"
{mqtt}
[clients]
max_connecting = 50
[[clients.stages]]
kind = "ramp"
to = {clients}
duration = "1s"
[[clients.stages]]
kind = "hold"
duration = "{hold}"
[heartbeat]
interval = "{interval}"
timeout = "{timeout}"
max_missed = {max_missed}
[reconnect]
jitter = "full"
initial_delay = "200ms"
max_delay = "1s"
max_attempts = 20
{extra}
"""


@pytest.fixture
def mosquitto() -> None:
    try:
        from soak.servers.base import prepare

        prepare(recipe("mosquitto"))
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


def profile(tmp_path: Path, url: str, **kw: Any) -> Path:
    values: dict[str, Any] = {
        "results": tmp_path / "results",
        "url": url,
        "version": 4,
        "keepalive": "2s",
        "mqtt": "",
        "clients": 50,
        "hold": "5s",
        "interval": "1s",
        "timeout": "1s",
        "max_missed": 3,
        "extra": "",
    }
    values.update(kw)
    path = tmp_path / "mqtt.toml"
    path.write_text(PROFILE.format(**values))
    return path


def soak(path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "soak", "run", str(path), "--quiet", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(
            f"soak run did not finish in {RUN_TIMEOUT:g}s:\n{out.decode()}"
        ) from None
    return proc.returncode, out.decode(errors="replace")


def summary(tmp_path: Path) -> dict[str, Any]:
    (run_dir,) = (tmp_path / "results").iterdir()
    data: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    return data


def close_events(tmp_path: Path) -> list[dict[str, Any]]:
    (run_dir,) = (tmp_path / "results").iterdir()
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == "close"]


def wait_connected(tmp_path: Path, clients: int, proc: subprocess.Popen[bytes]) -> None:
    """Until an interval of the run says ``clients`` are connected (bounded;
    soak flushes every interval, the broker's log is block-buffered)."""
    deadline = time.monotonic() + 30.0
    while True:
        for path in (tmp_path / "results").glob("*/intervals.jsonl"):
            for line in path.read_text().splitlines():
                if line.endswith("}") and json.loads(line).get("connected") == clients:
                    return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{clients} clients never connected:\n{finish(proc)[1]}")
        time.sleep(0.05)


@pytest.mark.parametrize("version", [4, 5])
def test_clients_are_held_with_no_close_and_no_miss(
    mosquitto: None, tmp_path: Path, version: int
) -> None:
    with start(recipe("mosquitto"), tmp_path / "broker") as server:
        code, out = finish(soak(profile(tmp_path, server.url, version=version)))
    log = server.log.read_text(errors="replace")  # once it stopped: all of it
    assert code == 0, out
    s = summary(tmp_path)
    tot = s["totals"]
    assert tot["connects"] == 50
    assert tot["missed"] == 0
    assert tot["late"] == 0
    assert tot["pongs"] > 50 * 4
    assert tot["pings"] == tot["pongs"] + tot["abandoned"]  # the last may go at the end
    assert tot["closes"] == {"client_shutdown": 50}
    assert s["protocol"]["connacks"] == 50
    assert s["protocol"]["version"] == ("3.1.1" if version == 4 else "5")
    # what the broker saw: soak's ids, the protocol (mosquitto logs 3.1.1 as
    # p2), clean session and the keepalive
    assert f"as soak-000049 (p{2 if version == 4 else 5}, c1, k2)" in log


def test_bad_credentials_are_refused_for_good(mosquitto: None, tmp_path: Path) -> None:
    options = {"username": "soak", "password": "right"}
    mqtt = 'username = "soak"\npassword_env = "MQTT_TEST_PW"'
    with start(recipe("mosquitto"), tmp_path / "broker", options=options) as server:
        path = profile(tmp_path, server.url, mqtt=mqtt, clients=20, hold="20s")
        code, out = finish(soak(path, env={"MQTT_TEST_PW": "wrong"}))
    assert code == 3, out
    tot = summary(tmp_path)["totals"]
    assert tot["connects"] == 0
    assert set(tot["handshake_failures"]) == {"auth"}
    assert tot["handshake_failure_total"] <= 25  # known as permanent: no storm of retries
    error = tot["permanent_failure"]["error"]
    assert error == (
        f"{server.url}: the broker refused the connection: CONNACK return code 5 "
        "(not authorized) (user name from [target.mqtt] username, password from password_env)"
    )
    (run_dir,) = (tmp_path / "results").iterdir()
    assert '"password"' not in (run_dir / "run.json").read_text()


def test_the_right_password_is_let_in(mosquitto: None, tmp_path: Path) -> None:
    options = {"username": "soak", "password": "right"}
    mqtt = 'username = "soak"\npassword_env = "MQTT_TEST_PW"'
    with start(recipe("mosquitto"), tmp_path / "broker", options=options) as server:
        path = profile(tmp_path, server.url, version=5, mqtt=mqtt, clients=10, hold="2s")
        code, out = finish(soak(path, env={"MQTT_TEST_PW": "right"}))
    assert code == 0, out
    assert summary(tmp_path)["totals"]["closes"] == {"client_shutdown": 10}


def test_the_keepalive_timeout_is_justified_with_mosquittos_signature(
    mosquitto: None, tmp_path: Path
) -> None:
    # keepalive 1 s, a PINGREQ every 500 ms; from 2 s every PINGREQ is
    # dropped on the way up: mosquitto (it looks every 5 s for clients
    # silent for more than floor(1.5 x 1) s) closes TCP without a close frame
    extra = '[impairment.drop_heartbeat]\np = 1.0\nfrom = "2s"\nuntil = "30s"\ndirection = "up"\n'
    with start(recipe("mosquitto"), tmp_path / "broker") as server:
        path = profile(
            tmp_path,
            server.url,
            keepalive="1s",
            interval="500ms",
            timeout="250ms",
            max_missed=100,
            clients=10,
            hold="11s",
            extra=extra,
        )
        _, out = finish(soak(path))
    closes = [e for e in close_events(tmp_path) if e["reason"] != "client_shutdown"]
    assert {e["client"] for e in closes} == {f"soak-{i:06d}" for i in range(10)}, out
    for close in closes:  # every client dropped, some again after reconnecting
        assert close["reason"] == "justified_timeout", close
        assert close["initiator"] == "transport"
        assert close["code"] == 1006
        assert close["why"].startswith("closed without a close frame: no "), close
        assert ">= keepalive 1s" in close["why"]
        assert close["evidence"]["consecutive_missed"] >= 1
    tot = summary(tmp_path)["totals"]
    assert tot["false_timeouts"] == 0


def test_a_restart_is_a_storm_every_client_comes_back_from(mosquitto: None, tmp_path: Path) -> None:
    broker = recipe("mosquitto")
    with start(broker, tmp_path / "broker") as server:
        port = server.port
        proc = soak(profile(tmp_path, server.url, version=5, clients=100, hold="8s"))
        wait_connected(tmp_path, 100, proc)
    with start(broker, tmp_path / "broker", port=port) as server:
        code, out = finish(proc)
    assert code in (0, 1), out
    s = summary(tmp_path)
    (storm,) = s["storms"]
    assert storm["lost"] == 100
    assert storm["recovered"] == 100
    assert storm["gave_up"] == 0
    tot = s["totals"]
    # mosquitto says no goodbye when it stops, even to MQTT 5 clients
    assert tot["closes"]["transport_eof"] + tot["closes"].get("transport_reset", 0) == 100
    assert tot["closes"]["client_shutdown"] == 100
    assert tot["reconnects"] == 100
    assert tot["false_timeouts"] == 0


def test_workers_2_hold_the_clients_with_ids_of_their_own(mosquitto: None, tmp_path: Path) -> None:
    with start(recipe("mosquitto"), tmp_path / "broker") as server:
        code, out = finish(soak(profile(tmp_path, server.url, clients=40), "--workers", "2"))
    log = server.log.read_text(errors="replace")
    assert code == 0, out
    tot = summary(tmp_path)["totals"]
    assert tot["connects"] == 40
    assert tot["missed"] == 0
    assert tot["closes"] == {"client_shutdown": 40}  # no session taken over
    assert "soak-w0-000019" in log
    assert "soak-w1-000019" in log


def test_the_brokers_server_keep_alive_is_what_it_enforces(mosquitto: None, tmp_path: Path) -> None:
    # the client declares 30 s; mosquitto's max_keepalive 10 answers 10 in
    # CONNACK (MQTT 5): soak's 1 s heartbeats fit, and the summary says so
    with start(recipe("mosquitto"), tmp_path / "broker", options={"max_keepalive": "10"}) as s:
        path = profile(tmp_path, s.url, version=5, keepalive="30s", clients=10, hold="2s")
        code, out = finish(soak(path))
    assert code == 0, out
    assert summary(tmp_path)["protocol"]["server_keep_alive_s"] == {"10": 10}
