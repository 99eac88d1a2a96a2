"""``soak run --workers 2 --dashboard P --metrics-port P`` against the
reference gateway: one server answers the page, /status.json and /metrics,
and the page's figures are the parent's merged view of both workers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from soak.childproc import gateway_process, stop

pytestmark = pytest.mark.process

PROFILE = """
[run]
label = "two"
duration = "8s"
report_interval = "1s"
[target]
url = "ws://127.0.0.1:9/ws"
protocol = "json"
[[clients.stages]]
kind = "ramp"
to = 30
duration = "1s"
[[clients.stages]]
kind = "hold"
duration = "7s"
[heartbeat]
interval = "1s"
timeout = "2s"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.headers["content-type"], r.read()


def test_workers_merged_on_the_page_sharing_the_metrics_server(tmp_path: Path) -> None:
    profile = tmp_path / "two.toml"
    profile.write_text(PROFILE)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    docs: list[dict[str, Any]] = []
    with gateway_process() as gw:
        run = subprocess.Popen(
            [
                *(sys.executable, "-m", "soak", "run", str(profile), "--quiet"),
                *("--url", gw.url, "--workers", "2", "--results-dir", str(tmp_path / "r")),
                *(f"--metrics-port={port}", f"--dashboard={port}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            metrics = b""
            while run.poll() is None and time.monotonic() < deadline:
                try:
                    docs.append(json.loads(get(f"{base}/status.json")[2]))
                    if not metrics:
                        metrics = get(f"{base}/metrics")[2]
                        status, kind, page = get(f"{base}/")
                        assert status == 200
                        assert kind == "text/html; charset=utf-8"
                        assert b"status.json" in page
                except OSError:
                    pass  # not listening yet, or gone at the end
                time.sleep(0.5)
            _, err = run.communicate(timeout=60)
        finally:
            stop(run)
    assert run.returncode == 0, err
    assert f"Prometheus metrics at {base}/metrics" in err
    assert f"live dashboard at {base}/" in err
    assert b"soak_clients_connected" in metrics
    full = [d for d in docs if d["live"].get("connected") == 30]
    assert full, [d["live"] for d in docs]
    assert all(d["workers"] == 2 for d in docs)
    assert all(d["live"]["target"] == 30 for d in full)
    # the parent's intervals: both workers' pongs added up
    (run_dir,) = (tmp_path / "r").iterdir()
    records = [json.loads(x) for x in (run_dir / "intervals.jsonl").read_text().splitlines()]
    last = docs[-1]
    n = last["intervals"]
    assert n >= 3
    assert last["totals"]["pongs"] == sum(r["pongs"] for r in records[:n])
    assert last["series"]["connected"] == [r["connected"] for r in records[:n]]
    assert max(last["series"]["connected"]) == 30
