"""Engine benchmark: what one soak client process does on this machine.

Run it against the built-in reference gateway on loopback::

    .venv/bin/python benchmarks/engine.py            # full, ~8 minutes
    .venv/bin/python benchmarks/engine.py --quick    # smoke check, < 1 minute
    .venv/bin/python benchmarks/engine.py --only knee --verbose

Figures (each printed on one line, then a table with targets):

1. ``held``: clients one process holds with 30 s heartbeats (ramp, then a
   ~60 s hold): connected at the end of the hold, missed heartbeats,
   handshake failures; also RTT and loop lag over the steady part of the
   hold, apart from the whole run (ramps and the final close stall the loop).
2. ``rss_per_conn``: (client RSS with N idle connections - RSS before any
   client) / N, read from /proc/self/statm after the ramp, once every client
   has had at least one heartbeat round trip (quick mode excepted).
3. ``handshakes_per_s``: N clients requested at once (a ``0s`` ramp); N /
   seconds until all are connected, for a few ``max_connecting`` values.
4. ``knee``: 5,000 clients with the JSON heartbeat at several rates; RTT p99
   per step, from the recorder's own ``rtt.hlog`` over the step's steady
   window (the ramp and the first heartbeat interval skipped). The knee is
   the highest rate with RTT p99 <= 10 ms. Also printed per step: send
   lateness (``lag``) p99, event-loop lag and the client's CPU time per
   heartbeat round trip.

CPU time comes from ``time.process_time()`` (the client) and /proc/<pid>/stat
(the gateway); "waiting for a CPU" is run-queue time from /proc/<pid>/schedstat,
which shows how much the two processes (and anything else running) got in
each other's way. ``--verbose`` prints every interval record as it comes.

Every scenario (and every knee step) gets a fresh gateway subprocess, so
numbers do not bleed from one to the next. The client and the gateway share
the machine's cores; the load average is printed so readers can judge.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from hdrh.histogram import HdrHistogram

from soak import childproc
from soak.childproc import SoakChild, listening_port
from soak.config.load import parse_profile
from soak.limits import CLIENT_BYTES, raise_fd_limit
from soak.metrics import new_histogram
from soak.recorder import Recorder
from soak.results import hlog
from soak.results.hlog import HlogEntry
from soak.results.names import hlog_name
from soak.results.problems import Problems
from soak.run.runner import Outcome, Runner

ROOT = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")
KNEE_RTT_P99_MS = 10.0
# soak run and soak doctor size memory with this per connection: the client must stay under it
TARGET_RSS = f"<= {CLIENT_BYTES // 1024} KiB"
VERBOSE = False  # --verbose: print every interval record


# -- small helpers -------------------------------------------------------------


def say(text: str = "") -> None:
    print(text, flush=True)


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def rss_of(pid: int | str = "self") -> int:
    """Resident set size in bytes, from /proc/<pid>/statm."""
    with open(f"/proc/{pid}/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * PAGE


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of another process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def runq_wait_of(pid: int | str = "self") -> float:
    """Seconds the (main thread of the) process has spent runnable but
    waiting for a CPU, from /proc/<pid>/schedstat: the cost of sharing the
    cores with the gateway and with whatever else runs on the machine."""
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return math.nan


def mib(n: float) -> str:
    return f"{n / 1048576:.1f} MiB"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def pct_ms(h: HdrHistogram, q: float) -> float | None:
    if not h.get_total_count():
        return None
    return float(h.get_value_at_percentile(q)) / 1000.0


# -- the reference gateway in a child process ------------------------------------------


class GatewayProcess:
    """A soak child process (:mod:`soak.childproc`) with what the benchmarks
    measure of it: CPU, run-queue wait and RSS."""

    def __init__(self, child: SoakChild) -> None:
        self.child = child
        self.proc = child.proc
        self.port = child.port
        self.rss0 = rss_of(child.pid)

    @property
    def url(self) -> str:
        return self.child.url

    def cpu(self) -> float:
        try:
            return cpu_of(self.proc.pid)
        except (OSError, ValueError, IndexError):
            return math.nan

    def runq_wait(self) -> float:
        return runq_wait_of(self.proc.pid)

    def rss(self) -> int:
        try:
            return rss_of(self.proc.pid)
        except (OSError, ValueError, IndexError):
            return 0


@contextmanager
def soak_child(
    args: list[str], port_of: Callable[[str], int] = listening_port
) -> Iterator[GatewayProcess]:
    """``python -m soak ARGS`` in a child process of its own (its CPU and
    memory are measured apart from ours), until its first line, from which
    ``port_of`` reads the port it listens on; stopped (SIGTERM) at the end."""
    with childproc.soak_child(args, port_of=port_of, cwd=ROOT) as child:
        yield GatewayProcess(child)


def gateway(*extra: str) -> AbstractContextManager[GatewayProcess]:
    """The reference gateway on 127.0.0.1, port chosen by the kernel."""
    args = ["gateway", "--port", "0", "--hb-interval", "30s", "--hb-timeout", "120s", *extra]
    return soak_child(args)


# -- one run of the engine ---------------------------------------------------------------


@dataclass
class Mark:
    """Taken in the on_interval callback, at an interval boundary."""

    end: float  # seconds since the run started
    cpu: float  # time.process_time() of this (the client) process
    gw_cpu: float  # the gateway's CPU seconds
    wait: float  # seconds this process waited for a CPU (schedstat)
    gw_wait: float  # the same for the gateway
    record: dict[str, Any]


@dataclass
class RunResult:
    outcome: Outcome
    marks: list[Mark]
    hlogs: dict[str, list[HlogEntry]]
    rss_before: int
    wall_s: float

    def mark_at(self, end: float) -> Mark | None:
        for m in self.marks:
            if abs(m.end - end) < 1e-3:
                return m
        return None

    def window(self, w0: float, w1: float) -> list[Mark]:
        """Interval records that lie wholly inside [w0, w1]."""
        return [m for m in self.marks if m.end - m.record["dt"] >= w0 - 1e-3 and m.end <= w1 + 1e-3]

    def merged(self, name: str, w0: float, w1: float) -> HdrHistogram:
        """One histogram over [w0, w1], merged from the recorder's hlog."""
        h = new_histogram()
        for e in self.hlogs.get(name, []):
            if e.start >= w0 - 1e-3 and e.start + e.length <= w1 + 1e-3:
                hist = e.decode()
                if hist is None:
                    raise RuntimeError(f"{name}.hlog: an interval at {e.start:g} s does not decode")
                h.add(hist)
        return h


