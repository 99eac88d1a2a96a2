"""``soak plan PROFILE``: what a run would do, without connecting."""

from __future__ import annotations

import sys

import click

from soak.commands.complete import PROFILE
from soak.commands.run import load_with_overrides as load
from soak.commands.run import print_plan
from soak.commands.run_options import run_options, source_ip_option


@click.command()
@click.argument("profile", type=PROFILE)
@run_options
@source_ip_option
def plan(
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
    """Show what `soak run PROFILE` would do, without connecting: the stages,
    a chart of the target count over time, the peak and its heartbeats per
    second, descriptors, ports and memory against this machine's limits, the
    workers --workers auto would pick, the thresholds and the commands the
    profile runs. Takes soak run's options, so the plan is of that run.

    Exit codes: 0 this machine can hold it, 2 bad input or it cannot (with
    the message soak run would stop with)."""
    p = load(
        profile,
        url=url,
        label=label,
        duration=duration,
        results_dir=results_dir,
        thresholds=thresholds,
        workers=workers,
        source_ip=source_ip,
    )
    sys.exit(print_plan(p))
