"""``soak merge``: the shards of a run over several machines made into one
results directory (soak.merge_shards, soak.merge_write)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from soak.commands.common import errors_as_exit_codes
from soak.live import print_summary
from soak.merge_shards import plan
from soak.merge_write import merge as write_merge


@click.command()
@click.argument("dirs", nargs=-1, required=True, metavar="DIR...")
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the merged results directory goes (default: the directory that "
    "holds the first shard's).",
)
def merge(dirs: tuple[str, ...], results_dir: Path | None) -> None:
    """Merge the results of a sharded run (soak run --shard I/N) into one
    results directory in the usual format, and judge its thresholds once.

    Each DIR is a shard's results directory, or the run's directory holding
    them (results/<stamp>-<label>/). A missing, partial or mismatched shard
    is named, and fails the shards_lost check.

    Exit codes: as soak run's (0 passed, 1 a threshold or shards_lost failed,
    2 bad input, 3 the target was never reachable).
    """
    with errors_as_exit_codes():
        shards = plan(list(dirs))
        for line in shards.warnings():
            click.echo(f"soak: warning: {line}", err=True)
        root = results_dir if results_dir is not None else shards.reference.path.parent
        merged = write_merge(shards, root, sys.argv[1:])
    for line in merged.problems:
        click.echo(f"soak: warning: {line}", err=True)
    for line in shards.lost():
        click.echo(f"soak: {line}", err=True)
    print_summary(merged.summary, str(merged.path), sys.stdout)
    sys.exit(int(merged.summary["exit_code"]))