def read_hlog(path: Path) -> list[HlogEntry]:
    """The recorder's interval lines, still encoded; a damaged line (there
    should be none) stops the benchmark."""
    problems = Problems()
    entries = list(hlog.read_entries(path, problems))
    if problems.lines:
        raise RuntimeError("; ".join(problems.lines))
    return entries


Watcher = Callable[[Runner], Awaitable[None]]


def run_engine(
    toml: str, gw: GatewayProcess, *, watch: Watcher | None = None, hlogs: tuple[str, ...] = ()
) -> RunResult:
    """Build a Runner from ``toml`` and run it in this process."""
    profile = parse_profile(toml, "benchmark", {})
    tmp = tempfile.mkdtemp(prefix="soak-bench-")
    marks: list[Mark] = []

    def on_interval(record: dict[str, Any]) -> None:
        if VERBOSE:
            say(
                "  interval t={t:g}+{dt:g}s connected={connected} connects={connects} "
                "pings={pings} pongs={pongs} missed={missed} rtt_p99={rtt} lag_p99={lag} "
                "loop_lag_max={loop} gc_max={gc_pause_max_ms}ms gcs={gc_collections} "
                "rss={rss}".format(
                    rtt=record.get("rtt_p99_ms", "-"),
                    lag=record.get("lag_p99_ms", "-"),
                    loop=record.get("loop_lag_max_ms", "-"),
                    rss=mib(record["rss_bytes"]),
                    **record,
                )
            )
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

    try:
        gc.collect()
        rss_before = rss_of()
        recorder = Recorder(tmp, profile.run.label, time.time())
        runner = Runner(profile, recorder, on_interval=on_interval, lag_probe=0.02, manage_gc=True)

        async def main() -> Outcome:
            done: list[Outcome] = []
            async with trio.open_nursery() as nursery:
                if watch is not None:
                    nursery.start_soon(watch, runner)
                done.append(await runner.run())
                nursery.cancel_scope.cancel()
            return done[0]

        started = time.monotonic()
        outcome = trio.run(main)
        wall = time.monotonic() - started
        logs = {name: read_hlog(recorder.path / hlog_name(name)) for name in hlogs}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return RunResult(outcome, marks, logs, rss_before, wall)


