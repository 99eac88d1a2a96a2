"""The live page's state and handlers (soak.dashboard), fed by a real Runner
under MockClock, and ``--dashboard``'s bad input. The page in a browser
against a real run: tests/test_dashboard_browser.py."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner

from soak.cli import cli
from soak.config.overrides import override
from soak.dashboard import MAX_AGE, MAX_POINTS, Dashboard, Series, csp, page_bytes
from soak.dashboard_run import dashboard_server, serve_beside
from soak.gateway import Gateway, GatewayConfig
from soak.gateway.bugs import DropHeartbeat, IgnoreMaxMissed
from soak.httpd import HttpServer, Request
from soak.recorder import Recorder
from soak.run.runner import Runner
from tests.support.runs import WALL0, gateway_opener, make_profile

PROFILE = """
[run]
label = "dash"
report_interval = "2s"
[target.server_heartbeat]
interval = "1s"
timeout = "1.5s"
max_missed = 3
[[clients.stages]]
kind = "ramp"
to = 10
duration = "1s"
[[clients.stages]]
kind = "hold"
duration = "9s"
[heartbeat]
interval = "1s"
timeout = "1s"
max_missed = 3
"""


def board(**kw: Any) -> Dashboard:
    args: dict[str, Any] = dict(
        label="l", target="ws://u:secret@h:1/ws", run="r", duration=10.0, interval=2.0
    )
    return Dashboard(**{**args, **kw})


def get(path: str, host: str = "127.0.0.1:5") -> Request:
    return Request("GET", path, "", {"host": host})


def status(d: Dashboard) -> dict[str, Any]:
    resp = d.status_handler(get("/status.json"))
    assert resp.status == 200
    assert resp.content_type == "application/json"
    return dict(json.loads(resp.body))


async def test_a_run_feeds_the_page_and_its_false_timeouts_show_as_they_happen(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    profile = make_profile(PROFILE)
    config = GatewayConfig(
        hb_interval=1.0,
        hb_timeout=1.5,
        max_missed=3,
        check_every=0.1,
        bugs=(IgnoreMaxMissed(), DropHeartbeat(1)),
    )
    gateway = Gateway(config)
    dash = board(clock=trio.current_time)
    seen: list[dict[str, Any]] = []
    recorder = Recorder(tmp_path, "dash", WALL0)
    async with trio.open_nursery() as servers:
        runner = Runner(
            profile,
            recorder,
            open_stream=gateway_opener(gateway)(servers),
            on_status=dash.status,
            on_interval=dash.interval,
            lag_probe=None,
            manage_gc=False,
        )
        dash.watch(runner.findings_so_far, runner.facts.storms)

        async def poll() -> None:  # a browser, once a second
            while True:
                await trio.sleep(1.0)
                seen.append({"at": trio.current_time() - start, **status(dash)})

        start = trio.current_time()
        servers.start_soon(poll)
        outcome = await runner.run()
        servers.cancel_scope.cancel()
    final = status(dash)
    # the same figures as the terminal view and intervals.jsonl
    records = [
        json.loads(x) for x in (recorder.path / "intervals.jsonl").read_text().split("\n")[:-1]
    ]
    assert final["intervals"] == len(records)
    assert final["series"]["connected"] == [r["connected"] for r in records]
    assert final["totals"]["pongs"] == sum(r["pongs"] for r in records)
    assert final["totals"]["closes"]["false_timeout"] == outcome.summary["totals"]["false_timeouts"]
    assert final["target"] == "ws://h:1/ws"  # credentials never on the page
    assert final["live"]["target"] == 10
    # the finding appears in the first poll after the first false timeout
    events = [json.loads(x) for x in (recorder.path / "events.jsonl").read_text().splitlines()]
    first = min(e["t"] for e in events if e.get("reason") == "false_timeout")
    before = [s for s in seen if s["at"] < first]
    assert before
    assert all(f["key"] != "false_timeouts" for s in before for f in s["findings"])
    shown = seen[len(before)]  # the first poll after it
    assert shown["findings"][0]["key"] == "false_timeouts"
    assert shown["findings"][0]["severity"] == "error"
    assert shown["findings"][0]["count"] >= 1
    assert next(f["key"] for f in final["findings"]) == outcome.summary["findings"][0]["key"]


def test_the_document_is_built_once_per_update() -> None:
    calls = []

    def findings() -> list[Any]:
        calls.append(1)
        return []

    now = [100.0]
    d = board(clock=lambda: now[0])
    d.watch(findings, list)
    a = d.status_handler(get("/status.json")).body
    now[0] += 0.4
    assert d.status_handler(get("/status.json")).body is a
    assert len(calls) == 1
    d.status({"connected": 3})
    assert json.loads(d.status_handler(get("/status.json")).body)["live"] == {"connected": 3}
    assert len(calls) == 2
    # without an update, the findings are asked again after MAX_AGE
    now[0] += MAX_AGE
    d.status_handler(get("/status.json"))
    assert len(calls) == 3


def test_the_series_keeps_dips_and_spikes_in_bounded_memory() -> None:
    s = Series(limit=8)
    for i in range(100):
        s.add(
            {
                "t": i,
                "dt": 1,
                "connected": 1 if i == 50 else 10,
                "target": 10,
                "rtt_p99_ms": 900.0 if i == 70 else 5.0,
                "rtt_p50_ms": None,
                "missed": 1,
                "false_timeouts": 0,
            }
        )
    cols = s.columns()
    assert len(cols["t"]) < 8
    assert min(cols["connected"]) == 1
    assert max(cols["rtt_p99_ms"]) == 900.0
    assert sum(cols["missed"]) == 100
    assert cols["t"][-1] == 100
    assert MAX_POINTS >= 100


def test_the_page_is_self_contained_and_its_policy_allows_only_its_own_script() -> None:
    page = page_bytes()
    text = page.decode()
    # no external request: no src, no link, no URL but the SVG namespace
    assert not re.search(r"\b(src|href)\s*=", text)
    assert re.findall(r"https?://[^\s\"']+", text) == ["http://www.w3.org/2000/svg"]
    assert 'fetch("status.json"' in text
    (script,) = re.findall(rb"<script>(.*?)</script>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
    policy = csp(page)
    assert f"script-src 'sha256-{digest}'" in policy
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    resp = board().page_handler(get("/"))
    assert resp.status == 200
    assert resp.body == page
    assert dict(resp.headers)["content-security-policy"] == policy


@pytest.mark.parametrize("host", ["127.0.0.1:5665", "localhost:1", "[::1]:80", "localhost"])
def test_loopback_hosts_are_answered(host: str) -> None:
    assert board().status_handler(get("/status.json", host)).status == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5665", "10.0.0.1:5665"])
def test_other_host_headers_are_refused(host: str) -> None:
    d = board()
    for handler in (d.page_handler, d.status_handler):
        resp = handler(get("/", host))
        assert resp.status == 403
        assert resp.body.decode() == f"the dashboard answers only 127.0.0.1, not {host!r}\n"


BODY = '[target]\nurl = "ws://127.0.0.1:9/ws"\n' + PROFILE


def invoke(tmp_path: Path, *args: str) -> Any:
    path = tmp_path / "p.toml"
    path.write_text(BODY)
    return CliRunner().invoke(cli, ["run", str(path), *args, "--results-dir", str(tmp_path / "r")])


@pytest.mark.parametrize("port", ["70000", "65536", "http", "5665.5"])
def test_a_port_out_of_range_is_one_line(tmp_path: Path, port: str) -> None:
    res = invoke(tmp_path, f"--dashboard={port}")
    assert res.exit_code == 2
    (line,) = res.output.strip().splitlines()
    assert line.startswith("Error: --dashboard: expected a TCP port from 0 to 65535")
    assert port in line
    assert not (tmp_path / "r").exists()


def test_a_port_in_the_profile_is_checked_as_the_option(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(BODY.replace('report_interval = "2s"', 'dashboard_port = "x"'))
    res = CliRunner().invoke(cli, ["run", str(path)])
    assert res.exit_code == 2
    (line,) = res.output.strip().splitlines()
    assert "run.dashboard_port" in line
    assert "expected a TCP port" in line


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        res = invoke(tmp_path, f"--dashboard={port}")
    finally:
        taken.close()
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"Error: --dashboard {port}: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert not (tmp_path / "r").exists()


def test_the_same_port_as_the_metrics_shares_their_server() -> None:
    metrics = HttpServer("127.0.0.1", 0)
    port = metrics.bind()
    p = override(make_profile(PROFILE), metrics_port=str(port), dashboard_port=str(port))
    other = None
    try:
        assert dashboard_server(p, metrics) is metrics
        # a different port: a server of its own, on 127.0.0.1
        other = dashboard_server(override(p, dashboard_port="0"), metrics)
        assert other is not None
        assert other is not metrics
        assert other.host == "127.0.0.1"
        assert other.port not in (0, port)
    finally:
        for s in (metrics, other):
            if s is not None and s._sock is not None:
                s._sock.close()


def test_sharing_a_port_the_metrics_open_wider_is_refused(tmp_path: Path) -> None:
    res = invoke(tmp_path, "--metrics-port=1", "--metrics-addr=0.0.0.0", "--dashboard=1")
    assert res.exit_code == 2
    (line,) = res.output.strip().splitlines()
    assert line == (
        "Error: --dashboard 1: the dashboard listens on 127.0.0.1 only, and --metrics-port 1 "
        "on 0.0.0.0; give the dashboard another port"
    )


async def test_one_server_shared_is_served_once() -> None:
    served: list[int] = []

    class Fake(HttpServer):
        async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            served.append(id(self))
            task_status.started(0)
            await trio.sleep_forever()

    a, b = Fake(), Fake()

    async def main() -> str:
        return "done"

    assert await serve_beside((a, a), main) == "done"
    assert served == [id(a)]
    assert await serve_beside((a, None, b), main) == "done"
    assert served == [id(a), id(a), id(b)]
    assert await serve_beside((None, None), main) == "done"
