"""``soak init [PATH]``: write a commented starter profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from soak.commands.common import errors_as_exit_codes, fail
from soak.config.target import PROTOCOLS
from soak.config.validation import Loader
from soak.starter import DEFAULT_URL, Starter, render

DEFAULTS = Starter()


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    with errors_as_exit_codes():
        return Loader("").positive_duration(f"--{param.name}", value)


def _zero_or_more(ctx: click.Context, param: click.Parameter, value: str) -> float:
    with errors_as_exit_codes():
        return Loader("").duration(f"--{param.name}", value)


def _url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    with errors_as_exit_codes():
        return Loader("").url("--url", value)


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), default="soak.toml")
@click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    callback=_url,
    help="The target, ws:// or wss://.",
)
@click.option(
    "--protocol",
    type=click.Choice(PROTOCOLS),
    default=DEFAULTS.protocol,
    show_default=True,
    help="The heartbeat dialect.",
)
@click.option(
    "--clients",
    type=click.IntRange(min=1),
    default=DEFAULTS.clients,
    show_default=True,
    help="Clients at full count.",
)
@click.option(
    "--ramp",
    default="1m",
    show_default=True,
    callback=_zero_or_more,
    help="How long the ramp to full count takes.",
)
@click.option(
    "--duration",
    default="10m",
    show_default=True,
    callback=_duration,
    help="How long the full count holds, after the ramp.",
)
@click.option(
    "--heartbeat",
    default="30s",
    show_default=True,
    callback=_duration,
    help="The clients' heartbeat interval.",
)
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def init(path: Path, force: bool, **options: Any) -> None:
    """Write a commented starter profile to PATH (default soak.toml).

    It loads as written; `soak plan PATH` shows what it will do. Exit codes:
    0 written, 2 bad option or PATH exists (without --force) or cannot be written."""
    text = render(Starter(**options))
    if path.exists() and not force:
        fail(f"{path}: exists; use --force to overwrite it")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"{path}: cannot write: {exc.strerror or exc}")
    click.echo(str(path))
