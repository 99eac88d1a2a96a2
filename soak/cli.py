"""The command line. The only place that turns errors into exit codes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import click
import trio

from soak import __version__
from soak.client import target_address
from soak.errors import LocalError, SoakError
from soak.limits import (
    check_port_capacity,
    fd_problem,
    memory_available,
    memory_problem,
    raise_fd_limit,
)
from soak.live import LiveView, print_summary
from soak.profile import Profile, load_profile, override
from soak.reconcile import display_url
from soak.recorder import Recorder, now_wall
from soak.runner import Runner
from soak.summary import EXIT_TARGET, EXIT_USAGE
from soak.workers import LEAD, Coordinator, WorkerError, go, resolve_workers, start_workers


class BadInput(click.ClickException):
    exit_code = EXIT_USAGE


class TargetFailure(click.ClickException):
    exit_code = EXIT_TARGET


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    raise (TargetFailure if code == EXIT_TARGET else BadInput)(message)


@contextmanager
def errors_as_exit_codes() -> Iterator[None]:
    """Our errors become one clear line and an exit code, never a traceback."""
    try:
        yield
    except LocalError as exc:
        fail(str(exc), EXIT_USAGE)
    except SoakError as exc:
        fail(str(exc), EXIT_TARGET)


def check_capacity(profile: Profile) -> int:
    """Raise the soft descriptor limit as far as allowed, decide the number
    of worker processes, and fail clearly, before anything is written, if
    the machine cannot hold the profile's peak. Returns the worker count."""
    soft = raise_fd_limit()
    workers = resolve_workers(profile, soft, os.cpu_count() or 1)
    peak = profile.peak_clients
    problem = fd_problem(peak, workers, soft, profile.impairment is not None)
    problem = problem or memory_problem(peak, memory_available())
    if problem is not None:
        fail(problem)
    return workers


def check_ports(profile: Profile) -> None:
    """Fail before the run if its peak cannot fit in the ephemeral ports of
    its (source address, target address) pairs."""
    t = profile.target
    dials = t.connect_to or (target_address(t),)
    shown = ", ".join(f"{h}:{p}" for h, p in dials[:3]) + (" ..." if len(dials) > 3 else "")
    problem = check_port_capacity(
        profile.peak_clients, shown, sources=max(1, len(t.source_ips)), targets=len(dials)
    )
    if problem is not None:
        fail(problem)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="soak")
def cli() -> None:
    """soak: a WebSocket load and soak tester.

    Heartbeat RTT in HdrHistograms, missed heartbeats, zombies, reconnects,
    close reasons; results written as the run goes.
    """


def _load(path: str, **overrides: Any) -> Profile:
    with errors_as_exit_codes():
        return override(load_profile(path), **overrides)


def execute(profile: Profile, *, quiet: bool = False) -> int:
    """Run a loaded profile with the live view; return the exit code."""
    workers = check_capacity(profile)
    check_ports(profile)
    if workers > 1:
        return execute_workers(profile, workers, quiet=quiet)
    with errors_as_exit_codes():
        recorder = Recorder(profile.run.results_dir, profile.run.label, now_wall())
    view = LiveView()
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
    return outcome.exit_code


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


def _starting(profile: Profile, recorder: Recorder, how: str) -> None:
    click.echo(
        f"soak: running '{profile.run.label}' against {display_url(profile.target.url)} for "
        f"{profile.duration:g}s{how}, results in {recorder.path}",
        err=True,
    )


def execute_workers(profile: Profile, count: int, *, quiet: bool = False) -> int:
    """Run a profile in ``count`` worker processes, merged into one results
    directory (soak.workers)."""
    try:
        workers = start_workers(profile, count)
    except (WorkerError, OSError) as exc:
        fail(f"--workers {count}: {exc}", EXIT_TARGET)
    origin = time.monotonic() + LEAD
    wall0 = now_wall() + LEAD
    with errors_as_exit_codes():
        recorder = Recorder(profile.run.results_dir, profile.run.label, wall0)
    go(workers, origin, wall0)
    view = LiveView()
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
    return outcome.exit_code


def run_options(f: Any) -> Any:
    for option in reversed(_run_options):
        f = option(f)
    return f


