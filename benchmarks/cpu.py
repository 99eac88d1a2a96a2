"""CPU benchmark: the tester's CPU per heartbeat round trip, and whether its
latency figures can be trusted at that load (issue 7's "CPU" and "truth
under load" targets).

The scenario of the issue: 5,000 clients, each sending a JSON ping every
second, for 60 s, against a pong server on loopback. Here the pong server is
the reference gateway (``soak gateway``) in its own process::

    .venv/bin/python benchmarks/cpu.py              # ~90 s
    .venv/bin/python benchmarks/cpu.py --json-out cpu.json

The clients ramp up over ``--ramp`` seconds; the measured window starts at
the first report boundary after the ramp plus one heartbeat interval (every
client is then on its grid) and lasts ``--hold`` seconds. Over that window:

- ``cpu_us_per_rt``: this process's user+sys CPU (``time.process_time()``)
  divided by the pongs received in the window. Target <= 150 us.
- ``rss``: the client's resident set at the end of the window.
- RTT p50/p99 (from the recorder's ``rtt.hlog``, merged over the window).
  Target p99 <= 10 ms.
- send lateness (``lag``) p99 and event-loop lag p99/max: the tester's own
  delays. The tester was not the bottleneck when send-lag p99 stays below
  ``TESTER_BOTTLENECK_LAG_MS`` (5 ms) and nothing was skipped or missed.
- missed and skipped heartbeats.
- the batch receiver (soak.client.batch, issue 19): its wakeups and reads
  in the window, reads per wakeup, and ``read_lag`` p50/p99/max (a ready
  socket's wait, from the wakeup to its read: the tester's own delay).
  ``--no-batch`` runs with ``[run] batch_receive = false`` to compare.
  ``--count-steps`` also counts trio task steps per round trip (a trio
  instrument: it costs CPU, so the CPU figure of such a run is not the one
  to quote). ``--profile FILE`` runs cProfile over the window and writes
  its stats to FILE (pstats), printing the top functions by own time
  (cProfile slows every Python call: again not the CPU figure to quote).

CPU time is robust to other processes sharing the cores; latency is not.
The script prints how long each process waited for a CPU (schedstat) so a
reader can tell.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import sys
import time
from typing import Any

import trio
from engine import (
    gateway,
    loadavg,
    mib,
    pct_ms,
    profile_toml,
    run_engine,
    say,
    wait_started,
)

from soak.limits import raise_fd_limit
from soak.metrics import TESTER_BOTTLENECK_LAG_MS
from soak.run.runner import Runner

CPU_TARGET_US = 150.0
RTT_P99_TARGET_MS = 10.0
# Above this share of the window spent runnable but waiting for a CPU, the
# machine was busy with something else and the latency figures describe that
# contention, not the tester (nor the gateway).
BUSY_MACHINE_WAIT = 0.10


class StepCounter(trio.abc.Instrument):
    """Counts trio task steps (each is one wakeup of a task)."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


