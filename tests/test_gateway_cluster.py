"""``soak gateway --workers N``: several processes on one port (SO_REUSEPORT).

The merge of the workers' stats is a pure function, tested with numbers.
The real-process tests start ``python -m soak gateway --port 0 --workers 2``
on 127.0.0.1, with blocking sockets that time out, so every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Request,
    TextMessage,
)

from soak.childproc import SoakChild, gateway_process
from soak.cli import cli
from soak.errors import LocalError
from soak.gateway.cluster import EXIT_WORKER_LOST, check_workers, merge_stats

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 10.0  # every socket operation and every wait for the gateway

# -- pure ------------------------------------------------------------------------


def snapshot(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "connections": 0,
        "accepted_total": 0,
        "closes_by_reason": {},
        "pings_received": 0,
        "gc_pause_max_ms": 0.0,
        "uptime_s": 0.0,
        "heartbeat": {"interval": 30.0, "timeout": 120.0, "max_missed": 3},
        "bugs": [],
        "restarts": 0,
        "refusing_until": None,
    }
    return {**base, **fields}


def test_merge_adds_counters_and_keeps_maxima() -> None:
    a = snapshot(
        connections=3,
        accepted_total=5,
        pings_received=40,
        closes_by_reason={"client_1000": 2},
        gc_pause_max_ms=1.5,
        uptime_s=10.0,
        pid=11,
        restarts=1,
        refusing_until=2.0,
    )
    b = snapshot(
        connections=4,
        accepted_total=4,
        pings_received=2,
        closes_by_reason={"client_1000": 1, "heartbeat_timeout": 3},
        gc_pause_max_ms=0.5,
        uptime_s=9.5,
        pid=12,
        restarts=1,
    )
    m = merge_stats([a, b])
    assert m["connections"] == 7
    assert m["accepted_total"] == 9
    assert m["pings_received"] == 42
    assert m["closes_by_reason"] == {"client_1000": 3, "heartbeat_timeout": 3}
    assert m["gc_pause_max_ms"] == 1.5
    assert m["uptime_s"] == 10.0
    assert m["restarts"] == 2
    assert m["refusing_until"] == 2.0
    assert m["heartbeat"] == a["heartbeat"]
    assert "pid" not in m
    assert m["workers"] == [
        {"worker": 0, "pid": 11, "connections": 3, "accepted_total": 5},
        {"worker": 1, "pid": 12, "connections": 4, "accepted_total": 4},
    ]
    assert m["stale_workers"] == []


def test_merge_names_stale_workers_and_tolerates_an_empty_snapshot() -> None:
    m = merge_stats([snapshot(connections=2), {}], stale=[1])
    assert m["connections"] == 2
    assert m["stale_workers"] == [1]
    assert m["refusing_until"] is None


@pytest.mark.parametrize("value", [0, -1])
def test_check_workers_rejects_fewer_than_one(value: int) -> None:
    with pytest.raises(LocalError, match=rf"--workers: expected .* >= 1, got {value}"):
        check_workers(value)


@pytest.mark.parametrize("value", ["0", "-3"])
def test_gateway_workers_option_bad_value(value: str) -> None:
    result = CliRunner().invoke(cli, ["gateway", "--port", "0", "--workers", value])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        f"Error: gateway: --workers: expected a whole number of processes >= 1, got {value}"
    ]


# -- real processes ----------------------------------------------------------------


def _wait(proc: subprocess.Popen[str]) -> int:
    try:
        return proc.wait(timeout=TIMEOUT + 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("the gateway did not exit in time")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SoakChild]:
    with gateway_process(
        "--workers",
        "2",
        "--truth-log",
        str(tmp_path / "truth.jsonl"),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        start_timeout=TIMEOUT,
        stop_timeout=TIMEOUT + 10,
    ) as gw:
        assert gw.line.startswith("soak gateway listening on 127.0.0.1:"), gw.line
        yield gw
    assert not gw.killed, "the gateway did not exit in time"


class WsClient:
    """A blocking WebSocket client for these tests; every read times out."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target="/ws")))
        assert isinstance(self.next_event(), AcceptConnection)

    def next_event(self) -> Event:
        while True:
            for event in self.ws.events():
                return event
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the gateway")
            self.ws.receive_data(data)

    def ping(self, seq: int) -> dict[str, Any]:
        msg = {"type": "ping", "timestamp": 1, "clientId": f"c{seq}", "seq": seq}
        self.sock.sendall(self.ws.send(TextMessage(data=json.dumps(msg))))
        event = self.next_event()
        assert isinstance(event, TextMessage)
        pong: dict[str, Any] = json.loads(event.data)
        return pong

    def close_code(self) -> int:
        event = self.next_event()
        assert isinstance(event, CloseConnection), event
        return int(event.code)


