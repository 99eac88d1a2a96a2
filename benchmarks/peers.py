"""Peers benchmark: soak's CPU per heartbeat next to Node's `ws`, in one run
(issue 19, target 1).

    make bench-peers                                  # ~3 minutes
    make bench-peers ARGS="--clients 2000 --duration 30"
    .venv/bin/python benchmarks/peers.py --server soak-gateway

One pong server on loopback (``--server node-ws``, the default: a small
Node ``ws`` server, benchmarks/peers/pong_server.js, answering soak's JSON
ping with the gateway's pong; or ``soak-gateway``: ``soak gateway``), then
two clients one after the other with the same scenario (``--clients``
connections over ``--ramp`` seconds, one JSON ping each per
``--interval`` on spread phases, ``--duration`` seconds in all):

1. the Node ``ws`` reference client (benchmarks/peers/ping_client.js);
2. ``soak run`` with the same settings, as a user runs it.

The pong server is started afresh for each client (``--same-server``: one
server for both). Node's ``ws`` is installed from npm once into a cache
outside the repository (``$SOAK_CACHE``, else ``~/.cache/soak``;
soak.servers.base.npm_install). Printed for each client:

- CPU per answered ping over the steady window (from the first whole
  second after ``ramp + interval`` to ``duration - 1``): the client
  process's utime+stime from /proc/PID/stat at the window's edges (when
  the client reports it reached them: Node's per-second line, soak's
  intervals.jsonl), over the pongs it counted in the window;
- CPU per answered ping for the whole process (start-up, ramp and
  shut-down included): its rusage at exit over every pong it counted;
- RTT p50/p99 of the pongs received in the window (Node: its own
  samples; soak: rtt.hlog merged over the window);
- how long it waited for a CPU in the window (run-queue delay summed over
  its threads, /proc/PID/task/*/schedstat), and the server's CPU per ping.

Then the ratio soak / Node of both CPU figures. Loopback only; the load
average before and after is printed, and the JSON document has it all.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from engine import CLK_TCK, ROOT, gateway, loadavg, read_hlog, say

from soak.limits import raise_fd_limit
from soak.metrics import new_histogram
from soak.results.names import hlog_name
from soak.servers import base as servers

HERE = Path(__file__).resolve().parent / "peers"
WS_PACKAGE = "ws@8.23.1"  # Node's ws, pinned
NPM_NAME = "bench-peers"  # its directory in the cache: <cache>/npm/bench-peers
SERVERS = ("node-ws", "soak-gateway")


# -- /proc (pure parts take the file's text) ------------------------------------------


def stat_cpu(text: str) -> float:
    """utime + stime in seconds from the text of /proc/PID/stat (every
    thread of the process)."""
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def schedstat_wait(text: str) -> float:
    """Seconds runnable but waiting for a CPU, from /proc/.../schedstat."""
    return int(text.split()[1]) / 1e9


def proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return stat_cpu(f.read())
    except (OSError, ValueError, IndexError):
        return math.nan


def proc_wait(pid: int) -> float:
    """Run-queue delay of every thread of ``pid`` (Node runs GC and I/O
    threads besides its main one), summed."""
    total = 0.0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return math.nan
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                total += schedstat_wait(f.read())
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total


def window(ramp: float, interval: float, duration: float) -> tuple[float, float]:
    """The steady window: from the first whole second once every client is
    on its grid (ramp + one interval) to one second before the end."""
    w0 = float(math.ceil(ramp + interval + 0.25))
    w1 = float(math.floor(duration - 1.0))
    if w1 - w0 < 5.0:
        raise SystemExit(
            f"peers: the steady window {w0:g}-{w1:g}s is under 5 s: "
            f"make --duration longer than --ramp + --interval + 6"
        )
    return w0, w1


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, 2)


# -- the two clients -----------------------------------------------------------------------


@dataclass
class Edge:
    """The client's CPU and wait when it reported reaching a window edge."""

    t: float
    cpu: float
    wait: float
    server_cpu: float
    count: int  # its cumulative pongs there (Node) or 0 (soak counts per interval)


