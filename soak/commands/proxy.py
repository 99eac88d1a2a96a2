"""``soak proxy``: a TCP proxy that impairs the network."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import trio

from soak.commands.common import errors_as_exit_codes, fail
from soak.limits import raise_fd_limit
from soak.summary import EXIT_TARGET, EXIT_USAGE


@click.command()
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
