"""``soak doctor``: check a planned run and the heartbeat configs."""

from __future__ import annotations

import sys

import click


@click.command()
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
    help="The proxy's config: nginx (the WebSocket location), or haproxy.cfg.",
)
@click.option(
    "--haproxy-cfg",
    type=click.Path(dir_okay=False),
    default=None,
    help="HAProxy's config: defaults, frontends and backends; timeout tunnel, client, server.",
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
    haproxy_cfg: str | None,
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
    from soak.config.units import parse_duration
    from soak.doctor.diagnose import diagnose
    from soak.doctor.findings import exit_code
    from soak.doctor.render import render_json, render_text

    if (
        profile_path is None
        and gateway_config is None
        and nginx_conf is None
        and haproxy_cfg is None
    ):
        raise click.UsageError(
            "give at least one of --profile, --gateway-config, --nginx-conf, --haproxy-cfg"
        )
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
        haproxy_path=haproxy_cfg,
        latency=delay,
    )
    if as_json:
        click.echo(render_json(findings), nl=False)
    else:
        click.echo(render_text(findings, color=sys.stdout.isatty()), nl=False)
    sys.exit(exit_code(findings))
