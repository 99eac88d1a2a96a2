"""``soak gateway``: the built-in reference gateway."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import trio

from soak.commands.common import errors_as_exit_codes, fail
from soak.summary import EXIT_TARGET


@click.command()
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
    from soak.config.units import parse_duration
    from soak.gateway import GatewayConfig, run_gateway
    from soak.gateway.bugs import parse_bugs
    from soak.gateway.cluster import check_workers
    from soak.gateway.supervisor import run_cluster

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
