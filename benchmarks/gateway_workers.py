"""Gateway scale benchmark: ``soak gateway --workers W`` holding N connections
opened by C ``soak run`` processes, each with its own ``--source-ip`` range.

    flock /tmp/soak-bench.lock .venv/bin/python benchmarks/gateway_workers.py
    .venv/bin/python benchmarks/gateway_workers.py --workers 4 --clients 30000 --procs 2

One process may hold at most about 19,900 descriptors here, so neither side
fits 30,000 connections in one process: the gateway spreads them over its
workers (SO_REUSEPORT), the client over its processes, and the source
addresses keep each (source, target) pair under ~28,000 ephemeral ports.

Prints one table and one JSON line: connections held (the gateway's own
``/api/stats``, summed over workers), per-worker connections, gateway RSS
per connection ((RSS with N connections - RSS before any) / N, summed over
workers), client RSS per connection (total RSS of the client processes / N,
so it includes each process's fixed ~40 MB), the gateway's pongs, and the
clients' missed heartbeats and handshake failures (from their summary.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from engine import ROOT, gateway

PROFILE = """\
[run]
label = "gw-scale"
report_interval = "10s"

[target]
url = "ws://127.0.0.1:{port}/ws"

[clients]
max_connecting = 256

[[clients.stages]]
kind = "ramp"
to = {count}
duration = "{ramp}s"

[[clients.stages]]
kind = "hold"
duration = "{hold}s"

[heartbeat]
interval = "30s"
timeout = "10s"

[reconnect]
max_attempts = 0
"""


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=10) as r:
        doc: dict[str, Any] = json.loads(r.read())
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=4, help="gateway worker processes")
    ap.add_argument("--clients", type=int, default=30000, help="connections in all")
    ap.add_argument("--procs", type=int, default=2, help="soak run processes")
    ap.add_argument("--ramp", type=int, default=40, help="ramp seconds")
    ap.add_argument("--hold", type=int, default=40, help="hold seconds")
    args = ap.parse_args()
    with gateway("--workers", str(args.workers)) as gw:
        result = measure(args, gw.port)
    for key, value in result.items():
        print(f"{key:22} {value}")
    print(json.dumps(result))


def measure(args: argparse.Namespace, port: int) -> dict[str, Any]:
    """Start the client processes against the gateway on ``port``, wait
    for the load to settle, and read both sides' figures."""
    py = sys.executable
    pids = [w["pid"] for w in stats(port)["workers"]]
    base = {pid: rss_kib(pid) for pid in pids}
    per_proc = args.clients // args.procs
    tmp = Path(tempfile.mkdtemp(prefix="soak-gw-bench-"))
    clients = []
    for i in range(args.procs):
        prof = tmp / f"p{i}.toml"
        prof.write_text(PROFILE.format(port=port, count=per_proc, ramp=args.ramp, hold=args.hold))
        first = 1 + 4 * i
        source = f"127.0.0.{first}-127.0.0.{first + 3}"
        clients.append(
            subprocess.Popen(
                [
                    py, "-m", "soak", "run", str(prof), "--quiet",
                    "--results-dir", str(tmp / "results"), "--source-ip", source,
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
    t0 = time.monotonic()
    held = 0
    snap: dict[str, Any] = {}
    while time.monotonic() - t0 < args.ramp + args.hold - 5:
        time.sleep(2)
        snap = stats(port)
        held = snap["connections"]
        if held >= per_proc * args.procs and time.monotonic() - t0 > args.ramp + 35:
            break  # everyone connected and a heartbeat round (30 s) done
    ramp_s = time.monotonic() - t0
    gw_rss = {pid: rss_kib(pid) for pid in pids}
    cl_rss = [rss_kib(p.pid) for p in clients]
    pongs = snap.get("pongs_sent", 0)
    for p in clients:
        p.send_signal(signal.SIGINT)
    for p in clients:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
    missed = failures = 0
    for summary in (tmp / "results").glob("*/summary.json"):
        totals = json.loads(summary.read_text())["totals"]
        missed += totals["missed"]
        failures += totals["handshake_failure_total"]
    shutil.rmtree(tmp, ignore_errors=True)
    delta = sum(gw_rss[p] - base[p] for p in pids)
    result = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "gateway_workers": args.workers,
        "client_procs": args.procs,
        "connections_wanted": per_proc * args.procs,
        "connections_held": held,
        "per_worker": [w["connections"] for w in snap.get("workers", [])],
        "gateway_rss_mib": round(sum(gw_rss.values()) / 1024, 1),
        "gateway_kib_per_conn": round(delta / held, 2) if held else None,
        "client_rss_mib": round(sum(cl_rss) / 1024, 1),
        "client_kib_per_conn": round(sum(cl_rss) / held, 2) if held else None,
        "pongs_sent": pongs,
        "client_missed_heartbeats": missed,
        "client_handshake_failures": failures,
        "elapsed_s": round(ramp_s, 1),
        "loadavg": os.getloadavg()[0],
    }
    return result


if __name__ == "__main__":
    main()
