"""Day-long runs, for real: ``make bench-soak``.

10,000 clients with 10 s JSON heartbeats against the reference gateway (a
child process on loopback) for an hour by default, then what a long run
must not do: grow, leak descriptors, miss heartbeats, drift from the
server's count. Printed:

- the tester's RSS slope after the ramp (least squares over the samples
  taken at each interval once the ramp has settled), in KiB per hour and
  in % of its RSS per hour, and the same for the gateway;
- open descriptors of both processes before the run, after the ramp and
  after the run (a leak is what is still open once every client closed);
- the tester's garbage-collector pauses (summary.json) and collections
  after the ramp;
- RTT p99 per 10-minute window, from the run's own ``rtt.hlog``;
- missed heartbeats, zombies, handshake failures, and the server-count gap
  (the reference gateway's ``/api/stats`` polled every interval).

Targets: tester RSS growth < 1% per hour after the ramp, no descriptor
leaked, no heartbeat missed. ``--tracemalloc N`` also traces the tester's
allocations from the end of the ramp to the end of the hold and prints the
N source lines whose memory grew most (it slows the tester: use it on a
shorter run, apart from the figures).

Usage::

    .venv/bin/python benchmarks/bench_soak.py                       # 10,000 clients, 1 hour
    .venv/bin/python benchmarks/bench_soak.py --duration 120 --clients 2000
    .venv/bin/python benchmarks/bench_soak.py --duration 10m --tracemalloc 15

It uses the whole machine for its duration: take the BENCH lock first
(docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from soak import childproc
from soak.config.load import parse_profile
from soak.config.units import parse_duration
from soak.limits import raise_fd_limit
from soak.metrics import new_histogram
from soak.recorder import Recorder
from soak.results import hlog
from soak.results.problems import Problems
from soak.run.runner import Runner

PAGE = os.sysconf("SC_PAGE_SIZE")
HOUR = 3600.0
RSS_TARGET_PCT_PER_HOUR = 1.0


def say(text: str = "") -> None:
    print(text, flush=True)


def rss_of(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * PAGE


def fds_of(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Sample:
    t: float  # seconds since the run started (the interval's end)
    rss: int
    gateway_rss: int
    fds: int
    gateway_fds: int


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y), or None with fewer than 3 points."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def growth(samples: list[Sample], attr: str) -> tuple[str, float | None]:
    """``KiB/hour (x% per hour)`` of one RSS series, and the % per hour."""
    points = [(s.t, float(getattr(s, attr))) for s in samples]
    per_s = slope(points)
    if per_s is None:
        return "n/a (too few samples after the ramp)", None
    mean = sum(y for _, y in points) / len(points)
    pct = 100.0 * per_s * HOUR / mean
    return (
        f"{per_s * HOUR / 1024:+.0f} KiB/hour ({pct:+.2f}% per hour of {mean / 2**20:.1f} MiB)",
        pct,
    )


def profile_text(
    url: str, stats: str, clients: int, ramp: float, hold: float, every: float, report: float
) -> str:
    return f"""
[run]
label = "bench-soak"
report_interval = "{report:g}s"

[target]
url = "{url}"
protocol = "json"
connect_timeout = "20s"

[target.stats]
url = "{stats}"
field = "connections"
timeout = "2s"

[clients]
max_connecting = 256

[[clients.stages]]
kind = "ramp"
to = {clients}
duration = "{ramp:g}s"

[[clients.stages]]
kind = "hold"
duration = "{hold:g}s"

