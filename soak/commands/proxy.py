"""``soak proxy``: a TCP proxy that impairs the network."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import trio

from soak.addresses import parse_host_port
from soak.commands.common import errors_as_exit_codes, fail
from soak.config.impairment import Window
from soak.config.tables.impairment import assemble, parse_scope, setting
from soak.config.validation import FieldError, Loader
from soak.gcctl import GcControl, GrowthFreezer
from soak.limits import raise_fd_limit
from soak.proxy import Proxy
from soak.proxy.config import ImpairmentConfig
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
    listen_host, listen_port = _address("--listen", listen, allow_zero=True)
    up_host, up_port = _address("--upstream", upstream)
    options = {
        "latency": latency,
        "jitter": jitter,
        "jitter_dist": jitter_dist,
        "direction": direction,
        "fraction": fraction,
        "bandwidth": bandwidth,
        "nat_idle": nat_idle,
        "black_hole_at": black_hole_at,
        "reset_at": reset_at,
        "drop_heartbeat": drop_heartbeat,
        "drop_heartbeat_p": drop_heartbeat_p,
        "seed": seed,
    }
    config = _impairment(options, scopes)

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


def _address(name: str, text: str, *, allow_zero: bool = False) -> tuple[str, int]:
    try:
        return parse_host_port(text, allow_zero=allow_zero)
    except ValueError:
        raise click.BadParameter(
            f'expected HOST:PORT like "127.0.0.1:8765", got "{text}"', param_hint=name
        ) from None


def _impairment(options: dict[str, Any], scopes: tuple[str, ...]) -> ImpairmentConfig:
    """The proxy's config from its options, read by the parsers of a
    profile's [impairment] (soak.config.tables.impairment): a bad value gets
    the message it gets in a profile, with the option as the place."""
    ld = Loader("")
    flat: dict[str, Any] = {"seed": options["seed"]}  # any int, as click read it
    for key, value in options.items():
        if value is None or key == "seed":
            continue
        try:
            flat[key] = setting(ld, key)(_option(key), value)
        except FieldError as exc:
            raise click.BadParameter(exc.detail, param_hint=exc.where) from None
    given = assemble(flat, {}).active()
    windows: dict[str, Window] = {}
    for text in scopes:
        with errors_as_exit_codes():
            name, window = parse_scope(text)
        if name not in given:
            at = "-at" if name in ("black_hole", "reset") else ""
            fail(f"--scope {name}: {name} is not set (no {_option(name)}{at})", EXIT_USAGE)
        windows[name] = window.updated(windows[name]) if name in windows else window
    try:
        return assemble(flat, windows).proxy_config()
    except ValueError as exc:
        fail(f"expected a consistent impairment: {exc}", EXIT_USAGE)


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")
