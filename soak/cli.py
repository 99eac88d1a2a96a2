"""The command line: the ``soak`` group and its commands (soak.commands).
Errors become exit codes only in soak.commands.common."""

from __future__ import annotations

import click

from soak import __version__
from soak.commands.common import BadInput, TargetFailure, errors_as_exit_codes, fail
from soak.commands.doctor import doctor
from soak.commands.gateway import gateway
from soak.commands.init import init
from soak.commands.k8s import k8s
from soak.commands.merge import merge
from soak.commands.plan import plan
from soak.commands.profiles import profiles, schema
from soak.commands.proxy import proxy
from soak.commands.report import compare, report
from soak.commands.run import (
    check_capacity,
    check_ports,
    demo,
    execute,
    execute_workers,
    reference_gateway,
    run,
)
from soak.commands.run_options import run_options
from soak.commands.server import server

__all__ = [
    "BadInput",
    "TargetFailure",
    "check_capacity",
    "check_ports",
    "cli",
    "compare",
    "demo",
    "doctor",
    "errors_as_exit_codes",
    "execute",
    "execute_workers",
    "fail",
    "gateway",
    "main",
    "merge",
    "proxy",
    "reference_gateway",
    "report",
    "run",
    "run_options",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="soak")
def cli() -> None:
    """soak: a WebSocket load and soak tester.

    Heartbeat RTT in HdrHistograms, missed heartbeats, zombies, reconnects,
    close reasons; results written as the run goes.
    """


cli.add_command(run)
cli.add_command(demo)
cli.add_command(gateway)
cli.add_command(report)
cli.add_command(compare)
cli.add_command(merge)
cli.add_command(k8s)
cli.add_command(doctor)
cli.add_command(proxy)
cli.add_command(plan)
cli.add_command(init)
cli.add_command(profiles)
cli.add_command(schema)
cli.add_command(server)


def main() -> None:
    cli(prog_name="soak")
