"""What every command shares: the one place that turns errors into exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import click

from soak.errors import LocalError, SoakError
from soak.summary import EXIT_TARGET, EXIT_USAGE


class BadInput(click.ClickException):
    exit_code = EXIT_USAGE


class TargetFailure(click.ClickException):
    exit_code = EXIT_TARGET


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    raise (TargetFailure if code == EXIT_TARGET else BadInput)(message)


@contextmanager
def errors_as_exit_codes() -> Iterator[None]:
    """Our errors become one clear line and an exit code, never a traceback."""
    try:
        yield
    except LocalError as exc:
        fail(str(exc), EXIT_USAGE)
    except SoakError as exc:
        fail(str(exc), EXIT_TARGET)
