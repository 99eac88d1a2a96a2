"""A run over two "machines" on loopback, with real parts: two `soak run
--shard` processes (one of them with two worker processes) against the
reference gateway, merged by `soak merge`; and a real Prometheus (Debian's
``prometheus`` package; .ci/run installs it) scraping `soak run
--metrics-port`, queried through its HTTP API. Every process is stopped by
its PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from soak.cli import reference_gateway
from soak.metrics import new_histogram
from soak.prom import buckets
from soak.results.hlog import read
from soak.results.problems import Problems

PROFILE = """
[target]
url = "ws://127.0.0.1:{port}/ws"
[run]
label = "{label}"
report_interval = "1s"
[[clients.stages]]
kind = "ramp"
to = {clients}
duration = "1s"
[[clients.stages]]
kind = "hold"
duration = "{hold}"
[heartbeat]
interval = "250ms"
[thresholds]
rtt_p99 = "250ms"
"""

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = shutil.which("prometheus") or (
    "/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None
)


def soak(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "soak", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.process
def test_two_shards_on_loopback_merge_into_one_run(tmp_path: Path) -> None:
    with reference_gateway([]) as port:
        profile = tmp_path / "p.toml"
        profile.write_text(PROFILE.format(port=port, label="two", clients=21, hold="8s"))
        start = datetime.fromtimestamp(time.time() + 6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        common = ["run", str(profile), f"--start-at={start}", "--results-dir", str(tmp_path)]
        metrics = free_port()
        shards = [
            soak(*common, "--shard=0/2", "--quiet"),
            soak(*common, "--shard=1/2", "--quiet", "--workers=2", f"--metrics-port={metrics}"),
        ]
        try:
            # shard 1's live metrics: its two workers' clients, merged by its parent
            live = scrape_until(metrics, "soak_clients_connected{", 10.0, shards[1])
            outs = [p.communicate(timeout=60) for p in shards]
        finally:
            for p in shards:
                stop(p)
    assert [p.returncode for p in shards] == [0, 0], outs
    (run_dir,) = tmp_path.glob("*-two")
    assert f'run="{run_dir.name}"' in live
    assert 'shard="1"' in live
    merged = subprocess.run(
        [sys.executable, "-m", "soak", "merge", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert merged.returncode == 0, merged.stdout + merged.stderr
    (out,) = run_dir.glob("*-merged")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["shards"]["lost"] == []
    assert summary["shards"]["planned_clients"] == {"0": 11, "1": 10}
    assert summary["totals"]["connects"] == 21
    intervals = [json.loads(x) for x in (out / "intervals.jsonl").read_text().splitlines()]
    assert max(iv["connected"] for iv in intervals) == 21
    # every shard's pongs, and every sample in the merged .hlog
    shard_pongs = 0
    for d in run_dir.glob("*-shard-*"):
        shard_pongs += json.loads((d / "summary.json").read_text())["totals"]["pongs"]
    assert summary["totals"]["pongs"] == shard_pongs > 0
    count = sum(iv.hist.get_total_count() for iv in read(out / "rtt.hlog", Problems()))
    assert count == summary["latency_ms"]["rtt"]["count"] == shard_pongs
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    closes = [e for e in events if e["event"] == "close"]
    assert {e["shard"] for e in closes} == {0, 1}
    assert len({e["client"] for e in closes}) == 21
    assert any(e["client"].startswith("soak-s1-w1") for e in closes)
    report = subprocess.run(
        [sys.executable, "-m", "soak", "report", str(out)], capture_output=True, timeout=120
    )
    assert report.returncode == 0, report.stderr


def scrape_until(port: int, prefix: str, value: float, proc: subprocess.Popen[str]) -> str:
    """/metrics of a running soak, once a series starting with ``prefix``
    has ``value`` (polled every 0.2 s for at most 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = str(r.read().decode())
        except OSError:
            text = ""
        for line in text.splitlines():
            if line.startswith(prefix) and float(line.rsplit(" ", 1)[1]) == value:
                return text
        time.sleep(0.2)
    raise AssertionError(f"no {prefix}... {value:g} at :{port}/metrics within 30 s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(prom: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        doc = json.loads(resp.read())
    assert doc["status"] == "success", doc
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def wait_for(prom: int, expr: str, proc: subprocess.Popen[str], seconds: float = 30.0) -> float:
    """The first value of ``expr`` once Prometheus has one (polled every
    0.5 s, at most ``seconds``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            got = query(prom, expr)
        except OSError:
            got = []
        if got:
            return float(got[0]["value"][1])
        time.sleep(0.5)
    raise AssertionError(f"Prometheus had no {expr} within {seconds:g}s")


@pytest.mark.process
@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="needs Debian's prometheus package (apt-get install prometheus; .ci/run installs it)",
)
def test_a_real_prometheus_scrapes_a_running_soak(tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    metrics_port, prom_port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: soak\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with reference_gateway([]) as port:
            profile = tmp_path / "p.toml"
            profile.write_text(PROFILE.format(port=port, label="prom", clients=30, hold="9s"))
            run = soak(
                "run",
                str(profile),
                f"--metrics-port={metrics_port}",
                "--results-dir",
                str(tmp_path / "results"),
                "--quiet",
            )
            try:
                connected = wait_for(prom_port, "soak_clients_connected == 30", run)
                out, err = run.communicate(timeout=60)
            finally:
                stop(run)
        assert connected == 30.0
        assert run.returncode == 0, out + err
        assert f"Prometheus metrics at http://127.0.0.1:{metrics_port}/metrics" in err
        last = "last_over_time({}[5m])"
        count = float(
            query(prom_port, last.format("soak_heartbeat_rtt_seconds_count"))[0]["value"][1]
        )
        p99 = query(
            prom_port,
            "histogram_quantile(0.99, sum by (le) ("
            + last.format("soak_heartbeat_rtt_seconds_bucket")
            + "))",
        )
        prom_p99 = float(p99[0]["value"][1])
        # every dashboard query evaluates (Grafana's macros filled in)
        dashboard = json.loads((ROOT / "deploy" / "grafana" / "soak-dashboard.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", "1m").replace("$run", ".*")
                query(prom_port, expr)
        # the run is over: its series are stale now, so look back
        info = query(prom_port, last.format("soak_run_info"))
        up = query(prom_port, 'max_over_time(up{job="soak"}[5m]) == 1')
    finally:
        stop(prometheus)
    assert info
    assert info[0]["metric"]["profile"] == "p.toml"
    assert up
    # the intervals Prometheus saw last: a prefix of the run's own
    (run_dir,) = (tmp_path / "results").iterdir()
    merged = new_histogram()
    seen = 0
    for iv in read(run_dir / "rtt.hlog", Problems()):
        if seen == count:
            break
        merged.add(iv.hist)
        seen += iv.hist.get_total_count()
    assert seen == count > 0
    hdr_p99 = merged.get_value_at_percentile(99.0) / 1e6
    # histogram_quantile interpolates inside the bucket that holds the p99
    bounds = [0.0, *buckets([0.25])]
    upper = next(b for b in bounds if b >= hdr_p99)
    lower = bounds[bounds.index(upper) - 1]
    assert lower <= prom_p99 <= upper, (prom_p99, hdr_p99)
    print(f"p99: Prometheus {prom_p99 * 1000:.3f} ms, HdrHistogram {hdr_p99 * 1000:.3f} ms")


@pytest.mark.process
def test_a_shard_killed_mid_run_is_named_by_the_merge(tmp_path: Path) -> None:
    with reference_gateway([]) as port:
        profile = tmp_path / "p.toml"
        profile.write_text(PROFILE.format(port=port, label="kill", clients=10, hold="4s"))
        start = datetime.fromtimestamp(time.time() + 5, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        common = ["run", str(profile), f"--start-at={start}", "--results-dir", str(tmp_path)]
        survivor = soak(*common, "--shard=0/2", "--quiet")
        victim = soak(*common, "--shard=1/2", "--quiet")
        try:
            # SIGKILL shard 1 once an interval of it had all its 5 clients
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                found = list(tmp_path.glob("*-kill/*-shard-1-of-2/intervals.jsonl"))
                lines = found[0].read_text().splitlines() if found else []
                if any(json.loads(x)["connected"] == 5 for x in lines if x.endswith("}")):
                    break
                assert victim.poll() is None
                time.sleep(0.1)
            else:
                raise AssertionError("shard 1 never had its 5 clients within 30 s")
            victim.kill()
            victim.wait(timeout=10)
            out, err = survivor.communicate(timeout=60)
        finally:
            stop(survivor)
            stop(victim)
    assert survivor.returncode == 0, out + err
    (run_dir,) = tmp_path.glob("*-kill")
    merged = subprocess.run(
        [sys.executable, "-m", "soak", "merge", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert merged.returncode == 1, merged.stdout + merged.stderr
    assert "soak: shard 1: partial (no summary.json (killed?))" in merged.stderr
    assert "FAIL shards_lost == 0: shard 1: partial" in merged.stdout
    (out_dir,) = run_dir.glob("*-merged")
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["partial"] is True
    intervals = [json.loads(x) for x in (out_dir / "intervals.jsonl").read_text().splitlines()]
    # both shards' clients while both ran, only shard 0's after the kill
    assert max(iv["connected"] for iv in intervals) == 10
    (victim_dir,) = run_dir.glob("*-shard-1-of-2")
    ran = len((victim_dir / "intervals.jsonl").read_text().splitlines())
    assert all(iv["connected"] <= 5 for iv in intervals[ran:])