def measure(
    clients: int,
    interval: float,
    ramp: float,
    hold: float,
    report_s: float,
    kernel_timestamps: bool = False,
    batch: bool = True,
    count_steps: bool = False,
    profile_out: str | None = None,
) -> dict[str, Any]:
    w0 = math.ceil((ramp + interval + 0.25) / report_s) * report_s
    w1 = w0 + hold
    with gateway() as gw:
        toml = profile_toml(
            label="bench-cpu",
            url=gw.url,
            # one more report interval so the window's last boundary is a normal one
            stages=[("ramp", ramp, clients), ("hold", w1 - ramp + report_s, 0)],
            interval=interval,
            report_interval=report_s,
            heartbeat_extra="kernel_timestamps = true" if kernel_timestamps else "",
            run_extra="" if batch else "batch_receive = false",
        )
        times: list[os.times_result] = []
        batch_counts: list[tuple[int, int]] = []
        steps = StepCounter()
        prof = cProfile.Profile()

        async def split(runner: Runner) -> None:
            # user and system CPU at the window's edges (within a few ms)
            t0 = await wait_started(runner)
            for edge in (w0, w1):
                await trio.sleep_until(t0 + edge)
                times.append(os.times())
                rx = runner.shared.services.batch
                batch_counts.append((0, 0) if rx is None else (rx.wakes, rx.reads))
                if count_steps:
                    if edge == w0:
                        trio.lowlevel.add_instrument(steps)
                    else:
                        trio.lowlevel.remove_instrument(steps)
                if profile_out is not None:
                    if edge == w0:
                        prof.enable()
                    else:
                        prof.disable()
                        prof.dump_stats(profile_out)

        hlogs = ("rtt", "lag", "loop_lag", "read_lag") + (
            ("rtt_wire", "rx_delay") if kernel_timestamps else ()
        )
        res = run_engine(toml, gw, watch=split, hlogs=hlogs)
    m0, m1 = res.mark_at(w0), res.mark_at(w1)
    if m0 is None or m1 is None:
        raise SystemExit(f"cpu benchmark: no interval boundary at {w0:g}s or {w1:g}s")
    recs = [m.record for m in res.window(w0, w1)]
    pongs = sum(int(r["pongs"]) for r in recs)
    pings = sum(int(r["pings"]) for r in recs)
    rtt = res.merged("rtt", w0, w1)
    lag = res.merged("lag", w0, w1)
    loop = res.merged("loop_lag", w0, w1)
    read_lag = res.merged("read_lag", w0, w1)
    wakes = batch_counts[1][0] - batch_counts[0][0] if len(batch_counts) == 2 else 0
    reads = batch_counts[1][1] - batch_counts[0][1] if len(batch_counts) == 2 else 0
    span = w1 - w0
    cpu = m1.cpu - m0.cpu
    gw_cpu = m1.gw_cpu - m0.gw_cpu
    lag_p99 = pct_ms(lag, 99.0)
    missed = sum(int(r["missed"]) for r in recs)
    skipped = sum(int(r["skipped"]) for r in recs)
    flagged = sum(1 for r in recs if r.get("tester_bottleneck"))
    wire: dict[str, Any] = {}
    if kernel_timestamps:
        rtt_wire = res.merged("rtt_wire", w0, w1)
        rx = res.merged("rx_delay", w0, w1)
        wire = {
            "rtt_wire_p50_ms": pct_ms(rtt_wire, 50.0),
            "rtt_wire_p99_ms": pct_ms(rtt_wire, 99.0),
            "rx_delay_p50_ms": pct_ms(rx, 50.0),
            "rx_delay_p99_ms": pct_ms(rx, 99.0),
        }
    return {
        "kernel_timestamps": kernel_timestamps,
        "batch_receive": batch,
        "batch_wakes": wakes,
        "batch_reads": reads,
        "reads_per_wake": round(reads / wakes, 2) if wakes else None,
        "read_lag_p50_ms": pct_ms(read_lag, 50.0),
        "read_lag_p99_ms": pct_ms(read_lag, 99.0),
        "read_lag_max_ms": read_lag.get_max_value() / 1000.0
        if read_lag.get_total_count()
        else None,
        "task_steps_per_rt": round(steps.steps / pongs, 2) if count_steps and pongs else None,
        **wire,
        "clients": clients,
        "interval_s": interval,
        "window_s": [w0, w1],
        "pings": pings,
        "pongs": pongs,
        "pongs_per_s": round(pongs / span, 1),
        "cpu_s": round(cpu, 3),
        "cpu_us_per_rt": round(cpu / pongs * 1e6, 1) if pongs else None,
        # the kernel's share: loopback TCP sends run the receiver's network
        # stack too, and epoll; what is left is Python
        "cpu_system_share": round(
            (times[1].system - times[0].system)
            / ((times[1].user - times[0].user) + (times[1].system - times[0].system)),
            3,
        )
        if len(times) == 2
        else None,
        "client_busy": round(cpu / span, 3),
        "client_wait": round((m1.wait - m0.wait) / span, 3),
        "gateway_cpu_us_per_rt": round(gw_cpu / pongs * 1e6, 1) if pongs else None,
        "gateway_busy": round(gw_cpu / span, 3),
        "gateway_wait": round((m1.gw_wait - m0.gw_wait) / span, 3),
        "rss_bytes": int(m1.record["rss_bytes"]),
        "rtt_p50_ms": pct_ms(rtt, 50.0),
        "rtt_p99_ms": pct_ms(rtt, 99.0),
        "rtt_max_ms": rtt.get_max_value() / 1000.0 if rtt.get_total_count() else None,
        "send_lag_p99_ms": lag_p99,
        "loop_lag_p99_ms": pct_ms(loop, 99.0),
        "loop_lag_max_ms": loop.get_max_value() / 1000.0 if loop.get_total_count() else None,
        "missed": missed,
        "skipped": skipped,
        "bottleneck_intervals": flagged,
        "gc_pause_max_ms": max((float(r["gc_pause_max_ms"]) for r in recs), default=0.0),
    }


