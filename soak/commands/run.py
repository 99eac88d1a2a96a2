"""``soak run`` and ``soak demo``: capacity checks, then a run in this process
or in worker processes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import trio

from soak import consent
from soak.client import target_address
from soak.commands.common import errors_as_exit_codes, fail
from soak.commands.complete import PROFILE
from soak.config.load import load_profile
from soak.config.overrides import override
from soak.config.profile import Profile
from soak.config.stages import Storm
from soak.limits import memory_available, port_range, raise_fd_limit
from soak.live import LiveView, print_summary
from soak.plan import Machine, capacity_problem, make_plan, ports_problem, render, shown_dials
from soak.recorder import Recorder, now_wall
from soak.run.processes import Coordinator
from soak.run.runner import Runner
from soak.run.spawn import LEAD, WorkerError, go, start_workers
from soak.shipped import DEFAULT_DEMO
from soak.summary import EXIT_RESULTS, EXIT_TARGET
from soak.urls import without_userinfo


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


def execute(profile: Profile, *, quiet: bool = False, allow_commands: bool = False) -> int:
    """Run a loaded profile with the live view; return the exit code."""
    ask_consent(profile, allow_commands)
    workers = check_capacity(profile)
    check_ports(profile)
    if workers > 1:
        return execute_workers(profile, workers, quiet=quiet)
    with errors_as_exit_codes():
        recorder = Recorder(profile.run.results_dir, profile.run.label, now_wall())
    view = LiveView(results=recorder.health)
    with errors_as_exit_codes():
        runner = Runner(
            profile,
            recorder,
            on_status=None if quiet else view.status,
            on_interval=None if quiet else view.interval,
            signals=True,
            argv=sys.argv[1:],
        )
    _starting(profile, recorder, "")
    with errors_as_exit_codes():
        outcome = trio.run(runner.run)
    print_summary(outcome.summary, str(recorder.path), sys.stdout)
    return results_complete(recorder, outcome.exit_code)


_run_options = [
    click.option("--url", help="Override target.url (ws:// or wss://)."),
    click.option("--label", help="Override run.label (names the results directory)."),
    click.option("--duration", help='Override run.duration, e.g. "10m".'),
    click.option("--results-dir", help="Override run.results_dir (default results/)."),
    click.option("--quiet", is_flag=True, help="No live view or interval lines."),
    click.option(
        "--workers",
        metavar="N|auto",
        help="Client processes, merged into one results directory (overrides run.workers; "
        "auto: as many as the peak's descriptors and heartbeat rate need).",
    ),
    click.option(
        "--threshold",
        "thresholds",
        multiple=True,
        metavar="CHECK",
        help='A pass/fail check, e.g. "rtt_p99<250ms", "false_timeouts==0" (repeatable; '
        "replaces the profile's threshold of the same name).",
    ),
]


def results_complete(recorder: Recorder, code: int) -> int:
    """The run's exit code, or EXIT_RESULTS with one line per thing its
    results directory does not hold (a disk that stayed full)."""
    missing = recorder.missing()
    for line in missing:
        click.echo(f"soak: missing from {recorder.path}: {line}", err=True)
    return EXIT_RESULTS if missing else code


def _starting(profile: Profile, recorder: Recorder, how: str) -> None:
    click.echo(
        f"soak: running '{profile.run.label}' against {without_userinfo(profile.target.url)} for "
        f"{profile.duration:g}s{how}, results in {recorder.path}",
        err=True,
    )


def execute_workers(profile: Profile, count: int, *, quiet: bool = False) -> int:
    """Run a profile in ``count`` worker processes, merged into one results
    directory (soak.run.processes)."""
    try:
        workers = start_workers(profile, count)
    except (WorkerError, OSError) as exc:
        fail(f"--workers {count}: {exc}", EXIT_TARGET)
    origin = time.monotonic() + LEAD
    wall0 = now_wall() + LEAD
    with errors_as_exit_codes():
        recorder = Recorder(profile.run.results_dir, profile.run.label, wall0)
    go(workers, origin, wall0)
    view = LiveView(results=recorder.health)
    runner = Coordinator(
        profile,
        recorder,
        workers,
        origin_monotonic=origin,
        on_status=None if quiet else view.status,
        on_interval=None if quiet else view.interval,
        signals=True,
        argv=sys.argv[1:],
    )
    _starting(profile, recorder, f" in {count} worker processes")
    with errors_as_exit_codes():
        outcome = trio.run(runner.run)
    print_summary(outcome.summary, str(recorder.path), sys.stdout)
    return results_complete(recorder, outcome.exit_code)


# soak run's and soak plan's (soak demo has none: its gateway is on 127.0.0.1)
source_ip_option = click.option(
    "--source-ip",
    metavar="RANGE",
    help="Override target.source_ips: source addresses used round-robin, e.g. "
    '"127.0.0.1-127.0.0.20" or "10.0.0.5,10.0.0.6" (each range or list gets its own '
    "~28,000 ephemeral ports per target address).",
)


allow_commands_option = click.option(
    consent.FLAG,
    "allow_commands",
    is_flag=True,
    help="Run the profile's storm commands (/bin/sh -c) and POST restart URLs off this "
    "machine without asking; without it soak asks on a terminal and refuses elsewhere.",
)


def run_options(f: Any) -> Any:
    for option in reversed(_run_options):
        f = option(f)
    return f


@click.command()
@click.argument("profile", type=PROFILE)
@run_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (as soak plan does) and exit without connecting.",
)
@source_ip_option
@allow_commands_option
def run(
    profile: str,
    url: str | None,
    label: str | None,
    duration: str | None,
    results_dir: str | None,
    quiet: bool,
    workers: str | None,
    thresholds: tuple[str, ...],
    dry_run: bool,
    source_ip: str | None,
    allow_commands: bool,
) -> None:
    """Run PROFILE (a TOML file, or a shipped profile by name) against its target.

    Exit codes: 0 passed, 1 a threshold failed, 2 bad input (a profile's
    command without --allow-commands too), 3 the target was never reachable,
    4 the results are not all on disk (a full disk: soak says what is
    missing), 130/143 interrupted by SIGINT/SIGTERM.
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
    )
    sys.exit(print_plan(p) if dry_run else execute(p, quiet=quiet, allow_commands=allow_commands))


@click.command()
@click.argument("profile", type=PROFILE, default=DEFAULT_DEMO)
@run_options
@click.option("--gateway-arg", multiple=True, help="Extra option for the reference gateway.")
@allow_commands_option
def demo(
    profile: str,
    url: str | None,
    label: str | None,
    duration: str | None,
    results_dir: str | None,
    quiet: bool,
    workers: str | None,
    thresholds: tuple[str, ...],
    gateway_arg: tuple[str, ...],
    allow_commands: bool,
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