@dataclass
class ClientResult:
    name: str
    exit_code: int
    window_s: tuple[float, float]
    edges: list[Edge] = field(default_factory=list)
    window_pongs: int = 0
    total_pongs: int = 0
    total_pings: int = 0
    total_cpu: float = math.nan  # rusage at exit
    peak_rss_kib: int = 0
    rtt_p50_ms: float | None = None
    rtt_p99_ms: float | None = None
    connected: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        w0, w1 = self.window_s
        span = w1 - w0
        ok = len(self.edges) == 2
        cpu = self.edges[1].cpu - self.edges[0].cpu if ok else math.nan
        wait = self.edges[1].wait - self.edges[0].wait if ok else math.nan
        srv = self.edges[1].server_cpu - self.edges[0].server_cpu if ok else math.nan
        per = cpu / self.window_pongs * 1e6 if ok and self.window_pongs else None
        whole = self.total_cpu / self.total_pongs * 1e6 if self.total_pongs else None
        return {
            "client": self.name,
            "exit_code": self.exit_code,
            "connected": self.connected,
            "window_s": [w0, w1],
            "window_pongs": self.window_pongs,
            "window_pongs_per_s": round(self.window_pongs / span, 1),
            "cpu_us_per_pong_window": None if per is None else round(per, 1),
            "cpu_us_per_pong_whole": None if whole is None else round(whole, 1),
            "total_cpu_s": round(self.total_cpu, 2),
            "total_pongs": self.total_pongs,
            "total_pings": self.total_pings,
            "busy": None if not ok else round(cpu / span, 3),
            "cpu_wait": None if not ok else round(wait / span, 3),
            "server_cpu_us_per_pong": None
            if not ok or not self.window_pongs
            else round(srv / self.window_pongs * 1e6, 1),
            "rtt_p50_ms": self.rtt_p50_ms,
            "rtt_p99_ms": self.rtt_p99_ms,
            "peak_rss_mib": round(self.peak_rss_kib / 1024, 1),
            **self.extra,
        }


def wait_rusage(proc: subprocess.Popen[Any], timeout: float) -> tuple[int, float, int]:
    """Reap ``proc`` (killed after ``timeout`` seconds): exit code, user+sys
    CPU of its whole life, peak RSS in KiB (rusage from wait4)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
            return code, usage.ru_utime + usage.ru_stime, usage.ru_maxrss
        if time.monotonic() > deadline:
            proc.kill()
            deadline = time.monotonic() + 10.0
        time.sleep(0.05)


def lines_of(stream: IO[str]) -> queue.Queue[str | None]:
    """The lines of ``stream`` as they come, read by a thread (None at EOF)."""
    q: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    threading.Thread(target=read, daemon=True).start()
    return q


def watch_edges(
    pid: int,
    server_pid: int,
    progress: Callable[[], Iterator[tuple[float, int]]],
    edges_at: tuple[float, float],
    running: Callable[[], bool],
) -> list[Edge]:
    """Poll ``progress`` (the client's own reports: (seconds since its start,
    count) as they appear) and sample CPU when it passes each edge."""
    edges: list[Edge] = []
    while running() and len(edges) < 2:
        for t, count in progress():
            if len(edges) < 2 and t >= edges_at[len(edges)] - 1e-6:
                edges.append(Edge(t, proc_cpu(pid), proc_wait(pid), proc_cpu(server_pid), count))
        time.sleep(0.02)
    return edges


def node_env(installed: Path) -> dict[str, str]:
    return {**os.environ, "NODE_PATH": str(installed / "node_modules")}


def run_node(args: argparse.Namespace, url: str, server_pid: int, installed: Path) -> ClientResult:
    w = window(args.ramp, args.interval, args.duration)
    cfg = {
        "url": url,
        "clients": args.clients,
        "interval_s": args.interval,
        "ramp_s": args.ramp,
        "duration_s": args.duration,
        "window": list(w),
        "max_connecting": args.max_connecting,
    }
    proc = subprocess.Popen(
        ["node", str(HERE / "ping_client.js"), json.dumps(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=node_env(installed),
        cwd=installed,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    lines = lines_of(proc.stdout)
    records: list[dict[str, Any]] = []

    def progress() -> Iterator[tuple[float, int]]:
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                return
            if line is None:
                return
            rec = json.loads(line)
            records.append(rec)
            if "t" in rec:
                yield float(rec["t"]), int(rec["pongs"])

    edges = watch_edges(proc.pid, server_pid, progress, w, lambda: proc.poll() is None)
    code, cpu, rss = wait_rusage(proc, args.duration + 60.0)
    while True:  # the rest of its output
        line = lines.get(timeout=10.0)
        if line is None:
            break
        records.append(json.loads(line))
    done = next((r for r in records if r.get("done")), None)
    res = ClientResult("node-ws", code, w, edges, total_cpu=cpu, peak_rss_kib=rss)
    if done is None:
        say(f"node client: no final line (exit {code}): {proc.stderr.read().strip()[-500:]}")
        return res
    res.window_pongs = edges[1].count - edges[0].count if len(edges) == 2 else 0
    res.total_pongs = int(done["pongs"])
    res.total_pings = int(done["pings"])
    res.connected = max((int(r.get("connected", 0)) for r in records), default=0)
    res.rtt_p50_ms = None if done["rtt_p50_ms"] is None else round(done["rtt_p50_ms"], 3)
    res.rtt_p99_ms = None if done["rtt_p99_ms"] is None else round(done["rtt_p99_ms"], 3)
    res.extra = {"failed_connections": done["failed"]}
    return res


def soak_profile(args: argparse.Namespace, url: str) -> str:
    return f"""
