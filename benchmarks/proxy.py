"""Proxy benchmark: what soak's impairment proxy costs when it impairs nothing.

Run it against the built-in reference gateway on loopback::

    flock /tmp/soak-bench.lock .venv/bin/python benchmarks/proxy.py   # ~2.5 minutes
    .venv/bin/python benchmarks/proxy.py --quick                        # < 1 minute

Figures (a table with targets, then the same as one JSON object):

1. ``rtt``: heartbeat RTT over the steady part of a hold (the ramp and the
   first heartbeat interval skipped), from the recorder's own ``rtt.hlog``,
   three ways with the same load: ``direct`` (clients to the gateway),
   ``in-process`` (an empty ``[impairment]`` section: ``soak run`` puts its
   proxy in its own event loop, as it does for every impaired run) and
   ``soak proxy`` (the proxy in a process of its own). The added p50/p99 is
   the difference from ``direct``; the target is <= 1 ms p99 added.
2. ``capacity``: connections one ``soak proxy`` process holds with 30 s
   heartbeats for a whole hold, with its RSS per connection. A proxied
   connection takes two descriptors in the proxy (client side and upstream
   side), so a process holds at most (fd limit - 64) / 2 of them; an
   in-process proxy takes three per client (the client's own, plus two).

Every scenario gets a fresh gateway subprocess. Client, proxy and gateway
share the machine's cores; the load average is printed so readers can judge.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import trio
from engine import (
    GatewayProcess,
    Report,
    gateway,
    loadavg,
    mib,
    ms,
    pct_ms,
    profile_toml,
    run_engine,
    say,
    soak_child,
    wait_started,
)

from soak.childproc import listening_port
from soak.limits import FD_RESERVE, raise_fd_limit
from soak.run.runner import Runner

ADDED_P99_TARGET_MS = 1.0
ENGINE_HELD = 19_000  # what one engine process holds (benchmarks/engine.py)
MODES = ("direct", "in-process", "soak proxy")


def proxy_process(upstream_port: int) -> AbstractContextManager[GatewayProcess]:
    """``soak proxy`` on 127.0.0.1 in front of the gateway, in its own process."""
    # its first line: "soak proxy listening on 127.0.0.1:P -> 127.0.0.1:U"
    return soak_child(
        ["proxy", "--upstream", f"127.0.0.1:{upstream_port}"],
        lambda line: listening_port(line.split(" -> ")[0]),
    )


@dataclass(frozen=True)
class Plan:
    quick: bool
    rtt_clients: int
    rtt_interval: float
    rtt_ramp_s: float
    rtt_hold_s: float
    cap_clients: int
    cap_ramp_s: float
    cap_hold_s: float


def plan_for(quick: bool, fd_limit: int) -> Plan:
    fit = (fd_limit - FD_RESERVE) // 2  # two descriptors per proxied connection
    cap = min(fit, 2_000 if quick else 9_900)
    if quick:
        return Plan(True, 500, 1.0, 1.0, 8.0, cap, 2.0, 6.0)
    return Plan(False, 1_000, 2.0, 2.0, 24.0, cap, 10.0, 35.0)


# -- 1: added RTT ---------------------------------------------------------------------


@dataclass
class Rtt:
    mode: str
    pongs_per_s: float
    p50: float | None
    p90: float | None
    p99: float | None
    p999: float | None
    max: float | None
    missed: int
    cpu_us: float  # client process CPU per round trip (includes an in-process proxy)
    proxy_cpu_us: float | None  # a separate proxy process's CPU per round trip

    def json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "pongs_per_s": round(self.pongs_per_s, 1),
            "rtt_ms": {
                "p50": self.p50,
                "p90": self.p90,
                "p99": self.p99,
                "p99.9": self.p999,
                "max": self.max,
            },
            "missed": self.missed,
            "client_cpu_us_per_rtt": round(self.cpu_us, 1),
            "proxy_cpu_us_per_rtt": None
            if self.proxy_cpu_us is None
            else round(self.proxy_cpu_us, 1),
        }


def rtt_run(plan: Plan, mode: str) -> Rtt | None:
    n, interval = plan.rtt_clients, plan.rtt_interval
    ramp, hold = plan.rtt_ramp_s, plan.rtt_hold_s
    ri = 2.0 if not plan.quick else 1.0
    w1 = ramp + hold
    say(
        f"[rtt] {mode}: {n:,} clients, {interval:g}s heartbeats ({n / interval:,.0f}/s), "
        f"ramp {ramp:g}s, hold {hold:g}s (load {loadavg()})"
    )
    cpu: dict[str, float] = {}
    with gateway() as gw, _maybe_proxy(gw, mode) as px:
        url = px.url if px is not None else gw.url
        toml = profile_toml(
            label="bench-proxy",
            url=url,
            stages=[("ramp", ramp, n), ("hold", hold + ri, 0)],
            interval=interval,
            report_interval=ri,
        )
        if mode == "in-process":
            toml += "\n[impairment]\n"  # nothing impaired: the proxy just forwards

        async def watch(runner: Runner) -> None:
            # the steady window: from the first report boundary one heartbeat
            # interval after the last client connected, to the end of the hold
            t0 = await wait_started(runner)
            while runner.shared.gauges.connected < n:  # noqa: ASYNC110
                await trio.sleep(0.01)
            cpu["all_connected"] = trio.current_time() - t0
            cpu["w0_at"] = math.ceil((cpu["all_connected"] + interval + 0.25) / ri) * ri
            for key, at in (("w0", cpu["w0_at"]), ("w1", w1)):
                await trio.sleep_until(t0 + at)
                cpu[key] = time.process_time()
                cpu[f"px_{key}"] = px.cpu() if px is not None else math.nan

        res = run_engine(toml, gw, watch=watch, hlogs=("rtt",))
    if "w1" not in cpu or cpu["w0_at"] >= w1:
        say(f"rtt: {mode}: no steady window ({cpu})")
        return None
    w0 = cpu["w0_at"]
    recs = [m.record for m in res.window(w0, w1)]
    pongs = sum(int(r["pongs"]) for r in recs)
    if not pongs:
        say(f"rtt: {mode}: no pongs in the steady window t={w0:g}-{w1:g}s")
        return None
    h = res.merged("rtt", w0, w1)
    out = Rtt(
        mode=mode,
        pongs_per_s=pongs / (w1 - w0),
        p50=pct_ms(h, 50.0),
        p90=pct_ms(h, 90.0),
        p99=pct_ms(h, 99.0),
        p999=pct_ms(h, 99.9),
        max=h.get_max_value() / 1000.0 if h.get_total_count() else None,
        missed=sum(int(r["missed"]) for r in recs),
        cpu_us=(cpu["w1"] - cpu["w0"]) / pongs * 1e6,
        proxy_cpu_us=None if px is None else (cpu["px_w1"] - cpu["px_w0"]) / pongs * 1e6,
    )
    say(
        f"rtt: {mode}: all {n:,} connected at t={cpu['all_connected']:.1f}s "
        f"({n / cpu['all_connected']:,.0f}/s); steady window t={w0:g}-{w1:g}s"
    )
    say(
        f"rtt: {mode}: {out.pongs_per_s:,.0f} pongs/s, p50 {ms(out.p50)} p90 {ms(out.p90)} "
        f"p99 {ms(out.p99)} p99.9 {ms(out.p999)} max {ms(out.max)}; missed {out.missed}; "
        f"client CPU {out.cpu_us:.0f} us per round trip"
        + ("" if out.proxy_cpu_us is None else f", proxy process {out.proxy_cpu_us:.0f} us")
    )
    return out


@contextmanager
def _maybe_proxy(gw: GatewayProcess, mode: str) -> Iterator[GatewayProcess | None]:
    if mode != "soak proxy":
        yield None
        return
    with proxy_process(gw.port) as px:
        yield px


def added(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def bench_rtt(plan: Plan, report: Report, out: dict[str, Any]) -> None:
    runs = {mode: rtt_run(plan, mode) for mode in MODES}
    out["rtt"] = [r.json() for r in runs.values() if r is not None]
    base = runs["direct"]
    for mode in MODES[1:]:
        r = runs[mode]
        if base is None or r is None:
            report.add(f"rtt added by the proxy ({mode})", "no result", "p99 <= 1 ms", False)
            continue
        a50, a99 = added(r.p50, base.p50), added(r.p99, base.p99)
        out.setdefault("added_ms", {})[mode] = {"p50": a50, "p99": a99}
        ok = a99 is not None and a99 <= ADDED_P99_TARGET_MS
        report.add(
            f"rtt added by the proxy ({mode})",
            f"p50 {a50:+.2f} ms, p99 {a99:+.2f} ms" if a50 is not None and a99 is not None else "-",
            "p99 <= 1 ms",
            ok,
        )
        report.add(f"missed heartbeats ({mode})", str(r.missed), "0", r.missed == 0)


# -- 2: connections one proxy process holds ---------------------------------------------------


def bench_capacity(plan: Plan, report: Report, out: dict[str, Any], fd_limit: int) -> None:
    n, ramp, hold = plan.cap_clients, plan.cap_ramp_s, plan.cap_hold_s
    end = ramp + hold
    say(
        f"[capacity] {n:,} clients through one soak proxy process, ramp {ramp:g}s, "
        f"hold {hold:g}s, 30 s heartbeats (load {loadavg()})"
    )
    seen: dict[str, float] = {"min_connected": math.inf}
    with gateway() as gw, proxy_process(gw.port) as px:
        proxy_rss0 = px.rss0

        async def watch(runner: Runner) -> None:
            t0 = await wait_started(runner)
            while True:
                await trio.sleep(0.1)
                t = trio.current_time() - t0
                connected = runner.shared.gauges.connected
                if ramp + 5.0 <= t <= end:
                    seen["min_connected"] = min(seen["min_connected"], connected)
                if "held" not in seen and t >= end - 0.5:
                    seen["held"] = connected
                    seen["proxy_rss"] = px.rss()

        toml = profile_toml(
            label="bench-proxy-capacity",
            url=px.url,
            stages=[("ramp", ramp, n), ("hold", hold, 0)],
            interval=30.0,
            report_interval=5.0,
        )
        res = run_engine(toml, gw, watch=watch)
    tot = res.outcome.summary["totals"]
    held = int(seen.get("held", 0))
    per = (seen["proxy_rss"] - proxy_rss0) / held / 1024 if held else math.inf
    fit = (fd_limit - FD_RESERVE) // 2
    inproc_fit = (fd_limit - FD_RESERVE) // 3
    say(
        f"capacity: {held:,} of {n:,} connections held through one soak proxy process at the "
        f"end of the {hold:g}s hold (fewest during the hold: {seen['min_connected']:,.0f}); "
        f"missed {tot['missed']}; handshake failures {tot['handshake_failure_total']}; "
        f"proxy RSS {mib(seen.get('proxy_rss', 0))} ({per:.2f} KiB per connection)"
    )
    say(
        f"capacity: with a descriptor limit of {fd_limit:,}, one soak proxy process fits "
        f"{fit:,} connections (2 descriptors each) and soak run with [impairment] {inproc_fit:,} "
        f"clients (3 each); the engine's {ENGINE_HELD:,} need "
        f"{math.ceil(ENGINE_HELD / fit)} proxy processes"
    )
    out["capacity"] = {
        "clients": n,
        "held": held,
        "min_connected_during_hold": None
        if math.isinf(seen["min_connected"])
        else int(seen["min_connected"]),
        "missed": int(tot["missed"]),
        "handshake_failures": int(tot["handshake_failure_total"]),
        "proxy_rss_kib_per_conn": round(per, 2),
        "fd_limit": fd_limit,
        "fits_per_proxy_process": fit,
        "fits_in_process": inproc_fit,
        "proxy_processes_for_engine_held": math.ceil(ENGINE_HELD / fit),
    }
    report.add(
        "capacity: one soak proxy process",
        f"{held:,} of {n:,} held",
        f"{n:,} ((fd limit - {FD_RESERVE}) / 2 = {fit:,})",
        held >= n and int(tot["missed"]) == 0,
    )
    report.add(
        "capacity: vs the engine",
        f"{math.ceil(ENGINE_HELD / fit)} proxy processes per {ENGINE_HELD:,}-client engine",
        f"{ENGINE_HELD:,} (informational)",
        True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="small N, short holds (< 1 minute)")
    ap.add_argument(
        "--only", action="append", choices=["rtt", "capacity"], help="run only this scenario"
    )
    ap.add_argument("--json", metavar="PATH", help="also write the JSON figures to PATH")
    args = ap.parse_args(argv)
    fds = raise_fd_limit()
    plan = plan_for(args.quick, fds)
    chosen = args.only or ["rtt", "capacity"]
    say(
        f"soak proxy benchmark ({'quick' if plan.quick else 'full'}): python "
        f"{sys.version.split()[0]}, trio {trio.__version__}, {os.cpu_count()} CPUs, "
        f"fd limit {fds}, load average {loadavg()}"
    )
    report = Report()
    out: dict[str, Any] = {"quick": plan.quick, "date": time.strftime("%Y-%m-%d")}
    started = time.monotonic()
    if "rtt" in chosen:
        bench_rtt(plan, report, out)
    if "capacity" in chosen:
        bench_capacity(plan, report, out, fds)
    out["seconds"] = round(time.monotonic() - started)
    out["load_average_end"] = loadavg()
    say()
    say(f"done in {out['seconds']}s; load average at the end {loadavg()}")
    say(report.table())
    text = json.dumps(out, indent=2)
    say(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0 if all(r.ok for r in report.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
