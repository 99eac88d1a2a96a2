"""``soak run`` and ``soak demo``: capacity checks, then a run in this process
or in worker processes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click
import trio

from soak import consent
from soak.client import target_address
from soak.commands.common import errors_as_exit_codes, fail
from soak.commands.complete import PROFILE
from soak.commands.run_options import (
    DIALECTS_EPILOG,
    allow_commands_option,
    dashboard_option,
    run_options,
    source_ip_option,
    strict_option,
)
from soak.config.load import load_profile
from soak.config.overrides import override
from soak.config.profile import Profile
from soak.config.stages import Storm
from soak.dashboard_run import (
    DashboardError,
    dashboard_server,
    serve_beside,
    shared_port_problem,
    with_dashboard,
)
from soak.httpd import HttpServer
from soak.limits import memory_available, port_range, raise_fd_limit
from soak.live import LiveView, print_summary
from soak.plan import Machine, capacity_problem, make_plan, ports_problem, render, shown_dials
from soak.prom import LiveMetrics, MetricsSink
from soak.recorder import Recorder, now_wall
from soak.run.processes import Coordinator
from soak.run.runner import Runner
from soak.run.shard import Start, begin, shard_of, shard_profile
from soak.run.shard_clock import read_clock
from soak.run.source import Sink
from soak.run.spawn import LEAD, WorkerError, go, start_workers
from soak.shipped import DEFAULT_DEMO
from soak.summary import EXIT_RESULTS, EXIT_TARGET
from soak.urls import without_userinfo

T = TypeVar("T")


def this_machine() -> Machine:
    """This machine's limits, with the soft descriptor limit raised as far
    as allowed (as a run raises it)."""
    return Machine(raise_fd_limit(), os.cpu_count() or 1, memory_available(), port_range())


def check_capacity(profile: Profile) -> int:
    """Raise the soft descriptor limit as far as allowed, decide the number
    of worker processes, and fail clearly, before anything is written, if
    the machine cannot hold the profile's peak. Returns the worker count."""
    workers, problem = capacity_problem(profile, this_machine())
    if problem is not None:
        fail(problem)
    return workers


def dials(profile: Profile) -> tuple[tuple[str, int], ...]:
    """Where TCP goes: target.connect_to, or the URL's host and port."""
    return profile.target.connect_to or (target_address(profile.target),)


def check_ports(profile: Profile) -> None:
    """Fail before the run if its peak cannot fit in the ephemeral ports of
    its (source address, target address) pairs."""
    to = dials(profile)
    problem = ports_problem(profile, shown_dials(to), len(to), port_range())
    if problem is not None:
        fail(problem)


def print_plan(profile: Profile) -> int:
    """``soak plan`` and ``soak run --dry-run``: print what the run would do;
    exit code 0 when this machine can hold it, else 2 with soak run's message."""
    plan = make_plan(profile, this_machine(), dials(profile))
    for line in render(plan):
        click.echo(line)
    if plan.problems:
        fail(plan.problems[0])
    return 0


def load_with_overrides(path: str, **overrides: Any) -> Profile:
    with errors_as_exit_codes():
        return override(load_profile(path), **overrides)


def ask_consent(profile: Profile, allowed: bool) -> None:
    """Print the profile's shell commands (and off-machine restart URLs)
    and go on only with ``--allow-commands`` or a yes on a terminal
    (soak.consent); else fail with one line showing them."""
    terminal = sys.stdin.isatty() and sys.stderr.isatty()

    def ask(question: str) -> bool:
        return click.confirm(question, default=False, err=True)

    def say(line: str) -> None:
        click.echo(line, err=True)

    refused = consent.check(profile, allowed, say=say, ask=ask if terminal else None)
    if refused is not None:
        fail(refused)