[run]
label = "peers"
report_interval = "1s"

[target]
url = "{url}"
protocol = "json"
connect_timeout = "30s"

[clients]
max_connecting = {args.max_connecting}

[[clients.stages]]
kind = "ramp"
to = {args.clients}
duration = "{args.ramp:g}s"

[[clients.stages]]
kind = "hold"
duration = "{args.duration - args.ramp:g}s"

[heartbeat]
interval = "{args.interval * 1000:g}ms"
timeout = "10s"
max_missed = 3
phase = "spread"

[reconnect]
max_attempts = 0
"""


def run_soak(args: argparse.Namespace, url: str, server_pid: int, tmp: Path) -> ClientResult:
    w = window(args.ramp, args.interval, args.duration)
    tmp.mkdir(parents=True, exist_ok=True)
    profile = tmp / "peers.toml"
    profile.write_text(soak_profile(args, url))
    results = tmp / "results"
    cmd = [sys.executable, "-m", "soak", "run", str(profile), "--quiet"]
    cmd += ["--results-dir", str(results), "--workers", "1"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    seen = 0
    intervals: list[dict[str, Any]] = []

    def progress() -> Iterator[tuple[float, int]]:
        nonlocal seen
        found = sorted(results.glob("*/intervals.jsonl"))
        if not found:
            return
        with open(found[-1], encoding="utf-8") as f:
            text = f.read()
        done = text[: text.rfind("\n") + 1].splitlines()
        for line in done[seen:]:
            rec = json.loads(line)
            intervals.append(rec)
            yield float(rec["t"]) + float(rec["dt"]), 0
        seen = len(done)

    edges = watch_edges(proc.pid, server_pid, progress, w, lambda: proc.poll() is None)
    code, cpu, rss = wait_rusage(proc, args.duration + 120.0)
    assert proc.stderr is not None
    err = proc.stderr.read().strip()
    res = ClientResult("soak", code, w, edges, total_cpu=cpu, peak_rss_kib=rss)
    run_dirs = sorted(p.parent for p in results.glob("*/summary.json"))
    if not run_dirs:
        say(f"soak run wrote no summary (exit {code}): {err[-500:]}")
        return res
    run_dir = run_dirs[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    intervals = [json.loads(x) for x in (run_dir / "intervals.jsonl").read_text().splitlines()]
    w0, w1 = w
    inside = [iv for iv in intervals if iv["t"] >= w0 - 1e-3 and iv["t"] + iv["dt"] <= w1 + 1e-3]
    res.window_pongs = sum(int(iv["pongs"]) for iv in inside)
    tot = summary["totals"]
    res.total_pongs = int(tot["pongs"])
    res.total_pings = int(tot["pings"])
    res.connected = max((int(iv["connected"]) for iv in intervals), default=0)
    rtt = merged(run_dir, "rtt", w0, w1)
    res.rtt_p50_ms = pct_ms(rtt, 50.0)
    res.rtt_p99_ms = pct_ms(rtt, 99.0)
    lag = merged(run_dir, "lag", w0, w1)
    res.extra = {
        "missed": sum(int(iv["missed"]) for iv in inside),
        "skipped": sum(int(iv["skipped"]) for iv in inside),
        "send_lag_p99_ms": pct_ms(lag, 99.0),
        "tester_bottleneck_intervals": sum(1 for iv in inside if iv.get("tester_bottleneck")),
        "verdict": summary.get("verdict"),
    }
    return res


def merged(run_dir: Path, name: str, w0: float, w1: float) -> Any:
    h = new_histogram()
    for e in read_hlog(run_dir / hlog_name(name)):
        if e.start >= w0 - 1e-3 and e.start + e.length <= w1 + 1e-3:
            hist = e.decode()
            if hist is not None:
                h.add(hist)
    return h


def pct_ms(h: Any, q: float) -> float | None:
    if not h.get_total_count():
        return None
    return round(float(h.get_value_at_percentile(q)) / 1000.0, 3)


# -- the pong servers ---------------------------------------------------------------------


@dataclass
class Server:
    name: str
    url: str
    pid: int


def node_recipe() -> servers.Recipe:
    def argv(
        installed: Path | None, workdir: Path, port: int, opts: Mapping[str, str]
    ) -> list[str]:
        return ["node", str(HERE / "pong_server.js")]

    return servers.Recipe(
        name=NPM_NAME,
        dialect="json",
        summary=f"Node {WS_PACKAGE} pong server (benchmarks/peers/pong_server.js)",
        argv=argv,
        npm=(WS_PACKAGE,),
    )


@contextmanager
def pong_server(kind: str, tmp: Path) -> Iterator[Server]:
    if kind == "node-ws":
        with servers.start(node_recipe(), tmp / "node-server") as real:
            yield Server(kind, real.url, real.pid)
    else:
        with gateway() as gw:
            yield Server(kind, gw.url, gw.proc.pid)


class PongServers:
    """A pong server per client run (fresh), or one for both (``same``)."""

    def __init__(self, kind: str, tmp: Path, same: bool) -> None:
        self.kind, self.tmp, self.same = kind, tmp, same
        self.stack = ExitStack()
        self.shared: Server | None = None

    @contextmanager
    def one(self) -> Iterator[Server]:
        if not self.same:
            with pong_server(self.kind, self.tmp) as server:
                yield server
            return
        if self.shared is None:
            self.shared = self.stack.enter_context(pong_server(self.kind, self.tmp))
        yield self.shared

    def close(self) -> None:
        self.stack.close()


# -- output ----------------------------------------------------------------------------------


def table(node: dict[str, Any], soak: dict[str, Any], ratios: dict[str, Any]) -> str:
    def v(x: Any, unit: str = "") -> str:
        if x is None:
            return "n/a"
        if isinstance(x, float):
            return f"{x:,.2f}{unit}"
        return f"{x:,}{unit}"

    def share(x: Any) -> str:
        return "n/a" if x is None else f"{x * 100:.0f}%"

    rows = [
        ("figure", "node ws", "soak", "soak / node"),
        (
            "CPU per answered ping, window",
            v(node["cpu_us_per_pong_window"], " us"),
            v(soak["cpu_us_per_pong_window"], " us"),
            v(ratios["window"]),
        ),
        (
            "CPU per answered ping, whole process",
            v(node["cpu_us_per_pong_whole"], " us"),
            v(soak["cpu_us_per_pong_whole"], " us"),
            v(ratios["whole"]),
        ),
        ("pongs in the window, /s", v(node["window_pongs_per_s"]),
         v(soak["window_pongs_per_s"]), ""),
        ("RTT p50", v(node["rtt_p50_ms"], " ms"), v(soak["rtt_p50_ms"], " ms"), ""),
        ("RTT p99", v(node["rtt_p99_ms"], " ms"), v(soak["rtt_p99_ms"], " ms"), ""),
        ("busy / waiting for a CPU", f"{share(node['busy'])} / {share(node['cpu_wait'])}",
         f"{share(soak['busy'])} / {share(soak['cpu_wait'])}", ""),
        ("server CPU per ping", v(node["server_cpu_us_per_pong"], " us"),
         v(soak["server_cpu_us_per_pong"], " us"), ""),
        ("peak RSS", v(node["peak_rss_mib"], " MiB"), v(soak["peak_rss_mib"], " MiB"), ""),
        ("connected (most)", v(node["connected"]), v(soak["connected"]), ""),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = []
    for n, r in enumerate(rows):
        out.append("  ".join(r[i].ljust(widths[i]) for i in range(4)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between pings")
    ap.add_argument("--ramp", type=float, default=10.0, help="seconds to connect every client")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per client run")
    ap.add_argument("--max-connecting", type=int, default=256)
    ap.add_argument("--server", choices=SERVERS, default="node-ws")
    ap.add_argument("--same-server", action="store_true", help="one server for both clients")
    ap.add_argument("--order", choices=("node-first", "soak-first"), default="node-first")
    ap.add_argument("--json-out", help="also write the JSON result to this file")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.interval <= 0 or args.ramp < 0 or args.max_connecting < 1:
        ap.error("--clients and --max-connecting must be >= 1, --interval > 0, --ramp >= 0")
    window(args.ramp, args.interval, args.duration)  # refuses a window too short
    for binary in ("node", "npm"):
        if shutil.which(binary) is None:
            raise SystemExit(
                f"peers: {binary} is not installed (Debian: apt-get install -y {binary})"
            )
    try:
        installed = servers.npm_install(NPM_NAME, (WS_PACKAGE,))
    except servers.ServerUnavailable as exc:
        raise SystemExit(f"peers: {exc}") from None
    fds = raise_fd_limit()
    load0 = loadavg()
    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout
    say(
        f"peers: {args.clients:,} clients, a JSON ping every {args.interval:g}s, ramp "
        f"{args.ramp:g}s, {args.duration:g}s per client; server {args.server} "
        f"({'one for both' if args.same_server else 'fresh for each client'}); node "
        f"{node_version.strip()} with {WS_PACKAGE} from {installed}; python "
        f"{sys.version.split()[0]}; {os.cpu_count()} CPUs; fd limit {fds}; load {load0}"
    )
    order = ["node", "soak"] if args.order == "node-first" else ["soak", "node"]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="soak-peers-") as tmp_name:
        tmp = Path(tmp_name)
        serve = PongServers(args.server, tmp, args.same_server)
        try:
            for who in order:
                with serve.one() as server:
                    say(f"[{who}] against {server.name} at {server.url} (load {loadavg()})")
                    if who == "node":
                        res = run_node(args, server.url, server.pid, installed)
                    else:
                        res = run_soak(args, server.url, server.pid, tmp / who)
                results[who] = res.figures()
                say(f"[{who}] {json.dumps(results[who], sort_keys=True)}")
        finally:
            serve.close()
    node, soak = results["node"], results["soak"]
    ratios = {
        "window": ratio(soak["cpu_us_per_pong_window"], node["cpu_us_per_pong_window"]),
        "whole": ratio(soak["cpu_us_per_pong_whole"], node["cpu_us_per_pong_whole"]),
    }
    say()
    say(table(node, soak, ratios))
    doc = {
        "benchmark": "peers",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "scenario": {
            "clients": args.clients,
            "interval_s": args.interval,
            "ramp_s": args.ramp,
            "duration_s": args.duration,
            "server": args.server,
            "same_server": args.same_server,
            "order": order,
        },
        "node": node,
        "soak": soak,
        "ratio_soak_over_node": ratios,
        "load_before": load0,
        "load_after": loadavg(),
        "node_version": node_version.strip(),
        "ws": WS_PACKAGE,
    }
    say(f"load average before {load0}, after {doc['load_after']}")
    text = json.dumps(doc, sort_keys=True)
    say(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n", encoding="utf-8")
    short = [
        w for w, r in results.items() if r["connected"] < args.clients or r["exit_code"] not in (0,)
    ]
    if short:
        say(f"NOTE: {', '.join(short)}: not every client connected, or a non-zero exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