def table(r: dict[str, Any]) -> str:
    def f(v: float | None, unit: str = " ms") -> str:
        return "n/a" if v is None else f"{v:.2f}{unit}"

    cpu = r["cpu_us_per_rt"]
    rtt99 = r["rtt_p99_ms"]
    lag99 = r["send_lag_p99_ms"]
    tester_ok = (
        lag99 is not None
        and lag99 <= TESTER_BOTTLENECK_LAG_MS
        and r["skipped"] == 0
        and r["missed"] == 0
        and r["bottleneck_intervals"] == 0
    )
    rows = [
        (
            "client CPU per round trip",
            f(cpu, " us"),
            f"<= {CPU_TARGET_US:g} us",
            cpu is not None and cpu <= CPU_TARGET_US,
        ),
        (
            "  of which in the kernel",
            "n/a" if r["cpu_system_share"] is None else f"{r['cpu_system_share'] * 100:.0f}%",
            "",
            None,
        ),
        ("round trips in the window", f"{r['pongs']:,} ({r['pongs_per_s']:,.0f}/s)", "", None),
        (
            "client busy / waiting for a CPU",
            f"{r['client_busy'] * 100:.0f}% / {r['client_wait'] * 100:.0f}%",
            "",
            None,
        ),
        ("gateway CPU per round trip", f(r["gateway_cpu_us_per_rt"], " us"), "", None),
        ("client RSS", mib(r["rss_bytes"]), "", None),
        (
            "RTT p50 / p99 / max",
            f"{f(r['rtt_p50_ms'])} / {f(rtt99)} / {f(r['rtt_max_ms'])}",
            f"p99 <= {RTT_P99_TARGET_MS:g} ms",
            rtt99 is not None and rtt99 <= RTT_P99_TARGET_MS,
        ),
        (
            "send lag p99",
            f(lag99),
            f"<= {TESTER_BOTTLENECK_LAG_MS:g} ms (not the bottleneck)",
            tester_ok,
        ),
        ("loop lag p99 / max", f"{f(r['loop_lag_p99_ms'])} / {f(r['loop_lag_max_ms'])}", "", None),
        (
            "missed / skipped",
            f"{r['missed']} / {r['skipped']}",
            "0 / 0",
            r["missed"] == 0 and r["skipped"] == 0,
        ),
        ("gc pause max", f(r["gc_pause_max_ms"]), "", None),
        (
            "batch receive: wakeups, reads/wakeup",
            "off"
            if not r["batch_receive"]
            else f"{r['batch_wakes']:,}, "
            + ("n/a" if r["reads_per_wake"] is None else f"{r['reads_per_wake']:.2f}"),
            "",
            None,
        ),
        (
            "read lag p50 / p99 / max",
            f"{f(r['read_lag_p50_ms'])} / {f(r['read_lag_p99_ms'])} / {f(r['read_lag_max_ms'])}",
            f"p99 <= {TESTER_BOTTLENECK_LAG_MS:g} ms (not the bottleneck)",
            r["read_lag_p99_ms"] is None or r["read_lag_p99_ms"] <= TESTER_BOTTLENECK_LAG_MS,
        ),
    ]
    if r["task_steps_per_rt"] is not None:
        rows.append(("trio task steps per round trip", f"{r['task_steps_per_rt']:.2f}", "", None))
    cells = [("figure", "value", "target", "result")] + [
        (a, b, c, "" if ok is None else ("PASS" if ok else "FAIL")) for a, b, c, ok in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = []
    for n, c in enumerate(cells):
        lines.append("  ".join(c[i].ljust(widths[i]) for i in range(4)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    r["pass"] = all(ok for *_, ok in rows if ok is not None)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--interval", type=float, default=1.0, help="heartbeat interval, seconds")
    ap.add_argument("--ramp", type=float, default=10.0, help="ramp, seconds")
    ap.add_argument("--hold", type=float, default=60.0, help="measured window, seconds")
    ap.add_argument("--report", type=float, default=5.0, help="report interval, seconds")
    ap.add_argument("--json-out", help="also write the JSON result to this file")
    ap.add_argument(
        "--kernel-timestamps",
        action="store_true",
        help="[heartbeat] kernel_timestamps = true: rtt_wire and its cost",
    )
    ap.add_argument(
        "--no-batch",
        action="store_true",
        help="[run] batch_receive = false: each client's task reads its own socket",
    )
    ap.add_argument(
        "--count-steps",
        action="store_true",
        help="count trio task steps per round trip (costs CPU: not for the CPU figure)",
    )
    ap.add_argument("--profile", metavar="FILE", help="cProfile the window into FILE")
    args = ap.parse_args(argv)
    fds = raise_fd_limit()
    say(
        f"soak CPU benchmark: {args.clients:,} clients, JSON ping every {args.interval:g}s, "
        f"{args.hold:g}s window; python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"fd limit {fds}, load average {loadavg()}"
    )
    started = time.monotonic()
    result = measure(
        args.clients,
        args.interval,
        args.ramp,
        args.hold,
        args.report,
        args.kernel_timestamps,
        batch=not args.no_batch,
        count_steps=args.count_steps,
        profile_out=args.profile,
    )
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result["load_end"] = loadavg()
    say(f"done in {time.monotonic() - started:.0f}s; load average at the end {loadavg()}")
    say(table(result))
    rate = args.clients / args.interval
    if result["client_wait"] > BUSY_MACHINE_WAIT or result["pongs_per_s"] < 0.99 * rate:
        say(
            f"NOTE: the machine was busy: the client waited for a CPU "
            f"{result['client_wait'] * 100:.0f}% of the window and got "
            f"{result['pongs_per_s']:,.0f} of {rate:,.0f} round trips/s. Latency figures "
            f"show that contention; CPU per round trip is also lower than on an idle "
            f"machine (more work per wakeup). Run again when the load average is low."
        )
        result["busy_machine"] = True
    else:
        result["busy_machine"] = False
    if args.profile:
        stats = pstats.Stats(args.profile)
        stats.sort_stats("tottime").print_stats(30)
    text = json.dumps(result, sort_keys=True)
    say(text)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
