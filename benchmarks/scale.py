"""Scale benchmark: `soak run --workers` holding 50,000 clients on this machine.

    .venv/bin/python benchmarks/scale.py                 # 50,000 clients, 10 min hold (~12 min)
    .venv/bin/python benchmarks/scale.py --quick         # 6,000 clients, 75 s hold
    .venv/bin/python benchmarks/scale.py --clients 30000 --hold 120

It starts the reference gateway (``soak gateway --workers G``, one process
holds at most ~19,900 descriptors) and then ``soak run`` exactly as a user
would (``--workers auto``, ``--source-ip`` to get past the ~28,200 ephemeral
ports per address pair), 30 s heartbeats, and reads the run's own results:

- held: the fewest clients connected during the hold, against the target;
- missed heartbeats during the hold, and those the tester caused (``skipped``
  sends and intervals flagged ``tester_bottleneck``);
- RTT p50/p99 and send lateness p99 over the hold, loop lag max;
- handshakes per second per worker over the ramp (clients / seconds until
  all were connected / workers);
- tester RSS per connection after the ramp and at the end of the hold
  (workers + parent), and its growth over the hold ("memory stays flat");
- the gateway's own count next to ours (reconciliation).

It prints one table and one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine import ROOT, gateway, say

HEARTBEAT_S = 30.0


def profile_text(port: int, clients: int, ramp: float, hold: float) -> str:
    return f"""
[run]
label = "scale"
report_interval = "1s"
workers = "auto"

[target]
url = "ws://127.0.0.1:{port}/ws"
protocol = "json"
connect_timeout = "30s"

[target.stats]
url = "http://127.0.0.1:{port}/api/stats"

[clients]
max_connecting = 1024

[[clients.stages]]
kind = "ramp"
to = {clients}
duration = "{ramp:g}s"

[[clients.stages]]
kind = "hold"
duration = "{hold:g}s"

[heartbeat]
interval = "30s"
timeout = "10s"
max_missed = 3
phase = "spread"

