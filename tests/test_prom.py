"""Live metrics (soak.prom) and the HTTP server they are served by
(soak.httpd): bucket layout and counts from HdrHistograms, the exposition,
the server's answers, and one real socket on 127.0.0.1."""

from __future__ import annotations

import itertools
import random
import socket
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from soak.cli import cli
from soak.httpd import HttpServer, Request, Response, serving
from soak.metrics import Interval, new_histogram
from soak.prom import LiveMetrics, buckets, cumulative
from tests.support.runs import make_profile

PROFILE = """
[run]
label = "live"
[[clients.stages]]
kind = "hold"
duration = "10s"
[thresholds]
rtt_p99 = "250ms"
connect_max = "3s"
heartbeat_success = "99%"
"""


def test_buckets_are_geometric_with_the_thresholds_as_bounds() -> None:
    b = buckets()
    assert b[0] == 0.0001
    assert b[-1] >= 120.0
    assert all(1.24 < y / x < 1.26 for x, y in itertools.pairwise(b))
    assert len(b) == 64
    with_th = buckets([0.25, 3.0])
    assert 0.25 in with_th
    assert 3.0 in with_th
    assert len(with_th) == 66


def test_cumulative_counts_match_hdrhistograms_own_iteration() -> None:
    rng = random.Random(5)
    h = new_histogram()
    for _ in range(5000):
        h.record_value(int(rng.lognormvariate(10, 1.2)))
    h.record_value(0)
    h.record_value(250_000)  # exactly on a bound: counted at the bound
    h.record_value(250_400)  # above it, beyond the 0.1% resolution
    bounds = buckets([0.25])
    got, total = cumulative(h, bounds)
    want = [0] * len(bounds)
    for item in h.get_recorded_iterator():
        for j, bound in enumerate(bounds):
            if item.value_iterated_to <= bound * 1_000_000:
                want[j] += item.count_at_value_iterated_to
    assert got == want
    assert total == pytest.approx(h.get_mean_value() * h.get_total_count() / 1e6, rel=1e-9)
    empty, zero = cumulative(new_histogram(), bounds)
    assert empty == [0] * len(bounds)
    assert zero == 0.0


def _interval(rtts_ms: list[float], index: int = 0) -> Interval:
    iv = Interval(index, float(index))
    iv.counts["pings"] = len(rtts_ms) + 1
    iv.counts["pongs"] = len(rtts_ms)
    iv.counts["missed"] = 1
    for ms in rtts_ms:
        iv.hist["rtt"].record_value(int(ms * 1000))
    iv.closes["server_1012_service_restart"] += 2
    iv.closes_by_category["server"] += 2
    iv.handshake_failures["refused"] += 1
    iv.connected, iv.target, iv.connecting = 40, 50, 3
    return iv


def families(live: LiveMetrics) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(live.render().decode()):
        out[fam.name] = [(s.name, s.labels, s.value) for s in fam.samples]
    return out


def test_the_exposition_adds_up_intervals_and_follows_the_conventions() -> None:
    live = LiveMetrics(make_profile(PROFILE), run="20261203T120000Z-live", shard=1, shards=4)
    live.interval(_interval([10.0, 20.0, 300.0]), {"gave_up": 2, "events_dropped": 1})
    live.interval(_interval([15.0], 1), {"gave_up": 2})
    live.status({"connected": 41, "target": 50, "connecting": 0, "gave_up": 2})
    f = families(live)
    labels = {"run": "20261203T120000Z-live", "shard": "1"}
    assert f["soak_heartbeat_pongs"] == [("soak_heartbeat_pongs_total", labels, 4.0)]
    assert f["soak_heartbeats_sent"][0][2] == 6.0
    assert f["soak_heartbeats_missed"][0][2] == 2.0
    assert f["soak_clients_connected"] == [("soak_clients_connected", labels, 41.0)]
    assert f["soak_clients_gave_up"][0][2] == 2.0
    assert f["soak_events_dropped"][0][2] == 1.0
    closes = f["soak_closes"]
    assert closes == [
        ("soak_closes_total", {**labels, "reason": "server_1012_service_restart"}, 4.0)
    ]
    assert f["soak_handshake_failures"][0][1]["cause"] == "refused"
    info = f["soak_run_info"][0]
    assert info[1]["shards"] == "4"
    assert info[1]["profile"] == "test.toml"
    rtt = {
        s[1].get("le"): s[2] for s in f["soak_heartbeat_rtt_seconds"] if s[0].endswith("_bucket")
    }
    assert rtt["0.25"] == 3.0  # the threshold is a bound of its own: exact
    assert rtt["+Inf"] == 4.0
    count = [s for s in f["soak_heartbeat_rtt_seconds"] if s[0].endswith("_count")]
    assert count[0][2] == 4.0
    total = next(s for s in f["soak_heartbeat_rtt_seconds"] if s[0].endswith("_sum"))[2]
    assert total == pytest.approx(0.345, rel=2e-3)
    assert "soak_connection_gap" not in f  # no [target.stats]: no series
    assert all(name.startswith("soak_") for name in f)