def execute(
    profile: Profile,
    *,
    quiet: bool = False,
    metrics_addr: str = "127.0.0.1",
    allow_commands: bool = False,
) -> int:
    """Run a loaded profile with the live view; return the exit code. A
    shard (``[run] shard``) runs its part of the profile (soak.run.shard)."""
    ask_consent(profile, allow_commands)
    part = shard_profile(profile, shard) if (shard := shard_of(profile)) else profile
    workers = check_capacity(part)
    check_ports(part)
    shared = shared_port_problem(profile, metrics_addr)
    if shared is not None:
        fail(shared)
    server = _metrics_server(profile, metrics_addr)
    board = _dashboard(profile, server, metrics_addr)
    if workers > 1:
        return execute_workers(profile, workers, quiet=quiet, server=server, board=board)
    start = _begin(profile, 0.0)
    view = LiveView(results=start.recorder.health)
    sink, on_status = _with_metrics(start, server, None if quiet else view.status)
    dash, on_status, on_interval = with_dashboard(
        start, board, 1, on_status, None if quiet else view.interval
    )
    with errors_as_exit_codes():
        runner = Runner(
            start.profile,
            sink,
            on_status=on_status,
            on_interval=on_interval,
            signals=True,
            argv=sys.argv[1:],
            storm_inputs=start.storm_inputs,
            origin_monotonic=start.origin_monotonic,
        )
    if dash is not None:
        dash.watch(runner.findings_so_far, runner.facts.storms)
    _starting(start, "", server, board)
    with errors_as_exit_codes():
        outcome = trio.run(serve_beside, (server, board), runner.run)
    print_summary(outcome.summary, str(start.recorder.path), sys.stdout)
    return results_complete(start.recorder, outcome.exit_code)


def _begin(profile: Profile, lead: float) -> Start:
    """The run's results directory and origin (a shard's, or a plain run's)."""
    try:
        with errors_as_exit_codes():
            return begin(
                profile,
                wall_now=now_wall(),
                mono_now=time.monotonic(),
                clock=read_clock(),
                default_lead=lead,
            )
    except ValueError as exc:
        fail(str(exc))


def _metrics_server(profile: Profile, addr: str) -> HttpServer | None:
    """``--metrics-port``'s server, bound now: a port in use is bad input."""
    port = profile.run.metrics_port
    if port is None:
        return None
    server = HttpServer(addr, port)
    try:
        server.bind()
    except OSError as exc:
        fail(f"--metrics-port {port}: cannot listen on {addr}:{port}: {exc.strerror or exc}")
    return server


def _with_metrics(
    start: Start, server: HttpServer | None, on_status: Callable[[dict[str, Any]], None] | None
) -> tuple[Sink, Callable[[dict[str, Any]], None] | None]:
    """The run's sink and status callback, with live metrics when asked."""
    if server is None:
        return start.sink, on_status
    index, count = (start.shard.index, start.shard.count) if start.shard else (0, 1)
    run = start.recorder.path.parent.name if start.shard else start.recorder.path.name
    live = LiveMetrics(start.profile, run=run, shard=index, shards=count)
    server.route("/metrics", live.handler)
    if on_status is None:
        return MetricsSink(start.sink, live), live.status

    def both(status: dict[str, Any]) -> None:
        on_status(status)
        live.status(status)

    return MetricsSink(start.sink, live), both


def _dashboard(profile: Profile, metrics: HttpServer | None, addr: str) -> HttpServer | None:
    """``--dashboard``'s server, bound now (soak.dashboard_run); bad input fails."""
    try:
        return dashboard_server(profile, metrics, addr)
    except DashboardError as exc:
        fail(str(exc))


def results_complete(recorder: Recorder, code: int) -> int:
    """The run's exit code, or EXIT_RESULTS with one line per thing its
    results directory does not hold (a disk that stayed full)."""
    missing = recorder.missing()
    for line in missing:
        click.echo(f"soak: missing from {recorder.path}: {line}", err=True)
    return EXIT_RESULTS if missing else code


