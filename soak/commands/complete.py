"""Shell completion (click's own mechanism, docs/commands.md): the PROFILE
argument completes to files and to the shipped profiles' names, and turns a
shipped name into its file (soak.shipped.resolve_profile)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from click.shell_completion import CompletionItem

from soak.shipped import resolve_profile, shipped_names

if TYPE_CHECKING:  # generic in click's types from 8.2; plain at run time before
    _ParamType = click.ParamType[str]
else:
    _ParamType = click.ParamType


class ProfileArg(_ParamType):
    """A profile: a TOML file, or a shipped profile's name."""

    name = "profile"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return resolve_profile(str(value))

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        names = [CompletionItem(n) for n in shipped_names() if n.startswith(incomplete)]
        # "file": the shell completes paths itself (bash, zsh and fish alike)
        return [*names, CompletionItem(incomplete, type="file")]


PROFILE = ProfileArg()
