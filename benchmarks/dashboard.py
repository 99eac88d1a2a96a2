"""What the live page (``soak run --dashboard``, soak.dashboard) costs the
heartbeats: the same run three times, in this process, against the
reference gateway in its own process: without the page, with one
browser-like poller (another process, one keep-alive connection, asking
``/status.json`` every second and the page every 10 s, as the page does), and
with ten such pollers::

    .venv/bin/python benchmarks/dashboard.py            # ~2.5 min, ~1 core
    .venv/bin/python benchmarks/dashboard.py --clients 1000 --hold 20 --runs off,1,off,1

The page is served as ``soak run`` serves it (soak.dashboard_run: the
:class:`~soak.httpd.HttpServer` in the run's event loop, fed by the same
status and interval callbacks), with a 1 s report interval so it updates
every second. Over the window (after the ramp) it prints, per run: the
tester's CPU per heartbeat round trip, RTT p50/p99, send lateness p99,
event-loop lag p99/max, missed heartbeats, and for the page: requests
answered and the time one ``/status.json`` document took to build (mean and
max: the longest the run's loop was held by the page). Latency figures are
sensitive to other work on the machine; the load average is printed.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from engine import (
    GatewayProcess,
    Mark,
    RunResult,
    gateway,
    loadavg,
    pct_ms,
    profile_toml,
    read_hlog,
    rss_of,
    runq_wait_of,
    say,
)

from soak.config.load import parse_profile
from soak.dashboard import Dashboard
from soak.dashboard_run import serve_beside
from soak.httpd import HttpServer
from soak.limits import raise_fd_limit
from soak.recorder import Recorder
from soak.results.names import hlog_name
from soak.run.runner import Runner

# a browser-like poller, in a process of its own that starts in milliseconds
# (only http.client): one keep-alive connection, /status.json every second
# and the page every 10 s, until killed
POLLER = """
import http.client, sys, time
port = int(sys.argv[1])
conn, n = None, 0
while True:
    for path in ["/status.json"] + (["/"] if n % 10 == 0 else []):
        try:
            conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path, headers={"Host": "127.0.0.1:%d" % port})
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            conn = None
    n += 1
    time.sleep(1.0)
