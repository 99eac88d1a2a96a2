"""The click options soak run, soak demo and soak plan share, defined once
(soak.commands.run uses them; soak plan takes run_options and
source_ip_option)."""

from __future__ import annotations

from typing import Any

import click

from soak import consent
from soak.config.target import PROTOCOLS

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

# soak run's and soak demo's (soak plan takes the other run options)
strict_option = click.option(
    "--strict",
    is_flag=True,
    help="Fail the run (exit code 1) on any finding of error severity, such as a false "
    "timeout or a zombie, even where no threshold judges it ([thresholds] strict = true).",
)


# soak run's and soak demo's: the live page (soak.dashboard)
dashboard_option = click.option(
    "--dashboard",
    "dashboard_port",
    is_flag=False,
    flag_value="0",
    metavar="[PORT]",
    help="Serve a live page of the run at http://127.0.0.1:PORT/ (without PORT: any free "
    "port, printed; overrides run.dashboard_port; the same port as --metrics-port shares "
    "its server).",
)


# soak run's and soak plan's (soak demo has none: its gateway is on 127.0.0.1)
source_ip_option = click.option(
    "--source-ip",
    metavar="RANGE",
    help="Override target.source_ips: source addresses used round-robin, e.g. "
    '"127.0.0.1-127.0.0.20" or "10.0.0.5,10.0.0.6" (each range or list gets its own '
    "~28,000 ephemeral ports per target address).",
)


# the dialects a profile's [target] protocol may name, for --help
DIALECTS_EPILOG = (
    "Dialects ([target] protocol): "
    + ", ".join(PROTOCOLS)
    + ". docs/protocols.md has a page per dialect; soak server NAME starts its real server."
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