def _starting(
    start: Start, how: str, server: HttpServer | None = None, board: HttpServer | None = None
) -> None:
    profile = start.profile
    click.echo(
        f"soak: running '{profile.run.label}' against {without_userinfo(profile.target.url)} for "
        f"{profile.duration:g}s{how}{start.how()}, results in {start.recorder.path}",
        err=True,
    )
    if start.warning:
        click.echo(f"soak: warning: {start.warning}", err=True)
    if server is not None:
        click.echo(f"soak: Prometheus metrics at {server.url}/metrics", err=True)
    if board is not None:
        click.echo(f"soak: live dashboard at {board.url}/", err=True)


def execute_workers(
    whole: Profile,
    count: int,
    *,
    quiet: bool = False,
    server: HttpServer | None = None,
    board: HttpServer | None = None,
) -> int:
    """Run a profile (a shard's part, when it is one) in ``count`` worker
    processes, merged into one results directory (soak.run.processes)."""
    shard = shard_of(whole)
    profile = shard_profile(whole, shard) if shard else whole
    try:
        workers = start_workers(profile, count)
    except (WorkerError, OSError) as exc:
        fail(f"--workers {count}: {exc}", EXIT_TARGET)
    try:
        # once the workers are ready: the run starts LEAD seconds from now
        # (or at --start-at), and a shard's lateness counts their start-up
        start = _begin(whole, LEAD)
    except BaseException:
        for w in workers:
            w.proc.kill()
            w.proc.wait()
        raise
    origin = start.origin_monotonic
    assert origin is not None  # begin() was given the lead
    go(workers, origin, start.sink.wall0)
    view = LiveView(results=start.recorder.health)
    sink, on_status = _with_metrics(start, server, None if quiet else view.status)
    dash, on_status, on_interval = with_dashboard(
        start, board, count, on_status, None if quiet else view.interval
    )
    runner = Coordinator(
        profile,
        start.recorder,
        workers,
        sink=sink,
        origin_monotonic=origin,
        on_status=on_status,
        on_interval=on_interval,
        signals=True,
        argv=sys.argv[1:],
        storm_inputs=start.storm_inputs,
    )
    if dash is not None:
        dash.watch(runner.findings_so_far, runner.facts.storms)
    _starting(start, f" in {count} worker processes", server, board)
    with errors_as_exit_codes():
        outcome = trio.run(serve_beside, (server, board), runner.run)
    print_summary(outcome.summary, str(start.recorder.path), sys.stdout)
    return results_complete(start.recorder, outcome.exit_code)


@click.command(epilog=DIALECTS_EPILOG)
@click.argument("profile", type=PROFILE)
@run_options
@strict_option
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (as soak plan does) and exit without connecting.",
)
@source_ip_option
@allow_commands_option
@click.option(
    "--shard",
    metavar="I/N",
    help="Run shard I of N of a run over N machines (overrides run.shard; needs --start-at). "
    "Merge the shards' results with soak merge.",
)
@click.option(
    "--start-at",
    metavar="TIME",
    help="Start at this UTC instant, e.g. 2026-12-03T12:05:00Z (overrides run.start_at): "
    "the same in every shard.",
)
@click.option(
    "--metrics-port",
    metavar="PORT",
    help="Serve live Prometheus metrics at http://ADDR:PORT/metrics (overrides "
    "run.metrics_port; 0: any free port).",
)
@click.option(
    "--metrics-addr",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDR",
    help="The address --metrics-port listens on (0.0.0.0 in a pod).",
)
@dashboard_option
def run(
    profile: str,
    url: str | None,
    label: str | None,
    duration: str | None,
    results_dir: str | None,
    quiet: bool,
    workers: str | None,
    thresholds: tuple[str, ...],
    strict: bool,
    dry_run: bool,
    source_ip: str | None,
    shard: str | None,
    start_at: str | None,
    metrics_port: str | None,
    metrics_addr: str,
    allow_commands: bool,
    dashboard_port: str | None,
) -> None:
    """Run PROFILE (a TOML file, or a shipped profile by name) against its target.

    Exit codes: 0 passed, 1 a threshold failed (or, with --strict, a finding of
    error severity), 2 bad input (a profile's command without --allow-commands
    too), 3 the target was never reachable, 4 the results are not all on disk
    (a full disk: soak says what is missing), 130/143 interrupted by
    SIGINT/SIGTERM. A shard (--shard) leaves the thresholds to
    soak merge: 0 once it ran and wrote its results.
    """
    p = load_with_overrides(
        profile,
        url=url,
        label=label,
        duration=duration,
        results_dir=results_dir,
        thresholds=thresholds,
        workers=workers,
        source_ip=source_ip,
        strict=strict,
        shard=shard,
        start_at=start_at,
        metrics_port=metrics_port,
        dashboard_port=dashboard_port,
    )
    if dry_run:
        sys.exit(print_plan(p))
    sys.exit(execute(p, quiet=quiet, metrics_addr=metrics_addr, allow_commands=allow_commands))