async def wait_started(runner: Runner) -> float:
    """The run's t0 (trio time), once ``runner.run`` has set up its state."""
    # Runner sets ``shared`` inside run() and offers no event to wait on.
    while getattr(runner, "shared", None) is None:  # noqa: ASYNC110
        await trio.sleep(0.001)
    return runner.shared.services.t0


def profile_toml(
    *,
    label: str,
    url: str,
    stages: list[tuple[str, float, int]],
    interval: float,
    report_interval: float,
    max_connecting: int = 256,
    connect_timeout: str = "10s",
    heartbeat_extra: str = "",
    run_extra: str = "",
) -> str:
    stage_text = ""
    for kind, duration, to in stages:
        stage_text += f'\n[[clients.stages]]\nkind = "{kind}"\nduration = "{duration:g}s"\n'
        if kind == "ramp":
            stage_text += f"to = {to}\n"
    return f"""
[run]
label = "{label}"
report_interval = "{report_interval:g}s"
{run_extra}

[target]
url = "{url}"
protocol = "json"
connect_timeout = "{connect_timeout}"

[clients]
max_connecting = {max_connecting}
{stage_text}
[heartbeat]
interval = "{interval * 1000:g}ms"
timeout = "10s"
max_missed = 3
phase = "spread"
{heartbeat_extra}
"""