def http(port: int, method: str, path: str) -> tuple[int, dict[str, Any]]:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


CONNS = 40  # both workers get some: P(all on one) = 2**-39


@pytest.mark.process
def test_connections_spread_stats_add_up_and_restart_reaches_all(
    cluster: SoakChild, tmp_path: Path
) -> None:
    clients = [WsClient(cluster.port) for _ in range(CONNS)]
    for i, c in enumerate(clients):
        assert c.ping(i)["type"] == "pong"
    status, stats = http(cluster.port, "GET", "/api/stats")
    assert status == 200
    assert stats["connections"] == CONNS
    assert stats["accepted_total"] == CONNS
    assert stats["pings_received"] == CONNS
    assert stats["pongs_sent"] == CONNS
    assert stats["stale_workers"] == []
    per = [w["connections"] for w in stats["workers"]]
    assert len(per) == 2
    assert sum(per) == CONNS
    assert min(per) > 0, per  # the kernel spread them over both workers

    status, body = http(cluster.port, "POST", "/admin/restart?outage=0")
    assert status == 202
    assert body["workers"] == 2
    assert [c.close_code() for c in clients] == [1012] * CONNS
    for c in clients:
        c.sock.close()
    status, stats = http(cluster.port, "GET", "/api/stats")
    assert stats["restarts"] == 2  # each worker restarted once
    assert stats["closes_by_reason"].get("service_restart") == CONNS

    records = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert len(records) == CONNS
    assert {r["reason"] for r in records} == {"service_restart"}
    assert {r["worker"] for r in records} == {0, 1}
    assert len({(r["worker"], r["conn"]) for r in records}) == CONNS


@pytest.mark.process
def test_sigusr2_to_the_parent_restarts_every_worker(cluster: SoakChild) -> None:
    clients = [WsClient(cluster.port) for _ in range(CONNS)]
    for i, c in enumerate(clients):
        c.ping(i)
    cluster.proc.send_signal(signal.SIGUSR2)
    assert [c.close_code() for c in clients] == [1012] * CONNS
    for c in clients:
        c.sock.close()


@pytest.mark.process
def test_sigterm_closes_every_client_with_1001_and_exits_0(cluster: SoakChild) -> None:
    clients = [WsClient(cluster.port) for _ in range(CONNS)]
    for i, c in enumerate(clients):
        c.ping(i)
    cluster.proc.terminate()
    assert [c.close_code() for c in clients] == [1001] * CONNS
    for c in clients:
        c.sock.close()
    assert _wait(cluster.proc) == 0


@pytest.mark.process
def test_a_worker_that_dies_is_reported_and_the_gateway_exits_3(cluster: SoakChild) -> None:
    _status, stats = http(cluster.port, "GET", "/api/stats")
    victim = stats["workers"][1]["pid"]
    os.kill(victim, signal.SIGKILL)
    assert _wait(cluster.proc) == EXIT_WORKER_LOST
    assert cluster.proc.stderr is not None
    err = cluster.proc.stderr.read()
    assert f"worker 1 (pid {victim}) was killed by SIGKILL; stopping the other workers" in err