def test_label_values_are_bounded() -> None:
    live = LiveMetrics(make_profile(PROFILE), run="r")
    iv = Interval(0, 0.0)
    for code in range(4000, 4100):
        iv.closes[f"server_{code}"] += 1
    live.interval(iv, {})
    reasons = {s[1]["reason"]: s[2] for s in families(live)["soak_closes"]}
    assert len(reasons) == 51
    assert reasons["other"] == 50.0


def test_the_server_answers_routes_and_refuses_the_rest() -> None:
    server = HttpServer()
    server.route("/metrics", lambda r: Response(200, b"ok"))

    def broken(r: Request) -> Response:
        raise RuntimeError("boom\nsecond line")

    server.route("/broken", broken)
    get = Request("GET", "/metrics", "", {})
    assert server.handle(get).body == b"ok"
    assert server.handle(Request("POST", "/metrics", "", {})).status == 405
    missing = server.handle(Request("GET", "/nope", "", {}))
    assert missing.status == 404
    assert missing.body == b"not found: /nope (known: /broken, /metrics)\n"
    err = server.handle(Request("GET", "/broken", "", {}))
    assert err.status == 500
    assert err.body == b"RuntimeError: boom\n"
    with pytest.raises(ValueError, match="absolute path"):
        server.route("metrics", lambda r: Response())


def test_a_port_in_use_is_one_line_of_bad_input(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(OSError, match="in use"):
            HttpServer("127.0.0.1", port).bind()
        path = tmp_path / "p.toml"
        path.write_text('[target]\nurl = "ws://127.0.0.1:9/ws"\n' + PROFILE)
        res = CliRunner().invoke(
            cli, ["run", str(path), f"--metrics-port={port}", "--results-dir", str(tmp_path / "r")]
        )
    finally:
        taken.close()
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"Error: --metrics-port {port}: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert not (tmp_path / "r").exists()


@pytest.mark.process
async def test_metrics_over_a_real_socket_beside_the_run() -> None:
    live = LiveMetrics(make_profile(PROFILE), run="r")
    live.interval(_interval([12.0]), {})
    server = HttpServer("127.0.0.1", 0)
    server.route("/metrics", live.handler)
    port = server.bind()
    assert port > 0

    async def fetch(request: bytes) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request)
            data = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some(65536):
                    data += chunk
            return data

    async def main() -> list[bytes]:
        return [
            await fetch(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            await fetch(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            await fetch(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            await fetch(b"garbage\r\n\r\n"),
        ]

    got, head, missing, garbage = await serving(server, main)
    assert got.startswith(b"HTTP/1.1 200 ")
    assert b"content-type: text/plain; version=0.0.4" in got
    assert b"soak_heartbeat_pongs_total{" in got
    assert head.startswith(b"HTTP/1.1 200 ")
    assert head.endswith(b"\r\n\r\n")  # no body
    assert missing.startswith(b"HTTP/1.1 404 ")
    assert garbage == b"" or garbage.startswith(b"HTTP/1.1 400")