# -- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    value: str
    target: str
    ok: bool


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, figure: str, value: str, target: str, ok: bool) -> None:
        self.rows.append(Row(figure, value, target, ok))

    def table(self) -> str:
        head = ("figure", "value", "target", "result")
        cells = [head] + [
            (r.figure, r.value, r.target, "PASS" if r.ok else "FAIL") for r in self.rows
        ]
        widths = [max(len(c[i]) for c in cells) for i in range(4)]
        lines = []
        for n, c in enumerate(cells):
            lines.append("  ".join(c[i].ljust(widths[i]) for i in range(4)).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def as_json(self) -> str:
        """The same rows, one JSON document (for scripts and history)."""
        return json.dumps(
            {
                "benchmark": "engine",
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "figures": [
                    {"figure": r.figure, "value": r.value, "target": r.target, "ok": r.ok}
                    for r in self.rows
                ],
            }
        )


@dataclass(frozen=True)
class Plan:
    quick: bool
    held_steps: tuple[int, int]  # rss measured at both, held = the second
    held_ramp_s: tuple[float, float]
    held_hold_s: tuple[float, float]
    held_target: int
    hs_clients: int
    hs_max_connecting: tuple[int, ...]
    knee_clients: int
    knee_rates: tuple[int, ...]
    knee_ramp_s: float
    knee_hold_s: float
    knee_report_s: float


FULL = Plan(
    quick=False,
    held_steps=(10_000, 19_000),
    held_ramp_s=(10.0, 10.0),
    # 40 s: every client has had a heartbeat round trip (30 s grid) before
    # the first RSS reading; 60 s: the hold the scale target asks for
    held_hold_s=(40.0, 60.0),
    held_target=19_000,
    hs_clients=10_000,
    hs_max_connecting=(64, 128, 256),
    knee_clients=5_000,
    knee_rates=(1_000, 2_000, 2_500, 3_000, 4_000, 5_000, 6_000),
    knee_ramp_s=5.0,
    knee_hold_s=30.0,
    knee_report_s=5.0,
)

QUICK = Plan(
    quick=True,
    held_steps=(1_000, 2_000),
    held_ramp_s=(1.0, 1.0),
    held_hold_s=(5.0, 6.0),
    held_target=2_000,
    hs_clients=2_000,
    hs_max_connecting=(128,),
    knee_clients=2_000,
    knee_rates=(1_000, 2_500),
    knee_ramp_s=2.0,
    knee_hold_s=7.0,
    knee_report_s=1.0,
)


# -- 1 and 2: held clients and RSS per idle connection ------------------------------------


def bench_held(plan: Plan, report: Report) -> None:
    n1, n2 = plan.held_steps
    r1, r2 = plan.held_ramp_s
    h1, h2 = plan.held_hold_s
    end1 = r1 + h1  # the first hold ends, the second ramp starts
    end2 = end1 + r2 + h2
    say(
        f"[held] ramp to {n1:,} in {r1:g}s, hold {h1:g}s, ramp to {n2:,} in {r2:g}s, "
        f"hold {h2:g}s; 30 s heartbeats (load {loadavg()})"
    )
    probes: dict[str, dict[str, float]] = {}
    seen: dict[str, float] = {"min_connected": math.inf, "all_at": math.nan}

    async def watch(runner: Runner) -> None:
        t0 = await wait_started(runner)
        plan_at = {"n1": end1 - 1.0, "n2": end2 - 0.5}
        while True:
            await trio.sleep(0.1)
            t = trio.current_time() - t0
            connected = runner.shared.gauges.connected
            if math.isnan(seen["all_at"]) and connected >= n2:
                seen["all_at"] = t
            if end1 + r2 + 5.0 <= t <= end2:
                seen["min_connected"] = min(seen["min_connected"], connected)
            for key, at in plan_at.items():
                if key not in probes and t >= at:
                    probes[key] = {
                        "t": t,
                        "connected": connected,
                        "rss": rss_of(),
                        "gw_rss": gw.rss(),
                    }

    with gateway() as gw:
        toml = profile_toml(
            label="bench-held",
            url=gw.url,
            stages=[("ramp", r1, n1), ("hold", h1, 0), ("ramp", r2, n2), ("hold", h2, 0)],
            interval=30.0,
            report_interval=5.0,
        )
        res = run_engine(toml, gw, watch=watch, hlogs=("rtt", "lag", "loop_lag"))
        gw_rss0 = gw.rss0
    s = res.outcome.summary
    tot = s["totals"]
    base = res.rss_before
    held = int(probes["n2"]["connected"]) if "n2" in probes else 0
    missed = int(tot["missed"])
    failures = int(tot["handshake_failure_total"])
    ramp_rate = (n2 - n1) / (seen["all_at"] - end1) if seen["all_at"] > end1 else math.nan
    lat = s["latency_ms"]
    say(
        f"held: {held:,} of {n2:,} clients connected at the end of the {h2:g}s hold "
        f"(fewest during the hold: {seen['min_connected']:,.0f}); missed heartbeats {missed}; "
        f"handshake failures {failures}{' ' + str(tot['handshake_failures']) if failures else ''}; "
        f"reconnects {tot['reconnects']}; zombies {tot['zombies']}; pongs {tot['pongs']:,}; "
        f"all {n2:,} connected {seen['all_at'] - end1:.1f}s after the second ramp began "
        f"({ramp_rate:,.0f}/s with heartbeats running)"
    )
    # the steady part of the second hold: whole report intervals, from 10 s
    # after the ramp to the last boundary before the end (the runner writes
    # the final interval after it has closed every connection)
    ri = 5.0
    w0 = math.ceil((end1 + r2 + 10.0) / ri) * ri
    w1 = math.ceil(end2 / ri - 1.0) * ri
    if w1 > w0:
        rtt = res.merged("rtt", w0, w1)
        lag = res.merged("lag", w0, w1)
        loop = res.merged("loop_lag", w0, w1)
        recs = [m.record for m in res.window(w0, w1)]
        say(
            f"held, steady hold t={w0:g}-{w1:g}s with {n2:,} clients: "
            f"{sum(int(r['pongs']) for r in recs) / (w1 - w0):,.0f} pongs/s, "
            f"rtt p50 {ms(pct_ms(rtt, 50.0))} p99 {ms(pct_ms(rtt, 99.0))} "
            f"max {ms(rtt.get_max_value() / 1000.0 if rtt.get_total_count() else None)}; "
            f"lag p99 {ms(pct_ms(lag, 99.0))}; loop lag p99 {ms(pct_ms(loop, 99.0))} "
            f"max {ms(loop.get_max_value() / 1000.0 if loop.get_total_count() else None)}; "
            f"gc pause max {max((float(r['gc_pause_max_ms']) for r in recs), default=0.0):.1f} ms"
        )
    worst = max(res.marks, key=lambda m: float(m.record.get("loop_lag_max_ms", 0.0)))
    wr = worst.record
    say(
        f"held, whole run incl. ramps and the final close: rtt p99 "
        f"{lat['rtt'].get('p99', 'n/a')} ms; loop lag max {lat['loop_lag'].get('max', 'n/a')} ms "
        f"(worst interval t={wr['t']:g}-{worst.end:g}s: loop lag max "
        f"{wr.get('loop_lag_max_ms', 0)} ms, gc pause max {wr['gc_pause_max_ms']} ms, "
        f"connects {wr['connects']}); gc pause max {s['tester']['gc_pause_max_ms']} ms"
    )
    report.add(
        "held",
        f"{held:,} connected",
        f">= {plan.held_target:,}",
        held >= plan.held_target,
    )
    report.add("held: missed heartbeats", str(missed), "0", missed == 0)
    report.add("held: handshake failures", str(failures), "0 (informational)", failures == 0)
    note = " (quick: most clients not yet heartbeated)" if plan.quick else ""
    for key, n in (("n1", n1), ("n2", n2)):
        p = probes.get(key)
        if p is None:
            say(f"rss_per_conn @ {n:,}: no reading")
            report.add(f"rss_per_conn @ {n:,}", "no reading", TARGET_RSS, False)
            continue
        per = (p["rss"] - base) / p["connected"] / 1024 if p["connected"] else math.inf
        gw_per = (p["gw_rss"] - gw_rss0) / p["connected"] / 1024 if p["connected"] else math.inf
        say(
            f"rss_per_conn @ {n:,}: {per:.2f} KiB per idle connection "
            f"(client RSS {mib(p['rss'])} - {mib(base)} before any client, "
            f"{p['connected']:,.0f} connected, t={p['t']:.0f}s){note}; "
            f"gateway {gw_per:.2f} KiB per connection"
        )
        report.add(
            f"rss_per_conn @ {n:,}", f"{per:.2f} KiB", TARGET_RSS, per <= CLIENT_BYTES / 1024
        )


# -- 3: handshakes per second ------------------------------------------------------------------


def handshake_run(n: int, mc: int) -> float | None:
    """N clients requested at once; returns connections per second."""
    say(f"[handshakes] {n:,} clients at once (0s ramp), max_connecting {mc} (load {loadavg()})")
    got: dict[str, float] = {}
    with gateway() as gw:

        async def watch(runner: Runner) -> None:
            t0 = await wait_started(runner)
            while True:
                await trio.sleep(0.005)
                if runner.shared.gauges.connected >= n:
                    got["t"] = trio.current_time() - t0
                    got["cpu"] = time.process_time()
                    got["gw_cpu"] = gw.cpu()
                    got["wait"] = runq_wait_of()
                    got["gw_wait"] = gw.runq_wait()
                    runner.stop("completed")
                    return

        # a long connect timeout: it runs from the moment a client asks,
        # including its wait for one of the max_connecting slots
        toml = profile_toml(
            label="bench-handshakes",
            url=gw.url,
            stages=[("ramp", 0.0, n), ("hold", 60.0, 0)],
            interval=300.0,  # no heartbeats during the ramp: pure set-up
            report_interval=5.0,
            max_connecting=mc,
            connect_timeout="60s",
        )
        cpu0 = time.process_time()
        gw_cpu0 = gw.cpu()
        wait0 = runq_wait_of()
        gw_wait0 = gw.runq_wait()
        res = run_engine(toml, gw, watch=watch)
    tot = res.outcome.summary["totals"]
    conn = res.outcome.summary["latency_ms"]["connect"]
    if "t" not in got:
        say(
            f"handshakes_per_s: max_connecting {mc}: not all {n:,} connected "
            f"(connects {tot['connects']:,}, failures {tot['handshake_failures']})"
        )
        return None
    rate = n / got["t"]
    cpu_ms = (got["cpu"] - cpu0) / n * 1000
    gw_ms = (got["gw_cpu"] - gw_cpu0) / n * 1000
    say(
        f"handshakes_per_s: {rate:,.0f}/s with max_connecting {mc} "
        f"({n:,} connected in {got['t']:.2f}s; failures {tot['handshake_failure_total']}; "
        f"connect p50 {conn.get('p50')} ms p99 {conn.get('p99')} ms (handshake, no queue); "
        f"CPU per handshake: client {cpu_ms:.3f} ms, gateway {gw_ms:.3f} ms; "
        f"busy/waiting for a CPU: client {(got['cpu'] - cpu0) / got['t'] * 100:.0f}%/"
        f"{(got['wait'] - wait0) / got['t'] * 100:.0f}%, gateway "
        f"{(got['gw_cpu'] - gw_cpu0) / got['t'] * 100:.0f}%/"
        f"{(got['gw_wait'] - gw_wait0) / got['t'] * 100:.0f}%)"
    )
    return rate


def bench_handshakes(plan: Plan, report: Report) -> None:
    best: tuple[float, int] | None = None
    for mc in plan.hs_max_connecting:
        rate = handshake_run(plan.hs_clients, mc)
        if rate is not None and (best is None or rate > best[0]):
            best = (rate, mc)
    if best is None:
        report.add("handshakes_per_s", "no result", ">= 1,500/s", False)
    else:
        say(f"handshakes_per_s: best {best[0]:,.0f}/s at max_connecting {best[1]}")
        report.add(
            "handshakes_per_s",
            f"{best[0]:,.0f}/s (max_connecting {best[1]})",
            ">= 1,500/s",
            best[0] >= 1500,
        )


# -- 4: the heartbeat knee ------------------------------------------------------------------------


@dataclass
class Step:
    rate: int
    achieved: float
    rtt_p50: float | None
    rtt_p99: float | None
    rtt_max: float | None
    lag_p99: float | None
    loop_p99: float | None
    loop_max: float | None
    cpu_us: float
    gw_cpu_us: float
    client_util: float
    client_wait: float  # fraction of the window the client waited for a CPU
    gw_util: float
    gw_wait: float
    missed: int
    skipped: int
    gc_max_ms: float

    @property
    def ok(self) -> bool:
        return self.rtt_p99 is not None and self.rtt_p99 <= KNEE_RTT_P99_MS


def knee_step(plan: Plan, rate: int) -> Step | None:
    n = plan.knee_clients
    interval = n / rate
    ri = plan.knee_report_s
    ramp, hold = plan.knee_ramp_s, plan.knee_hold_s
    # steady window: after the ramp and the first heartbeat interval; the run
    # goes on one more interval so the window's last boundary is a normal one
    w0 = math.ceil((ramp + interval + 0.25) / ri) * ri
    w1 = ramp + hold
    with gateway() as gw:
        toml = profile_toml(
            label="bench-knee",
            url=gw.url,
            stages=[("ramp", ramp, n), ("hold", hold + ri, 0)],
            interval=interval,
            report_interval=ri,
        )
        res = run_engine(toml, gw, hlogs=("rtt", "lag", "loop_lag"))
    m0, m1 = res.mark_at(w0), res.mark_at(w1)
    if m0 is None or m1 is None or w1 <= w0:
        say(f"knee: {rate:,}/s: no steady window (w0={w0:g}, w1={w1:g})")
        return None
    recs = [m.record for m in res.window(w0, w1)]
    pongs = sum(int(r["pongs"]) for r in recs)
    rtt = res.merged("rtt", w0, w1)
    lag = res.merged("lag", w0, w1)
    loop = res.merged("loop_lag", w0, w1)
    span = w1 - w0
    cpu = m1.cpu - m0.cpu
    gw_cpu = m1.gw_cpu - m0.gw_cpu
    return Step(
        rate=rate,
        achieved=pongs / span,
        rtt_p50=pct_ms(rtt, 50.0),
        rtt_p99=pct_ms(rtt, 99.0),
        rtt_max=rtt.get_max_value() / 1000.0 if rtt.get_total_count() else None,
        lag_p99=pct_ms(lag, 99.0),
        loop_p99=pct_ms(loop, 99.0),
        loop_max=loop.get_max_value() / 1000.0 if loop.get_total_count() else None,
        cpu_us=cpu / pongs * 1e6 if pongs else math.inf,
        gw_cpu_us=gw_cpu / pongs * 1e6 if pongs else math.inf,
        client_util=cpu / span,
        client_wait=(m1.wait - m0.wait) / span,
        gw_util=gw_cpu / span,
        gw_wait=(m1.gw_wait - m0.gw_wait) / span,
        missed=sum(int(r["missed"]) for r in recs),
        skipped=sum(int(r["skipped"]) for r in recs),
        gc_max_ms=max((float(r["gc_pause_max_ms"]) for r in recs), default=0.0),
    )


def bench_knee(plan: Plan, report: Report) -> None:
    n = plan.knee_clients
    steps: list[Step] = []
    failed_in_a_row = 0
    for rate in plan.knee_rates:
        if failed_in_a_row >= 2:
            say(f"[knee] {rate:,}/s skipped: the two steps below it were over 10 ms")
            continue
        say(
            f"[knee] {n:,} clients, JSON heartbeat every {n / rate:.3f}s = {rate:,}/s, "
            f"hold {plan.knee_hold_s:g}s (load {loadavg()})"
        )
        step = knee_step(plan, rate)
        if step is None:
            continue
        steps.append(step)
        failed_in_a_row = 0 if step.ok else failed_in_a_row + 1
        say(
            f"knee step {rate:,}/s: achieved {step.achieved:,.0f} pongs/s; "
            f"rtt p50 {ms(step.rtt_p50)} p99 {ms(step.rtt_p99)} max {ms(step.rtt_max)}; "
            f"send lateness (lag) p99 {ms(step.lag_p99)}; "
            f"loop lag p99 {ms(step.loop_p99)} max {ms(step.loop_max)}; "
            f"client CPU {step.cpu_us:.0f} us per heartbeat round trip "
            f"(busy {step.client_util * 100:.0f}% of a core, waiting for a CPU "
            f"{step.client_wait * 100:.0f}% of the time); gateway CPU {step.gw_cpu_us:.0f} us "
            f"per heartbeat (busy {step.gw_util * 100:.0f}%, waiting {step.gw_wait * 100:.0f}%); "
            f"missed {step.missed}; skipped {step.skipped}; "
            f"gc pause max {step.gc_max_ms:.1f} ms -> {'ok' if step.ok else 'over 10 ms'}"
        )
    passing = [s for s in steps if s.ok]
    if not passing:
        say("heartbeat knee: no step kept RTT p99 <= 10 ms")
        report.add("heartbeat knee", "none <= 10 ms", ">= 2,500/s", False)
        return
    knee = max(passing, key=lambda s: s.rate)
    below_fail = [s.rate for s in steps if not s.ok and s.rate < knee.rate]
    caveat = f" (but failed at {below_fail} /s: noisy)" if below_fail else ""
    if knee.rate == max(s.rate for s in steps):
        caveat += " (the highest rate tested: the knee is at or above it)"
    say(
        f"heartbeat knee: {knee.rate:,}/s (RTT p99 {ms(knee.rtt_p99)}, lag p99 "
        f"{ms(knee.lag_p99)}, client CPU {knee.cpu_us:.0f} us per heartbeat round trip)"
        f"{caveat}"
    )
    report.add(
        "heartbeat knee",
        f"{'>= ' if knee.rate == max(s.rate for s in steps) else ''}{knee.rate:,}/s "
        f"(p99 {ms(knee.rtt_p99)})",
        ">= 2,500/s",
        knee.rate >= 2500,
    )
    report.add(
        "knee: client CPU/heartbeat",
        f"{knee.cpu_us:.0f} us",
        "informational",
        True,
    )


# -- main ---------------------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[Plan, Report], None]] = {
    "held": bench_held,
    "handshakes_per_s": bench_handshakes,
    "knee": bench_knee,
}
ALIASES = {"rss_per_conn": "held", "handshakes": "handshakes_per_s", "heartbeat_knee": "knee"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="small N, short holds (< 1 minute)")
    ap.add_argument("--verbose", action="store_true", help="print every interval record")
    ap.add_argument(
        "--wsproto-handshake",
        action="store_true",
        help="the upgrade through wsproto/h11 and trio.open_tcp_stream, as before issue 19 "
        "(a before/after of handshakes_per_s on the same machine)",
    )
    ap.add_argument(
        "--only",
        action="append",
        choices=sorted([*SCENARIOS, *ALIASES]),
        help="run only this scenario (may be repeated); rss_per_conn runs with held",
    )
    args = ap.parse_args(argv)
    global VERBOSE
    VERBOSE = args.verbose
    if args.wsproto_handshake:
        from soak.client import transport, upgrade

        upgrade.CAN_REPLAY = False
        transport.numeric_family = lambda host: None
    plan = QUICK if args.quick else FULL
    chosen = [ALIASES.get(name, name) for name in (args.only or list(SCENARIOS))]
    fds = raise_fd_limit()
    say(
        f"soak engine benchmark ({'quick' if plan.quick else 'full'}): python "
        f"{sys.version.split()[0]}, trio {trio.__version__}, {os.cpu_count()} CPUs, "
        f"fd limit {fds}, load average {loadavg()}"
        + ("; upgrade through wsproto (--wsproto-handshake)" if args.wsproto_handshake else "")
    )
    report = Report()
    started = time.monotonic()
    for name in SCENARIOS:  # in this order: held first, for the cleanest RSS baseline
        if name in chosen:
            SCENARIOS[name](plan, report)
            gc.collect()
    say()
    say(
        f"done in {time.monotonic() - started:.0f}s; load average at the end {loadavg()}"
        + ("; quick mode: targets are for the full run" if plan.quick else "")
    )
    say(report.table())
    say(report.as_json())
    return 0 if all(r.ok for r in report.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