[heartbeat]
interval = "{every:g}s"
timeout = "5s"
max_missed = 3
phase = "spread"
"""


def rtt_windows(path: Path, window: float) -> list[tuple[float, float, int]]:
    """(window start s, RTT p99 ms, samples) per ``window`` seconds of rtt.hlog."""
    merged: dict[int, Any] = {}
    for iv in hlog.read(path, Problems()):
        k = int(iv.start // window)
        h = merged.setdefault(k, new_histogram())
        h.add(iv.hist)
    out = []
    for k in sorted(merged):
        h = merged[k]
        n = h.get_total_count()
        if n:
            out.append((k * window, h.get_value_at_percentile(99.0) / 1000.0, n))
    return out


class Tracer:
    """tracemalloc from the end of the ramp to the end of the hold. The
    first snapshot is taken one interval after tracing starts, so that what
    every interval makes anew (its histograms, each client's current wait)
    is in both snapshots and only growth shows in the difference; a full
    collection before each keeps cyclic garbage out of it."""

    def __init__(self, top: int) -> None:
        self.top = top
        self.tracing = False
        self.start: tracemalloc.Snapshot | None = None
        self.end: tracemalloc.Snapshot | None = None

    def interval(self, t: float, steady: bool, last: bool) -> None:
        """At each interval's end, ``t`` seconds into the run."""
        if not self.top or self.end is not None:
            return
        if self.tracing and self.start is None:
            gc.collect()  # cyclic garbage is not growth
            self.start = tracemalloc.take_snapshot()
        elif steady and not self.tracing:
            tracemalloc.start(10)
            self.tracing = True
        if last and self.start is not None:
            gc.collect()
            self.end = tracemalloc.take_snapshot()
            tracemalloc.stop()

    def finish(self) -> None:
        if self.tracing and self.end is None:
            tracemalloc.stop()

    def report(self) -> None:
        if self.start is None or self.end is None:
            return
        stats = self.end.compare_to(self.start, "lineno")
        grown = sum(s.size_diff for s in stats)
        say(
            f"\ntracemalloc, end of the ramp to the end of the hold: {grown / 1024:+.0f} KiB traced"
        )
        for s in stats[: self.top]:
            frame = s.traceback[0]
            say(
                f"  {s.size_diff / 1024:+9.1f} KiB {s.count_diff:+7d} blocks  "
                f"{frame.filename}:{frame.lineno}"
            )


def seconds(option: str, text: str) -> float:
    """A duration option: ``"1h"``, ``"90s"``, or a bare number of seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text)
    except ValueError:
        expected = 'expected seconds or a duration like "10m"'
        raise ValueError(f"{option}: {expected}, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--duration", default="1h", help="whole run, ramp included (default 1h)")
    parser.add_argument("--interval", default="10s", help="heartbeat interval (default 10s)")
    parser.add_argument("--window", default="10m", help="RTT p99 window (default 10m)")
    parser.add_argument(
        "--report-interval",
        default="10s",
        help="the run's report interval (default 10s; shorter: more intervals to grow by)",
    )
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="N")
    parser.add_argument("--keep", type=Path, help="keep the results directory under this path")
    parser.add_argument("--verbose", action="store_true", help="print every interval's sample")
    args = parser.parse_args(argv)
    try:
        duration = seconds("--duration", args.duration)
        every = seconds("--interval", args.interval)
        window = seconds("--window", args.window)
        report = seconds("--report-interval", args.report_interval)
    except ValueError as exc:
        parser.error(str(exc))
    if args.clients < 1:
        parser.error("--clients: expected at least 1")
    if not 0.1 <= report <= 60:
        parser.error(f"--report-interval: expected 0.1s to 60s, got {args.report_interval!r}")
    ramp = max(10.0, math.ceil(args.clients / 200))
    settle = max(30.0, 2 * every)  # after the ramp, before RSS is judged
    if duration < ramp + settle + 30:
        parser.error(
            f"--duration: expected at least {ramp + settle + 30:g}s for {args.clients} clients"
        )
    hold = duration - ramp
    limit = raise_fd_limit()
    if limit < args.clients + 200:
        parser.error(f"--clients {args.clients}: the descriptor limit is {limit}")
    say(
        f"bench-soak: {args.clients} clients, {every:g}s heartbeats, ramp {ramp:g}s, "
        f"hold {hold:g}s, {report:g}s intervals; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    tracer = Tracer(args.tracemalloc)
    samples: list[Sample] = []
    # what is kept of each interval record (not the record: the benchmark
    # must not grow by its own bookkeeping): its start and GC collections
    collections: list[tuple[float, int]] = []
    try:
        with childproc.gateway_process(
            "--hb-interval", f"{every:g}s", "--hb-timeout", f"{3 * every:g}s"
        ) as gw:
            stats = f"http://127.0.0.1:{gw.port}/api/stats"
            profile = parse_profile(
                profile_text(gw.url, stats, args.clients, ramp, hold, every, report),
                "bench-soak.toml",
                {},
            )
            fds0, gw_fds0 = fds_of(), fds_of(gw.pid)

            def on_interval(record: dict[str, Any]) -> None:
                t = record["t"] + record["dt"]
                collections.append((record["t"], record["gc_collections"]))
                sample = Sample(t, rss_of(), rss_of(gw.pid), fds_of(), fds_of(gw.pid))
                samples.append(sample)
                if args.verbose:
                    say(
                        f"  [{t:7.1f}s] tester {sample.rss / 2**20:.2f} MiB, gateway "
                        f"{sample.gateway_rss / 2**20:.2f} MiB, fds {sample.fds}/"
                        f"{sample.gateway_fds}, connected {record['connected']}, "
                        f"rtt p99 {record.get('rtt_p99_ms')} ms"
                    )
                # the last whole interval of the hold (not the run's last,
                # written while every client is being closed)
                tracer.interval(t, t >= ramp + settle, t >= duration - 1.5 * record["dt"])

            recorder = Recorder(tmp, "bench-soak", time.time())
            runner = Runner(profile, recorder, on_interval=on_interval, manage_gc=True)
            started = time.monotonic()
            outcome = trio.run(runner.run)
            wall = time.monotonic() - started
            tracer.finish()
            fds1 = fds_of()
            # the gateway closes its side as the clients' closes reach it: wait for it (bounded)
            deadline = time.monotonic() + 15
            while fds_of(gw.pid) > gw_fds0 and time.monotonic() < deadline:
                time.sleep(0.2)
            gw_fds1 = fds_of(gw.pid)
        windows = rtt_windows(recorder.path / "rtt.hlog", window)
        if args.keep is not None:
            shutil.copytree(recorder.path, args.keep / recorder.path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    summary = outcome.summary
    tot = summary["totals"]
    # the hold's samples once the ramp settled; not the last, partial one
    # written while every client is being closed
    steady = [s for s in samples if ramp + settle <= s.t <= duration + 0.5]
    after_ramp = steady[0] if steady else None
    last = steady[-1] if steady else None
    tester, tester_pct = growth(steady, "rss")
    gateway, _ = growth(steady, "gateway_rss")
    gc_after = sum(n for t, n in collections if t >= ramp + settle)
    rec = summary.get("reconcile", {})
    say(f"\nbench-soak: {outcome.status} after {wall:.0f}s, exit code {outcome.exit_code}")
    if after_ramp is not None and last is not None:
        say(
            f"  tester RSS      {after_ramp.rss / 2**20:.1f} MiB after the ramp, "
            f"{last.rss / 2**20:.1f} MiB at the end of the hold; slope {tester}"
        )
        say(
            f"  gateway RSS     {after_ramp.gateway_rss / 2**20:.1f} MiB after the ramp, "
            f"{last.gateway_rss / 2**20:.1f} MiB at the end of the hold; slope {gateway}"
        )
        say(
            f"  descriptors     tester {fds0} before, {after_ramp.fds} after the ramp, {fds1} "
            f"after the run; gateway {gw_fds0}, {after_ramp.gateway_fds}, {gw_fds1}"
        )
    say(
        f"  GC              pause max {summary['tester']['gc_pause_max_ms']} ms, total "
        f"{summary['tester']['gc_pause_total_ms']} ms; {gc_after} collections after the ramp"
    )
    for start, p99, n in windows:
        minutes = f"{start / 60:5.0f}-{(start + window) / 60:.0f} min"
        say(f"  RTT p99         {minutes}: {p99:.2f} ms (n={n})")
    say(
        f"  heartbeats      {tot['pings']} sent, {tot['pongs']} pongs, missed {tot['missed']}, "
        f"zombies {tot['zombies']}, handshake failures {tot['handshake_failure_total']}"
    )
    say(
        f"  server count    largest gap {rec.get('max_gap')} (server - client), longest gap "
        f"{rec.get('longest_gap_s')}s, {rec.get('failed_polls')} of {rec.get('polls')} polls failed"
    )
    tracer.report()
    checks = [
        ("tester RSS growth < 1%/hour after the ramp",
         tester_pct is not None and tester_pct < RSS_TARGET_PCT_PER_HOUR),
        ("no descriptor leaked (tester and gateway back to where they started)",
         fds1 <= fds0 and gw_fds1 <= gw_fds0),
        ("no heartbeat missed", tot["missed"] == 0),
    ]  # fmt: skip
    say("")
    for text, ok in checks:
        say(f"  {'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
