"""``soak server``: start a real server of a heartbeat dialect on loopback
(soak.servers), the same one the tests use, to try a dialect in a minute."""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

import click

from soak.commands.common import fail
from soak.summary import EXIT_TARGET


@click.command()
@click.argument("name", required=False)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port on 127.0.0.1 (0: a free one, printed).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A server option (e.g. ping_interval=1000); `soak server` lists them.",
)
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where its config and log go (default: a temporary directory).",
)
def server(name: str | None, port: int, settings: tuple[str, ...], workdir: Path | None) -> None:
    """Start the real server NAME on 127.0.0.1 until Ctrl-C; without NAME,
    list them. npm packages are installed once into ~/.cache/soak (or
    $SOAK_CACHE), never into the current directory.

    Exit codes: 0 stopped by Ctrl-C, 2 unknown server or option, 3 it cannot
    be installed or did not start."""
    from soak.servers import RECIPES, ServerUnavailable, recipe, start

    if name is None:
        width = max((len(n) for n in RECIPES), default=0)
        for r in sorted(RECIPES.values(), key=lambda r: r.name):
            opts = f" (options: {', '.join(r.options)})" if r.options else ""
            click.echo(f"{r.name:<{width}}  {r.dialect:<12}  {r.summary}{opts}")
        return
    try:
        chosen = recipe(name)
    except KeyError as exc:
        fail(str(exc.args[0]))
    options: dict[str, str] = {}
    for item in settings:
        key, eq, value = item.partition("=")
        if not eq or not key:
            fail(f"--set {item}: expected KEY=VALUE")
        options[key] = value
    # SIGTERM ends the command as Ctrl-C does: the server is stopped by its
    # PID on the way out (Python's default would leave it running)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory(prefix="soak-server-") as tmp:
        where = workdir or Path(tmp)
        try:
            with start(chosen, where, port=port, options=options) as srv:
                click.echo(f"{chosen.name} (pid {srv.pid}) on {srv.url}; log {srv.log}")
                click.echo(f'profile: [target] url = "{srv.url}", protocol = "{chosen.dialect}"')
                try:
                    while srv.proc.poll() is None:
                        time.sleep(0.5)
                except KeyboardInterrupt:
                    return
                raise ServerUnavailable(
                    f"{chosen.name} exited with {srv.proc.returncode}:\n{srv.log_tail()}"
                )
        except ValueError as exc:
            fail(str(exc))
        except ServerUnavailable as exc:
            fail(str(exc), EXIT_TARGET)