@click.command(epilog=DIALECTS_EPILOG)
@click.argument("profile", type=PROFILE, default=DEFAULT_DEMO)
@run_options
@strict_option
@click.option("--gateway-arg", multiple=True, help="Extra option for the reference gateway.")
@allow_commands_option
@dashboard_option
def demo(
    profile: str,
    url: str | None,
    label: str | None,
    duration: str | None,
    results_dir: str | None,
    quiet: bool,
    workers: str | None,
    thresholds: tuple[str, ...],
    strict: bool,
    gateway_arg: tuple[str, ...],
    allow_commands: bool,
    dashboard_port: str | None,
) -> None:
    """Start the reference gateway on 127.0.0.1 and run PROFILE against it
    (a file or a shipped profile's name; default: the shipped demo).

    The profile's target URL (and stats URL, if any) are pointed at the
    gateway. Pass gateway options with --gateway-arg, e.g.
    --gateway-arg=--bug --gateway-arg="no-pong 0.1"."""
    if url is not None:
        fail("--url: soak demo starts its own gateway on 127.0.0.1; use soak run --url")
    p = load_with_overrides(
        profile,
        label=label,
        duration=duration,
        results_dir=results_dir,
        thresholds=thresholds,
        workers=workers,
        strict=strict,
        dashboard_port=dashboard_port,
    )
    with reference_gateway(list(gateway_arg)) as port:
        path = urlsplit(p.target.url).path or "/"
        with errors_as_exit_codes():
            p = override(p, url=f"ws://127.0.0.1:{port}{path}")
        if p.target.stats is not None:
            # the reference gateway's own count, on the port it just got
            stats = dataclasses.replace(
                p.target.stats, url=f"http://127.0.0.1:{port}/api/stats", field="connections"
            )
            p = dataclasses.replace(p, target=dataclasses.replace(p.target, stats=stats))
        p = _restart_urls_to(p, port)
        code = execute(p, quiet=quiet, allow_commands=allow_commands)
    sys.exit(code)


def _restart_urls_to(p: Profile, port: int) -> Profile:
    """Point storm stages' restart URLs at the gateway soak demo started."""
    stages = tuple(
        dataclasses.replace(
            st,
            restart_url=urlunsplit(urlsplit(st.restart_url)._replace(netloc=f"127.0.0.1:{port}")),
        )
        if isinstance(st, Storm) and st.restart_url
        else st
        for st in p.clients.stages
    )
    return dataclasses.replace(p, clients=dataclasses.replace(p.clients, stages=stages))


@contextmanager
def reference_gateway(extra: list[str]) -> Iterator[int]:
    """The reference gateway in a child process of its own: it needs its own
    descriptors and CPU time, and must not share our event loop, or our
    numbers would include its work."""
    cmd = [sys.executable, "-m", "soak", "gateway", "--port", "0", *extra]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on" not in line:
            proc.wait(timeout=5)
            fail(f"the reference gateway did not start (exit code {proc.returncode})", EXIT_TARGET)
        port = int(line.rsplit(":", 1)[1])
        click.echo(line.strip(), err=True)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
