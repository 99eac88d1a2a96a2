"""Report benchmark: how long ``soak report`` takes on a 24-hour run.

Synthesises a results directory of 8,640 intervals of 10 s (24 h) in a temp
directory: intervals.jsonl, events.jsonl with some false timeouts, and all six
``.hlog`` files with realistic payloads (a few distinct histograms of a few
thousand samples, encoded once and reused line by line). Then runs
``python -m soak report`` on it and prints the wall time::

    .venv/bin/python benchmarks/report.py              # complete run (summary.json)
    .venv/bin/python benchmarks/report.py --partial    # killed run: summary computed
    .venv/bin/python benchmarks/report.py --intervals 360 --keep
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from soak.metrics import HISTOGRAMS, new_histogram
from soak.results import hlog, jsonl
from soak.results.names import EVENTS, INTERVALS, RUN_JSON, SUMMARY, hlog_name

INTERVAL_S = 10.0
WALL0 = 1_795_478_400.0  # 2026-11-24T00:00:00Z, the manifest's start
# (median us, spread factor) per histogram: shapes only need to look real
SHAPES = {
    "rtt": (800, 3.0),
    "rtt_service": (700, 3.0),
    "connect": (2500, 2.0),
    "reconnect": (150_000, 2.0),
    "lag": (50, 4.0),
    "loop_lag": (300, 3.0),
}


def payloads(name: str, rng: random.Random, distinct: int = 8) -> list[tuple[float, str]]:
    """A few encoded histograms of ``name`` and their max (ms)."""
    median, spread = SHAPES[name]
    out = []
    for k in range(distinct):
        h = new_histogram()
        n = 0 if name == "reconnect" and k % 2 else 3000
        for _ in range(n):
            h.record_value(max(1, int(rng.lognormvariate(0, 0.5) ** spread * median)))
        if name == "rtt" and k == 0:
            h.record_value(2_000_000)  # one 2 s outlier now and then
        out.append((h.get_max_value() / 1000.0, h.encode().decode("ascii")))
    return out


def interval(i: int, rng: random.Random) -> dict[str, Any]:
    ft = 1 if rng.random() < 0.01 else 0
    closes = {"false_timeout": ft} if ft else {}
    return {
        "i": i,
        "t": round(i * INTERVAL_S, 3),
        "dt": INTERVAL_S,
        "connected": 5000 - ft,
        "connecting": 0,
        "target": 5000,
        "pings": 1667,
        "pongs": 1667 - ft,
        "late": 0,
        "missed": ft,
        "zombies": 0,
        "false_timeouts": ft,
        "justified_timeouts": 0,
        "heartbeat_success": (1667 - ft) / 1667,
        "rtt_count": 1667,
        "rtt_p50_ms": 0.8,
        "rtt_p99_ms": 3.1,
        "rtt_max_ms": 9.0,
        "lag_p99_ms": 6.0 if i % 997 == 0 else 0.4,
        "loop_lag_max_ms": 2.0,
        "tester_bottleneck": i % 997 == 0,
        "closes": closes,
        "closes_by_code": {"4000": ft} if ft else {},
        "closes_by_category": {"heartbeat_timeout": ft} if ft else {},
        "server_connections": 5000,
        "rss_bytes": 200_000_000,
    }


def synthesise(d: Path, n: int, partial: bool, seed: int = 1) -> None:
    rng = random.Random(seed)
    d.mkdir(parents=True)
    manifest = {
        "results_format": 1,
        "tool": "soak",
        "tool_version": "0.1.0",
        "label": "bench-24h",
        "target": "ws://127.0.0.1:8765/ws",
        "protocol": "json",
        "profile_path": "profiles/soak-24h.toml",
        "host": "bench",
        "start": "2026-11-24T00:00:00.000+00:00",
        "end": None if partial else "2026-11-25T00:00:00.000+00:00",
        "status": "running" if partial else "completed",
        "exit_code": None if partial else 0,
    }
    jsonl.write_document(d / RUN_JSON, manifest)
    records = [interval(i, rng) for i in range(n)]
    jsonl.write_lines(d / INTERVALS, records)
    events = [
        {
            "t": r["t"] + 5.0,
            "event": "close",
            "client": f"soak-{rng.randrange(5000):06d}",
            "reason": "false_timeout",
            "category": "heartbeat_timeout",
            "code": 4000,
            "why": "last pong 2.000s ago < server timeout 120s",
            "evidence": {"age_s": 3600.0, "last_pong_age_s": 2.0},
        }
        for r in records
        if r["false_timeouts"]
    ]
    jsonl.write_lines(d / EVENTS, events)
    for name in HISTOGRAMS:
        encoded = payloads(name, rng)
        with open(d / hlog_name(name), "w") as f:
            f.write(hlog.header(name, WALL0))
            for i in range(n):
                mx, payload = encoded[i % len(encoded)]
                f.write(hlog.entry_line(i * INTERVAL_S, INTERVAL_S, mx, payload))
    if not partial:
        summary = {
            "label": "bench-24h",
            "status": "completed",
            "partial": False,
            "duration_s": n * INTERVAL_S,
            "totals": {},
            "latency_ms": {},
            "thresholds": [],
        }
        jsonl.write_document(d / SUMMARY, summary)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--intervals", type=int, default=8640, help="default 8640 (24 h of 10 s)")
    ap.add_argument("--partial", action="store_true", help="no summary.json (killed run)")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="soak-report-bench-"))
    try:
        run = tmp / "run"
        t0 = time.perf_counter()
        synthesise(run, args.intervals, args.partial)
        made = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in run.iterdir()) / 1e6
        print(f"synthesised {args.intervals} intervals ({size:.1f} MB) in {made:.1f}s: {run}")
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "soak",
                "report",
                str(run),
                "--export-csv",
                str(tmp / "series.csv"),
                "--export-json",
                str(tmp / "summary.json"),
            ],
            check=True,
        )
        took = time.perf_counter() - t0
        kind = "partial (summary computed)" if args.partial else "complete"
        print(f"soak report, {args.intervals} intervals, {kind}: {took:.2f} s")
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