@cli.command()
@click.argument("profile", type=click.Path(dir_okay=False))
@run_options
@click.option(
    "--source-ip",
    metavar="RANGE",
    help="Override target.source_ips: source addresses used round-robin, e.g. "
    '"127.0.0.1-127.0.0.20" or "10.0.0.5,10.0.0.6" (each range or list gets its own '
    "~28,000 ephemeral ports per target address).",
)
def run(
    profile: str,
    url: str | None,
    label: str | None,
    duration: str | None,
    results_dir: str | None,
    quiet: bool,
    workers: str | None,
    thresholds: tuple[str, ...],
    source_ip: str | None,
) -> None:
    """Run PROFILE (a TOML file) against its target.

    Exit codes: 0 passed, 1 a threshold failed, 2 bad input, 3 the target was
    never reachable, 130/143 interrupted by SIGINT/SIGTERM.
    """
    p = _load(
        profile,
        url=url,
        label=label,
        duration=duration,
        results_dir=results_dir,
        thresholds=thresholds,
        workers=workers,
        source_ip=source_ip,
    )
    sys.exit(execute(p, quiet=quiet))


@cli.command()
@click.argument("profile", type=click.Path(dir_okay=False), default="profiles/demo.toml")
@run_options
@click.option("--gateway-arg", multiple=True, help="Extra option for the reference gateway.")
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
) -> None:
    """Start the reference gateway on 127.0.0.1 and run PROFILE against it.

    The profile's target URL (and stats URL, if any) are pointed at the
    gateway. Pass gateway options with --gateway-arg, e.g.
    --gateway-arg=--bug --gateway-arg="no-pong 0.1"."""
    if url is not None:
        fail("--url: soak demo starts its own gateway on 127.0.0.1; use soak run --url")
    p = _load(
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
        code = execute(p, quiet=quiet)
    sys.exit(code)


def _restart_urls_to(p: Profile, port: int) -> Profile:
    """Point storm stages' restart URLs at the gateway soak demo started."""
    stages = tuple(
        dataclasses.replace(
            st,
            restart_url=urlunsplit(urlsplit(st.restart_url)._replace(netloc=f"127.0.0.1:{port}")),
        )
        if st.restart_url
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


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Keep it on loopback for tests.",
)
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port; 0 picks a free one (printed on start).",
)
@click.option(
    "--hb-interval", default="30s", show_default=True, help="Expected client heartbeat interval."
)
@click.option(
    "--hb-timeout",
    default="120s",
    show_default=True,
    help="Close a client silent this long (and max-missed intervals).",
)
@click.option(
    "--max-missed",
    default=3,
    show_default=True,
    type=click.IntRange(1),
    help="Heartbeats a client may miss before the timeout applies.",
)
@click.option(
    "--check-every", default="5s", show_default=True, help="How often the heartbeat manager checks."
)
@click.option(
    "--server-ping",
    default=None,
    help='Send RFC 6455 pings to every client this often, e.g. "25s".',
)
@click.option(
    "--timeout-close-code",
    default=4000,
    show_default=True,
    type=click.IntRange(1000, 4999),
    help="Close code sent to a client whose heartbeats timed out.",
)
@click.option(
    "--bug",
    "bugs",
    multiple=True,
    metavar="NAME",
    help="Replay one of the incident's bugs (repeatable): ignore-max-missed, stale-session, "
    '"no-pong RATE" (e.g. "no-pong 0.1"), "drop-heartbeat N" (e.g. "drop-heartbeat 1").',
)
@click.option(
    "--truth-log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Append a JSON line of ground truth for every close the gateway makes.",
)
@click.option(
    "--admin/--no-admin",
    default=True,
    show_default=True,
    help="Serve POST /admin/restart?outage=S (loopback peers only): close every client "
    "with 1012 and answer 503 + Retry-After for S seconds. SIGUSR2 restarts too.",
)
@click.option(
    "--restart-outage",
    default="5s",
    show_default=True,
    help="Outage of a restart from SIGUSR2, or from /admin/restart without ?outage=.",
)
@click.option(
    "--timeout-close-reason",
    default="heartbeat_timeout",
    show_default=True,
    help="Close reason sent with it.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=int,
    help="Worker processes sharing the port (SO_REUSEPORT); /api/stats adds them all up.",
)
def gateway(
    host: str,
    port: int,
    hb_interval: str,
    hb_timeout: str,
    max_missed: int,
    check_every: str,
    server_ping: str | None,
    timeout_close_code: int,
    timeout_close_reason: str,
    bugs: tuple[str, ...],
    truth_log: Path | None,
    admin: bool,
    restart_outage: str,
    workers: int,
) -> None:
    """Run the built-in reference gateway (JSON and RFC 6455 heartbeats,
    GET /api/stats)."""
    from soak.gateway import GatewayConfig, run_gateway
    from soak.gateway.bugs import parse_bugs
    from soak.gateway.cluster import check_workers, run_cluster
    from soak.profile import parse_duration

    def dur(name: str, text: str, allow_zero: bool = False) -> float:
        try:
            value = parse_duration(text)
        except ValueError:
            value = -1.0
        if value < 0 or (value == 0 and not allow_zero):
            raise click.BadParameter(
                f'expected a duration like "30s", got "{text}"', param_hint=name
            )
        return value

    with errors_as_exit_codes():
        config = GatewayConfig(
            host=host,
            port=port,
            hb_interval=dur("--hb-interval", hb_interval),
            hb_timeout=dur("--hb-timeout", hb_timeout),
            max_missed=max_missed,
            check_every=dur("--check-every", check_every),
            server_ping_interval=None if server_ping is None else dur("--server-ping", server_ping),
            timeout_close_code=timeout_close_code,
            timeout_close_reason=timeout_close_reason,
            bugs=parse_bugs(bugs),
            truth_log=truth_log,
            admin=admin,
            restart_outage=dur("--restart-outage", restart_outage, allow_zero=True),
        )
        check_workers(workers)
    try:
        with errors_as_exit_codes():
            if workers > 1:
                sys.exit(run_cluster(config, workers))
            trio.run(run_gateway, config)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_TARGET)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=True, dir_okay=True))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the PNGs and report.html (default: the run directory).",
)
@click.option(
    "--export-json",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Also write the summary (summary.json, or the one computed for a partial run).",
)
@click.option(
    "--export-csv",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Also write the interval series, one row per interval (closes.<reason> etc.).",
)
def report(
    run_dir: str, out: Path | None, export_json: Path | None, export_csv: Path | None
) -> None:
    """Charts and a self-contained report.html for the results directory RUN_DIR.

    Exit codes: 0 written (also for a partial run or damaged lines, which the
    report lists), 2 RUN_DIR is not a readable run or an output cannot be written.
    """
    from soak.report.report import write_report

    with errors_as_exit_codes():
        try:
            rep, html_path = write_report(run_dir, out, export_json, export_csv)
        except OSError as exc:
            fail(f"cannot write the report: {exc}", EXIT_USAGE)
    if rep.partial:
        click.echo(f"soak: {rep.run.path}: partial run ({rep.run.status})", err=True)
    for p in rep.run.problems:
        click.echo(f"soak: warning: {p}", err=True)
    click.echo(str(html_path))


