"""The STOMP dialect against a real broker: Debian's RabbitMQ with
rabbitmq_web_stomp on 127.0.0.1 (soak.servers, recipe "rabbitmq"), soak as
its own process; and the same broker's web-MQTT listener as a second MQTT
server for the MQTT dialect. The broker takes ~15 s to start, so ONE is
shared by the module's tests (the restart test, last, restarts it).
Skipped, naming what is missing, when rabbitmq-server is not installed
(.ci/run installs it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from soak.servers import RealServer, ServerUnavailable, recipe, start
from soak.servers.rabbitmq import ports
from tests.test_mqtt_real import close_events, finish, soak, summary, wait_connected
from tests.test_mqtt_real import profile as mqtt_profile

pytestmark = [pytest.mark.process, pytest.mark.slow]

PROFILE = """
[run]
label = "stomp-real"
report_interval = "1s"
results_dir = "{results}"
[target]
url = "{url}"
protocol = "stomp"
[target.stomp]
incoming = "1s"
{stomp}
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
interval = "1s"
[reconnect]
jitter = "full"
initial_delay = "200ms"
max_delay = "1s"
max_attempts = {attempts}
{extra}
"""


class Broker:
    """The module's one broker, restartable on its port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.stack = contextlib.ExitStack()
        self.server: RealServer = self.stack.enter_context(start(recipe("rabbitmq"), workdir))

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def mqtt_url(self) -> str:
        return f"ws://127.0.0.1:{ports(self.workdir)['web_mqtt']}/ws"

    def stop(self) -> None:
        self.stack.close()

    def start_again(self) -> None:
        port = self.server.port
        self.stack = contextlib.ExitStack()
        self.server = self.stack.enter_context(start(recipe("rabbitmq"), self.workdir, port=port))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    try:
        b = Broker(tmp_path_factory.mktemp("rabbitmq"))
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield b
    finally:
        b.stop()


def profile(tmp_path: Path, url: str, **kw: Any) -> Path:
    values: dict[str, Any] = {
        "results": tmp_path / "results",
        "url": url,
        "stomp": "",
        "clients": 50,
        "hold": "4s",
        "extra": "",
        "attempts": 20,
    }
    values.update(kw)
    path = tmp_path / "stomp.toml"
    path.write_text(PROFILE.format(**values))
    return path


def test_clients_are_held_with_beats_both_ways_and_no_close(broker: Broker, tmp_path: Path) -> None:
    code, out = finish(soak(profile(tmp_path, broker.url)))
    assert code == 0, out
    s = summary(tmp_path)
    tot = s["totals"]
    assert tot["connects"] == 50
    assert tot["pings"] >= 50 * 4  # soak's beats, on the negotiated 1 s
    assert tot["missed"] == 0
    assert tot["pongs"] == 0  # a heart-beat has no reply
    assert tot["server_pings"] >= 50 * 3  # RabbitMQ's beats
    assert tot["closes"] == {"client_shutdown": 50}
    proto = s["protocol"]
    assert proto["negotiated"] == {"1000,1000": 50}
    assert proto["versions"] == {"1.2": 50}


def test_stomp_died_is_justified(broker: Broker, tmp_path: Path) -> None:
    # from 2 s soak's beats are dropped on the way up: RabbitMQ closes 1000
    # "STOMP died" (soak's own silence rule is not at stake: its beats come)
    extra = '[impairment.drop_heartbeat]\np = 1.0\nfrom = "2s"\nuntil = "30s"\ndirection = "up"\n'
    _, out = finish(soak(profile(tmp_path, broker.url, clients=10, hold="4s", extra=extra)))
    closes = [e for e in close_events(tmp_path) if e["reason"] != "client_shutdown"]
    assert {e["client"] for e in closes} == {f"soak-{i:06d}" for i in range(10)}, out
    for close in closes:
        assert close["reason"] == "justified_timeout", close
        assert (close["initiator"], close["code"], close["text"]) == ("server", 1000, "STOMP died")
        assert "no beat from soak reached the server" in close["why"]
    assert summary(tmp_path)["totals"]["false_timeouts"] == 0


def test_bad_credentials_are_refused_for_good(broker: Broker, tmp_path: Path) -> None:
    stomp = 'login = "guest"\npasscode_env = "STOMP_TEST_PC"'
    path = profile(tmp_path, broker.url, stomp=stomp, clients=10, hold="10s")
    code, out = finish(soak(path, env={"STOMP_TEST_PC": "wrong"}))
    assert code == 3, out
    tot = summary(tmp_path)["totals"]
    assert tot["connects"] == 0
    assert set(tot["handshake_failures"]) == {"auth"}
    assert tot["handshake_failure_total"] <= 15
    assert "the server refused CONNECT: ERROR" in tot["permanent_failure"]["error"]
    assert "Access refused for user 'guest'" in tot["permanent_failure"]["error"]


def test_workers_2_hold_the_clients(broker: Broker, tmp_path: Path) -> None:
    code, out = finish(soak(profile(tmp_path, broker.url, clients=40), "--workers", "2"))
    assert code == 0, out
    tot = summary(tmp_path)["totals"]
    assert tot["connects"] == 40
    assert tot["closes"] == {"client_shutdown": 40}


def test_web_mqtt_holds_mqtt_clients(broker: Broker, tmp_path: Path) -> None:
    path = mqtt_profile(tmp_path, broker.mqtt_url, clients=50, hold="4s")
    code, out = finish(soak(path))
    assert code == 0, out
    s = summary(tmp_path)
    tot = s["totals"]
    assert tot["connects"] == 50
    assert tot["missed"] == 0
    assert tot["closes"] == {"client_shutdown": 50}
    assert s["protocol"]["connacks"] == 50


def test_web_mqtt_keepalive_timeout_is_mqtt_died(broker: Broker, tmp_path: Path) -> None:
    extra = '[impairment.drop_heartbeat]\np = 1.0\nfrom = "2s"\nuntil = "30s"\ndirection = "up"\n'
    path = mqtt_profile(
        tmp_path,
        broker.mqtt_url,
        keepalive="1s",
        interval="500ms",
        timeout="250ms",
        max_missed=100,
        clients=10,
        hold="5s",
        extra=extra,
    )
    _, out = finish(soak(path))
    closes = [e for e in close_events(tmp_path) if e["reason"] != "client_shutdown"]
    assert closes, out
    for close in closes:
        assert close["reason"] == "justified_timeout", close
        assert (close["initiator"], close["code"], close["text"]) == ("server", 1000, "MQTT died")


def test_a_restart_is_a_storm_every_client_comes_back_from(broker: Broker, tmp_path: Path) -> None:
    # last in the module: it restarts the shared broker (~15 s each way)
    # the broker takes ~10-15 s to come back: attempts enough for a minute
    proc = soak(profile(tmp_path, broker.url, clients=50, hold="40s", attempts=120))
    wait_connected(tmp_path, 50, proc)
    broker.stop()
    broker.start_again()
    code, out = finish(proc)
    assert code in (0, 1), out
    s = summary(tmp_path)
    (storm,) = s["storms"]
    assert storm["lost"] == 50
    assert storm["recovered"] == 50
    assert storm["gave_up"] == 0
    tot = s["totals"]
    assert tot["closes"]["client_shutdown"] == 50
    assert tot["false_timeouts"] == 0