[reconnect]
max_attempts = 0
"""


def analyse(run_dir: Path, clients: int, ramp: float) -> dict[str, Any]:
    summary = json.loads((run_dir / "summary.json").read_text())
    intervals = [json.loads(x) for x in (run_dir / "intervals.jsonl").read_text().splitlines()]
    workers = summary.get("workers", {}).get("count", 1)
    full = next((iv for iv in intervals if iv["connected"] >= clients), None)
    all_in = None if full is None else full["t"] + full["dt"]
    # the hold: from the first interval after everyone is in to the last full one
    hold = [iv for iv in intervals[:-1] if full is not None and iv["i"] > full["i"]]
    # RTT of the hold: percentiles of the worst interval (a conservative
    # figure: the run's merged p99 is in summary.json)
    res: dict[str, Any] = {
        "clients": clients,
        "workers": workers,
        "all_connected_after_s": all_in,
        "handshakes_per_s_per_worker": None
        if all_in is None
        else round(clients / all_in / workers, 1),
        "held_min": min((iv["connected"] for iv in hold), default=0),
        "hold_s": round(sum(iv["dt"] for iv in hold), 1),
        "hold_pings": sum(iv["pings"] for iv in hold),
        "hold_missed": sum(iv["missed"] for iv in hold),
        "hold_skipped": sum(iv["skipped"] for iv in hold),
        "hold_tester_bottleneck_intervals": sum(1 for iv in hold if iv["tester_bottleneck"]),
        "hold_rtt_p99_ms_worst_interval": max(
            (iv["rtt_p99_ms"] for iv in hold if iv["rtt_p99_ms"] is not None), default=None
        ),
        "hold_lag_p99_ms_worst_interval": max(
            (iv["lag_p99_ms"] for iv in hold if iv["lag_p99_ms"] is not None), default=None
        ),
        "hold_loop_lag_max_ms": max(
            (iv["loop_lag_max_ms"] for iv in hold if iv["loop_lag_max_ms"] is not None),
            default=None,
        ),
        "run_rtt_ms": summary["latency_ms"]["rtt"],
        "handshake_failures": summary["totals"]["handshake_failure_total"],
        "closes": summary["totals"]["closes"],
        "workers_lost": summary.get("workers", {}).get("lost", []),
        "server_gap_max": max(
            (abs(iv["connection_gap"]) for iv in hold if iv.get("connection_gap") is not None),
            default=None,
        ),
        "verdict": summary["verdict"],
    }
    # the ramp: connections made per second per worker, in the busiest
    # interval (the requested ramp is faster than the tester can go)
    res["handshakes_per_s_per_worker_peak"] = max(
        (iv["connects"] / iv["dt"] / workers for iv in intervals if iv["dt"] > 0), default=0.0
    )
    # memory: the whole tester's RSS (every worker and the parent, their
    # interpreters included) per connection; flatness from one heartbeat
    # interval after the ramp (every client has sent and received by then)
    # to the end of the hold
    settled = [iv for iv in hold if all_in is not None and iv["t"] >= all_in + HEARTBEAT_S]
    if settled:
        start, end = settled[0]["rss_bytes"], settled[-1]["rss_bytes"]
        res["rss_total_mib_settled"] = round(start / 2**20, 1)
        res["rss_per_conn_kib_settled"] = round(start / clients / 1024, 2)
        res["rss_per_conn_kib_end_of_hold"] = round(end / clients / 1024, 2)
        res["rss_growth_over_hold_pct"] = round((end - start) / start * 100, 2)
        res["rss_flat_window_s"] = round(settled[-1]["t"] - settled[0]["t"], 1)
    return res


def machine_limits() -> str:
    """What bounds a run on this machine: descriptors per process, the
    ephemeral ports per source/target pair, memory, cores."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        ports = f"{int(high) - int(low) + 1:,} ephemeral ports per address pair"
    except (OSError, ValueError):
        ports = "ephemeral ports unknown"
    try:
        avail = next(
            int(line.split()[1]) // 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemAvailable:")
        )
        mem = f"{avail:,} MiB available"
    except (OSError, ValueError, StopIteration):
        mem = "memory unknown"
    return f"descriptors {soft:,}/{hard:,} per process; {ports}; {mem}; {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50_000)
    ap.add_argument("--ramp", type=float, default=None, help="seconds (default: clients/2,000)")
    ap.add_argument("--hold", type=float, default=600.0, help="seconds")
    ap.add_argument("--gateway-workers", type=int, default=None)
    ap.add_argument("--workers", default="auto", help="soak run --workers (default auto)")
    ap.add_argument("--source-ip", default="127.0.0.1-127.0.0.8")
    ap.add_argument("--quick", action="store_true", help="6,000 clients, 75 s hold")
    ap.add_argument("--keep", metavar="DIR", help="write the run's results here (kept)")
    args = ap.parse_args(argv)
    if args.quick:
        args.clients, args.hold = 6000, 75.0
    # asked for faster than the tester can connect, to measure how fast it can
    ramp = args.ramp if args.ramp is not None else max(1.0, args.clients / 10_000)
    gw_workers = args.gateway_workers or max(1, -(-args.clients // 18_000))
    say(
        f"scale: {args.clients:,} clients, ramp {ramp:g}s, hold {args.hold:g}s, "
        f"gateway workers {gw_workers}, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    say(f"machine: {machine_limits()}")
    extra = ("--workers", str(gw_workers)) if gw_workers > 1 else ()
    with gateway(*extra) as gw, tempfile.TemporaryDirectory(prefix="soak-scale-") as tmp:
        port = gw.port
        path = Path(tmp) / "scale.toml"
        path.write_text(profile_text(port, args.clients, ramp, args.hold))
        cmd = [
            sys.executable,
            "-m",
            "soak",
            "run",
            str(path),
            "--quiet",
            "--results-dir",
            args.keep or str(Path(tmp) / "results"),
        ]
        if args.source_ip:
            cmd += ["--source-ip", args.source_ip]
        cmd += ["--workers", args.workers]
        began = time.monotonic()
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        took = time.monotonic() - began
        say(run.stderr.strip())
        dirs = sorted(Path(args.keep or Path(tmp) / "results").glob("*"))[-1:]
        if not dirs:
            say(f"soak run wrote no results (exit {run.returncode})")
            return 1
        res = analyse(dirs[0], args.clients, ramp)
        res["exit_code"] = run.returncode
        res["wall_s"] = round(took, 1)
    rows = [
        (
            "clients held (fewest during the hold)",
            f"{res['held_min']:,} of {args.clients:,}",
            f"{args.clients:,}",
        ),
        ("tester worker processes", str(res["workers"]), ""),
        ("hold", f"{res['hold_s']:g} s, {res['hold_pings']:,} heartbeats", ""),
        ("missed heartbeats in the hold", str(res["hold_missed"]), "0"),
        (
            "caused by the tester (skipped / bottleneck intervals)",
            f"{res['hold_skipped']} / {res['hold_tester_bottleneck_intervals']}",
            "0 / 0",
        ),
        (
            "RTT p99, worst 1 s interval of the hold",
            f"{res['hold_rtt_p99_ms_worst_interval']} ms",
            "",
        ),
        (
            "send lateness p99, worst interval",
            f"{res['hold_lag_p99_ms_worst_interval']} ms",
            "<= 5 ms",
        ),
        ("loop lag max in the hold", f"{res['hold_loop_lag_max_ms']} ms", ""),
        (
            "handshakes/s per worker (all in / busiest 1 s)",
            f"{res['handshakes_per_s_per_worker']} / {res['handshakes_per_s_per_worker_peak']:.0f}",
            ">= 1,500",
        ),
        (
            "tester RSS per connection, settled / end of hold",
            f"{res.get('rss_per_conn_kib_settled')} / "
            f"{res.get('rss_per_conn_kib_end_of_hold')} KiB",
            "<= 10 KiB",
        ),
        (
            "RSS growth after the first heartbeat round",
            f"{res.get('rss_growth_over_hold_pct')} % over {res.get('rss_flat_window_s')} s",
            "flat",
        ),
        ("largest server-count gap in the hold", str(res["server_gap_max"]), "0"),
        (
            "closes at the end",
            ", ".join(f"{k} {v:,}" for k, v in sorted(res["closes"].items())) or "none",
            f"{args.clients:,} counted",
        ),
        ("workers lost", ", ".join(map(str, res["workers_lost"])) or "none", "none"),
        ("verdict", f"{res['verdict']} (exit {res['exit_code']})", ""),
    ]
    width = max(len(r[0]) for r in rows)
    say()
    for name, value, target in rows:
        say(f"{name:<{width}}  {value:<28} {target}")
    say()
    say(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