@cli.command()
@click.argument("runs", nargs=-1, metavar="RUN_A RUN_B [RUN_C ...]")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for compare.html, compare.json and the charts "
    "(default ./compare-<label A>-vs-<label B>).",
)
@click.option(
    "--max-regression",
    "max_regression",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a limit (repeatable): rtt_p99=10% (relative, must also be significant), "
    "heartbeat_success=0.1 (percentage points), false_timeouts=0 (absolute increase).",
)
@click.option("--seed", default=1, show_default=True, type=int, help="Bootstrap RNG seed.")
@click.option(
    "--resamples",
    default=1000,
    show_default=True,
    type=click.IntRange(100),
    help="Bootstrap resamples.",
)
def compare(
    runs: tuple[str, ...],
    out: Path | None,
    max_regression: tuple[str, ...],
    seed: int,
    resamples: int,
) -> None:
    """Compare runs against the first (the baseline): metrics side by side,
    bootstrap confidence intervals of the RTT differences, a verdict.

    Exit codes: 0 no regression, 1 a regression, 2 bad input."""
    from soak.report import compare as cmp
    from soak.report.load import load_run

    if len(runs) < 2:
        raise click.UsageError("compare needs at least two runs: RUN_A RUN_B [RUN_C ...]")
    try:
        limits = cmp.parse_limits(max_regression)
    except cmp.LimitSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-regression") from None
    with errors_as_exit_codes():
        loaded = [load_run(r) for r in runs]
        result = cmp.compare(loaded, limits, resamples=resamples, seed=seed)
        page = cmp.write_outputs(result, out if out is not None else cmp.default_out_dir(result))
    for w in result.warnings:
        click.echo(w, err=True)
    click.echo(cmp.render_text(result), nl=False)
    click.echo(f"page: {page}")
    sys.exit(result.exit_code)


