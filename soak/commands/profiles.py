"""``soak profiles``: the profiles shipped with soak, listed or shown."""

from __future__ import annotations

import click

from soak.commands.common import fail
from soak.shipped import find_shipped, shipped, shipped_names


@click.group(invoke_without_command=True)
@click.pass_context
def profiles(ctx: click.Context) -> None:
    """List the profiles shipped with soak (name, dialect, what it does).

    `soak profiles show NAME` prints one, to copy from; `soak run NAME` and
    `soak demo NAME` run one from any directory."""
    if ctx.invoked_subcommand is not None:
        return
    items = shipped()
    width = max(len(p.name) for p in items)
    pwidth = max(len(p.protocol) for p in items)
    for p in items:
        click.echo(f"{p.name:<{width}}  {p.protocol:<{pwidth}}  {p.summary}")


def _complete_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    return [n for n in shipped_names() if n.startswith(incomplete)]


@profiles.command()
@click.argument("name", shell_complete=_complete_names)
def show(name: str) -> None:
    """Print the shipped profile NAME (e.g. demo), comments and all.

    Exit codes: 0 printed, 2 no shipped profile has that name."""
    path = find_shipped(name)
    if path is None:
        fail(f"{name}: no shipped profile of that name; shipped: {', '.join(shipped_names())}")
    click.echo(path.read_text(encoding="utf-8"), nl=False)


@click.command()
def schema() -> None:
    """Print the profile's JSON Schema (generated from soak's configuration
    types; the same as the shipped soak/profile.schema.json).

    Point an editor's TOML support at it: docs/profiles.md, "Editor support"."""
    from soak.config.schema import schema_text

    click.echo(schema_text(), nl=False)