"""


def one_run(args: argparse.Namespace, gw: GatewayProcess, pollers: int | None) -> dict[str, Any]:
    """One run; ``pollers``: None without the page, else how many poll it."""
    report = 1.0
    w0 = math.ceil((args.ramp + 1.25) / report) * report
    w1 = w0 + args.hold
    toml = profile_toml(
        label="bench-dashboard",
        url=gw.url,
        stages=[("ramp", args.ramp, args.clients), ("hold", w1 - args.ramp + report, 0)],
        interval=1.0,
        report_interval=report,
    )
    profile = parse_profile(toml, "benchmark", {})
    tmp = tempfile.mkdtemp(prefix="soak-bench-")
    marks: list[Mark] = []
    builds: list[float] = []
    server: HttpServer | None = None
    board: Dashboard | None = None
    if pollers is not None:
        server = HttpServer("127.0.0.1", 0)
        server.bind()
        board = Dashboard(
            label="bench", target=gw.url, run="bench", duration=profile.duration, interval=report
        )
        board.routes(server)
        build = board.status_bytes

        def timed() -> bytes:
            version, built = board._cached[0], board._cached[1]
            t = time.perf_counter()
            body = build()
            if board._cached[:2] != (version, built):
                builds.append(time.perf_counter() - t)
            return body

        board.status_bytes = timed  # type: ignore[method-assign]

    def on_interval(record: dict[str, Any]) -> None:
        if board is not None:
            board.interval(record)
        marks.append(
            Mark(
                record["t"] + record["dt"],
                time.process_time(),
                gw.cpu(),
                runq_wait_of(),
                gw.runq_wait(),
                dict(record),
            )
        )

    procs: list[subprocess.Popen[bytes]] = []
    try:
        gc.collect()
        recorder = Recorder(tmp, profile.run.label, time.time())
        runner = Runner(
            profile,
            recorder,
            on_interval=on_interval,
            on_status=board.status if board is not None else None,
            lag_probe=0.02,
            manage_gc=True,
        )
        if board is not None and server is not None:
            board.watch(runner.findings_so_far, runner.facts.storms)
            cmd = [sys.executable, "-c", POLLER, str(server.port)]
            procs = [subprocess.Popen(cmd) for _ in range(pollers or 0)]
            time.sleep(1.0)  # they start before the run (their connections wait in the backlog)
        rss0 = rss_of()
        started = time.monotonic()
        outcome = trio.run(serve_beside, (server,), runner.run)
        wall = time.monotonic() - started
        logs = {n: read_hlog(recorder.path / hlog_name(n)) for n in ("rtt", "lag", "loop_lag")}
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    res = RunResult(outcome, marks, logs, rss0, wall)
    m0, m1 = res.mark_at(w0), res.mark_at(w1)
    if m0 is None or m1 is None:
        raise SystemExit(f"dashboard benchmark: no interval boundary at {w0:g}s or {w1:g}s")
    recs = [m.record for m in res.window(w0, w1)]
    pongs = sum(int(r["pongs"]) for r in recs)
    rtt, lag, loop = (res.merged(n, w0, w1) for n in ("rtt", "lag", "loop_lag"))
    cpu = m1.cpu - m0.cpu
    return {
        "page": "off" if pollers is None else f"{pollers} poller{'s' * (pollers != 1)}",
        "clients": args.clients,
        "window_s": [w0, w1],
        "pongs": pongs,
        "cpu_us_per_rt": round(cpu / pongs * 1e6, 1) if pongs else None,
        "client_wait": round((m1.wait - m0.wait) / (w1 - w0), 3),
        "rtt_p50_ms": pct_ms(rtt, 50.0),
        "rtt_p99_ms": pct_ms(rtt, 99.0),
        "send_lag_p99_ms": pct_ms(lag, 99.0),
        "loop_lag_p99_ms": pct_ms(loop, 99.0),
        "loop_lag_max_ms": loop.get_max_value() / 1000.0 if loop.get_total_count() else None,
        "missed": sum(int(r["missed"]) for r in recs),
        "documents_built": len(builds),
        "build_mean_ms": round(sum(builds) / len(builds) * 1000, 3) if builds else None,
        "build_max_ms": round(max(builds) * 1000, 3) if builds else None,
        "load": loadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=3000)
    ap.add_argument("--ramp", type=float, default=6.0)
    ap.add_argument("--hold", type=float, default=30.0)
    ap.add_argument(
        "--runs",
        default="off,1,10",
        help="the runs in order: off (no page) or a number of pollers (default off,1,10)",
    )
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)
    raise_fd_limit()
    rows = []
    with gateway() as gw:
        for what in args.runs.split(","):
            pollers = None if what.strip() == "off" else int(what)
            row = one_run(args, gw, pollers)
            say(json.dumps(row))
            rows.append(row)

    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    say(
        "\n| page | CPU per round trip | RTT p50 / p99 | send lag p99 | loop lag p99 / max "
        "| missed | documents built (mean / max) | load |"
    )
    say("|---|---|---|---|---|---|---|---|")
    for r in rows:
        built = (
            "-"
            if r["documents_built"] == 0
            else f"{r['documents_built']} ({f(r['build_mean_ms'])} / {f(r['build_max_ms'])} ms)"
        )
        say(
            f"| {r['page']} | {f(r['cpu_us_per_rt'])} us | {f(r['rtt_p50_ms'])} / "
            f"{f(r['rtt_p99_ms'])} ms | {f(r['send_lag_p99_ms'])} ms | "
            f"{f(r['loop_lag_p99_ms'])} / {f(r['loop_lag_max_ms'])} ms | {r['missed']} | "
            f"{built} | {r['load']} |"
        )
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