@cli.command()
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="A profile: its clients' heartbeat, and the environment checks for its run.",
)
@click.option(
    "--gateway-config",
    type=click.Path(dir_okay=False),
    default=None,
    help="The gateway's heartbeat config (JSON, or simple YAML): gateway.heartbeat.*, "
    "channels.<name>.heartbeat.*; numbers are milliseconds.",
)
@click.option(
    "--nginx-conf",
    type=click.Path(dir_okay=False),
    default=None,
    help="The proxy's config: nginx (the WebSocket location) or haproxy.",
)
@click.option(
    "--latency",
    default=None,
    help='Planned extra latency for the client check, e.g. "100ms".',
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(
    profile_path: str | None,
    gateway_config: str | None,
    nginx_conf: str | None,
    latency: str | None,
    as_json: bool,
) -> None:
    """Check a planned run and the heartbeat configs before a soak wastes a day.

    Consistency of the gateway's heartbeat config, the proxy's timeouts and
    the profile's clients; with --profile, also descriptors, ports, memory,
    the target (TCP, handshake, one heartbeat), its stats endpoint, loop lag
    and socket states.

    Exit codes: 0 ok, 1 warnings, 2 errors (a bad input file is an error
    finding; the other checks still run).
    """
    from soak.doctor.diagnose import diagnose
    from soak.doctor.findings import exit_code
    from soak.doctor.render import render_json, render_text
    from soak.profile import parse_duration

    if profile_path is None and gateway_config is None and nginx_conf is None:
        raise click.UsageError("give at least one of --profile, --gateway-config, --nginx-conf")
    delay = 0.0
    if latency is not None:
        try:
            delay = parse_duration(latency)
        except ValueError:
            raise click.BadParameter(
                f'expected a duration like "100ms", got "{latency}"', param_hint="--latency"
            ) from None
    findings = diagnose(
        profile_path=profile_path,
        gateway_path=gateway_config,
        proxy_path=nginx_conf,
        latency=delay,
    )
    if as_json:
        click.echo(render_json(findings), nl=False)
    else:
        click.echo(render_text(findings, color=sys.stdout.isatty()), nl=False)
    sys.exit(exit_code(findings))


@cli.command()
@click.option(
    "--listen",
    default="127.0.0.1:0",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to listen; port 0 picks a free one (printed on start). Keep it on loopback.",
)
@click.option("--upstream", required=True, metavar="HOST:PORT", help="Where to forward to.")
@click.option("--latency", default=None, help='One-way delay, e.g. "100ms".')
@click.option("--jitter", default=None, help='Jitter around the delay, e.g. "50ms".')
@click.option(
    "--jitter-dist",
    default="uniform",
    show_default=True,
    type=click.Choice(["uniform", "normal", "pareto"]),
    help="uniform: delay ± jitter; normal: jitter is the standard deviation; "
    "pareto: a heavy tail whose mean is jitter.",
)
@click.option(
    "--direction",
    default="both",
    show_default=True,
    type=click.Choice(["up", "down", "both"]),
    help="Which way latency and bandwidth apply: up is client to server.",
)
@click.option(
    "--fraction",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Fraction of connections each impairment picks (by connection number and seed).",
)
@click.option("--bandwidth", default=None, help='A rate limit, e.g. "100kB" or "8Mbit" per second.')
@click.option(
    "--nat-idle",
    default=None,
    help='Silently forget a connection idle this long in both directions, e.g. "30s".',
)
@click.option(
    "--black-hole-at",
    default=None,
    help='From this time on, silently drop every connection, e.g. "60s".',
)
@click.option("--reset-at", default=None, help="At this time, reset (RST) every connection.")
@click.option(
    "--drop-heartbeat",
    default=None,
    type=click.IntRange(1),
    metavar="N",
    help="Drop the N-th heartbeat (JSON or RFC 6455 ping/pong, both ways counted together) "
    "of each connection.",
)
@click.option(
    "--drop-heartbeat-p",
    default=0.0,
    type=click.FloatRange(0.0, 1.0),
    metavar="P",
    help="Drop each heartbeat with probability P.",
)
@click.option("--seed", default=1, show_default=True, type=int, help="Seed for jitter and picks.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    metavar="NAME:KEY=VALUE,...",
    help="One impairment's own fraction, time window and direction (repeatable), e.g. "
    "latency:fraction=0.5,from=10s,until=1m,direction=down. NAME: latency, bandwidth, "
    "nat_idle, drop_heartbeat (fraction, from, until, direction; nat_idle has no "
    "direction), black_hole, reset (fraction).",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Append a JSON line for every impairment applied.",
)
def proxy(
    listen: str,
    upstream: str,
    latency: str | None,
    jitter: str | None,
    jitter_dist: str,
    direction: str,
    fraction: float,
    bandwidth: str | None,
    nat_idle: str | None,
    black_hole_at: str | None,
    reset_at: str | None,
    drop_heartbeat: int | None,
    drop_heartbeat_p: float,
    seed: int,
    scopes: tuple[str, ...],
    log_path: Path | None,
) -> None:
    """A TCP proxy that impairs the network between clients and a target:
    latency and jitter (never reordering), a bandwidth limit, NAT idle
    timeouts and black holes (silent: no FIN, no RST), resets, dropped
    WebSocket heartbeats. Times are seconds since the proxy started."""
    import json

    from soak.gcctl import GcControl, GrowthFreezer
    from soak.profile import parse_duration, parse_scope_option
    from soak.proxy import Proxy
    from soak.proxy import config as pc

    def addr(name: str, text: str) -> tuple[str, int]:
        try:
            return pc.parse_hostport(text)
        except ValueError:
            raise click.BadParameter(
                f'expected HOST:PORT like "127.0.0.1:8765", got "{text}"', param_hint=name
            ) from None

    def dur(name: str, text: str | None) -> float | None:
        if text is None:
            return None
        try:
            return parse_duration(text)
        except ValueError:
            raise click.BadParameter(
                f'expected a duration like "100ms", got "{text}"', param_hint=name
            ) from None

    listen_host, listen_port = addr("--listen", listen)
    up_host, up_port = addr("--upstream", upstream)
    rate = None
    if bandwidth is not None:
        try:
            rate = pc.parse_rate(bandwidth)
        except ValueError:
            raise click.BadParameter(
                f'expected a rate like "100kB", "1MiB" or "8Mbit", got "{bandwidth}"',
                param_hint="--bandwidth",
            ) from None
    delay, spread = dur("--latency", latency), dur("--jitter", jitter)
    idle = dur("--nat-idle", nat_idle)
    hole, rst = dur("--black-hole-at", black_hole_at), dur("--reset-at", reset_at)
    if idle == 0:
        raise click.BadParameter(
            f'expected a duration > 0, got "{nat_idle}"', param_hint="--nat-idle"
        )
    given = {
        "latency": delay is not None or spread is not None,
        "bandwidth": rate is not None,
        "nat_idle": idle is not None,
        "drop_heartbeat": drop_heartbeat is not None or drop_heartbeat_p > 0,
        "black_hole": hole is not None,
        "reset": rst is not None,
    }
    scoped: dict[str, Any] = {}
    for text in scopes:
        with errors_as_exit_codes():
            fields = parse_scope_option(text)
        name = text.partition(":")[0].strip()
        if not given[name]:
            option = (
                "--" + name.replace("_", "-") + ("-at" if name in ("black_hole", "reset") else "")
            )
            fail(f"--scope {name}: {name} is not set (no {option})", EXIT_USAGE)
        scoped.update(fields)
    try:
        config = pc.build_config(
            **scoped,
            latency=delay,
            jitter=spread,
            jitter_dist=jitter_dist,
            direction=direction,
            fraction=fraction,
            bandwidth=rate,
            nat_idle=idle,
            black_hole_at=hole,
            reset_at=rst,
            drop_heartbeat=drop_heartbeat,
            drop_heartbeat_p=drop_heartbeat_p,
            seed=seed,
        )
    except ValueError as exc:
        fail(f"expected a consistent impairment: {exc}", EXIT_USAGE)

    def show(event: dict[str, Any]) -> None:
        click.echo(f"soak proxy: {json.dumps(event)}", err=True)

    async def main() -> None:
        try:
            probe = await trio.open_tcp_stream(up_host, up_port)
        except OSError as exc:
            fail(f"--upstream: cannot connect to {upstream}: {exc}", EXIT_TARGET)
        await probe.aclose()
        server = Proxy(config, on_event=show, log=log)
        error = None

        async def freeze_as_it_grows() -> None:
            freezer = GrowthFreezer(gc_control)
            while True:
                await trio.sleep(1.0)
                freezer.observe(server.live)

        async with trio.open_nursery() as nursery:
            # as the gateway does: keep garbage collections rare and short
            nursery.start_soon(freeze_as_it_grows)
            try:
                port = await nursery.start(server.serve, listen_host, listen_port, up_host, up_port)
            except OSError as exc:
                error = exc
            else:
                click.echo(f"soak proxy listening on {listen_host}:{port} -> {upstream}")
        if error is not None:
            fail(f"--listen: cannot listen on {listen}: {error}")

    try:
        log = log_path.open("a") if log_path is not None else None
    except OSError as exc:
        fail(f"--log: cannot write {log_path}: {exc}")
    raise_fd_limit()  # two descriptors per proxied connection
    try:
        with GcControl(lambda pause: None) as gc_control:
            trio.run(main)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        if log is not None:
            log.close()


def main() -> None:
    cli(prog_name="soak")
