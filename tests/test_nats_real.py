"""The NATS dialect against a real server: Debian's nats-server on
127.0.0.1 (soak.servers, recipe "nats") with ping_interval 1 s, soak as its
own process. Skipped, naming what is missing, when nats-server is not
installed (.ci/run installs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from soak.servers import ServerUnavailable, recipe, start
from tests.test_mqtt_real import close_events, finish, soak, summary, wait_connected

pytestmark = pytest.mark.process

PROFILE = """
[run]
label = "nats-real"
report_interval = "1s"
results_dir = "{results}"
[target]
url = "{url}"
protocol = "nats"
[target.nats]
ping_interval = "1s"
ping_max = 2
{nats}
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
timeout = "400ms"
max_missed = {max_missed}
[reconnect]
jitter = "full"
initial_delay = "200ms"
max_delay = "1s"
max_attempts = 20
{extra}
"""
OPTIONS = {"ping_interval": "1", "ping_max": "2"}


@pytest.fixture
def nats() -> None:
    try:
        from soak.servers.base import prepare

        prepare(recipe("nats"))
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


def profile(tmp_path: Path, url: str, **kw: Any) -> Path:
    values: dict[str, Any] = {
        "results": tmp_path / "results",
        "url": url,
        "nats": "",
        "clients": 50,
        "hold": "4s",
        "interval": "500ms",
        "max_missed": 3,
        "extra": "",
    }
    values.update(kw)
    path = tmp_path / "nats.toml"
    path.write_text(PROFILE.format(**values))
    return path


def test_clients_are_held_with_no_close_and_no_miss(nats: None, tmp_path: Path) -> None:
    with start(recipe("nats"), tmp_path / "server", options=OPTIONS) as server:
        code, out = finish(soak(profile(tmp_path, server.url)))
    assert code == 0, out
    s = summary(tmp_path)
    tot = s["totals"]
    assert tot["connects"] == 50
    assert tot["missed"] == 0
    assert tot["pongs"] > 50 * 5
    assert tot["pings"] == tot["pongs"] + tot["abandoned"]
    assert tot["closes"] == {"client_shutdown": 50}
    assert s["protocol"]["connected"] == 50


def test_a_quiet_client_answers_the_servers_pings(nats: None, tmp_path: Path) -> None:
    # soak's own PING every 30 s: nats-server pings every second, soak answers
    with start(recipe("nats"), tmp_path / "server", options=OPTIONS) as server:
        path = profile(tmp_path, server.url, clients=10, interval="30s", hold="4s")
        code, out = finish(soak(path))
    assert code == 0, out
    s = summary(tmp_path)
    assert s["totals"]["closes"] == {"client_shutdown": 10}
    assert s["protocol"]["server_pings"] >= 10 * 3


def test_stale_connection_is_justified_with_its_1006_close(nats: None, tmp_path: Path) -> None:
    # from 2 s every PING and PONG of soak's is dropped on the way up: the
    # server pings, hears nothing, and after ping_max says 'Stale Connection'
    extra = '[impairment.drop_heartbeat]\np = 1.0\nfrom = "2s"\nuntil = "30s"\ndirection = "up"\n'
    with start(recipe("nats"), tmp_path / "server", options=OPTIONS) as server:
        path = profile(tmp_path, server.url, clients=10, hold="6s", max_missed=100, extra=extra)
        _, out = finish(soak(path))
    closes = [e for e in close_events(tmp_path) if e["reason"] != "client_shutdown"]
    assert {e["client"] for e in closes} == {f"soak-{i:06d}" for i in range(10)}, out
    for close in closes:
        assert close["reason"] == "justified_timeout", close
        assert (close["initiator"], close["code"], close["text"]) == (
            "server",
            1006,
            "Stale Connection",
        )
        assert close["why"].startswith("-ERR 'Stale Connection': no PONG for "), close
    s = summary(tmp_path)
    assert s["totals"]["false_timeouts"] == 0
    assert s["protocol"]["errors"]["Stale Connection"] == len(closes)


def test_a_wrong_password_is_refused_for_good(nats: None, tmp_path: Path) -> None:
    options = {**OPTIONS, "user": "soak", "password": "right"}
    table = 'user = "soak"\npassword_env = "NATS_TEST_PW"'
    with start(recipe("nats"), tmp_path / "server", options=options) as server:
        path = profile(tmp_path, server.url, nats=table, clients=10, hold="10s")
        code, out = finish(soak(path, env={"NATS_TEST_PW": "wrong"}))
    assert code == 3, out
    tot = summary(tmp_path)["totals"]
    assert tot["connects"] == 0
    assert set(tot["handshake_failures"]) == {"auth"}
    assert tot["permanent_failure"]["error"] == (
        f"{server.url}: the server refused CONNECT: -ERR 'Authorization Violation' "
        "(credentials from [target.nats] user/password_env or token_env)"
    )


def test_the_right_token_is_let_in(nats: None, tmp_path: Path) -> None:
    options = {**OPTIONS, "token": "t0k"}
    with start(recipe("nats"), tmp_path / "server", options=options) as server:
        path = profile(
            tmp_path, server.url, nats='token_env = "NATS_TEST_TK"', clients=5, hold="1s"
        )
        code, out = finish(soak(path, env={"NATS_TEST_TK": "t0k"}))
    assert code == 0, out
    assert summary(tmp_path)["totals"]["closes"] == {"client_shutdown": 5}


def test_a_restart_is_a_storm_every_client_comes_back_from(nats: None, tmp_path: Path) -> None:
    server_recipe = recipe("nats")
    with start(server_recipe, tmp_path / "server", options=OPTIONS) as server:
        port = server.port
        proc = soak(profile(tmp_path, server.url, clients=100, hold="6s"))
        wait_connected(tmp_path, 100, proc)
    with start(server_recipe, tmp_path / "server", port=port, options=OPTIONS):
        code, out = finish(proc)
    assert code in (0, 1), out
    s = summary(tmp_path)
    (storm,) = s["storms"]
    assert storm["lost"] == 100
    assert storm["recovered"] == 100
    assert storm["gave_up"] == 0
    tot = s["totals"]
    assert tot["reconnects"] == 100
    assert tot["closes"]["client_shutdown"] == 100
    assert tot["false_timeouts"] == 0


def test_workers_2_hold_the_clients(nats: None, tmp_path: Path) -> None:
    with start(recipe("nats"), tmp_path / "server", options=OPTIONS) as server:
        code, out = finish(soak(profile(tmp_path, server.url, clients=40), "--workers", "2"))
    assert code == 0, out
    tot = summary(tmp_path)["totals"]
    assert tot["connects"] == 40
    assert tot["missed"] == 0
    assert tot["closes"] == {"client_shutdown": 40}
