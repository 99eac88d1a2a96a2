"""``soak report`` and ``soak compare``: reading results directories."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from soak.commands.common import errors_as_exit_codes, fail
from soak.summary import EXIT_USAGE


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=True, dir_okay=True))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the PNGs and report.html (default: the run directory).",
)
@click.option(
    "--export-json",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Also write the summary (summary.json, or the one computed for a partial run).",
)
@click.option(
    "--export-csv",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Also write the interval series, one row per interval (closes.<reason> etc.).",
)
def report(
    run_dir: str, out: Path | None, export_json: Path | None, export_csv: Path | None
) -> None:
    """Charts and a self-contained report.html for the results directory RUN_DIR.

    Exit codes: 0 written (also for a partial run or damaged lines, which the
    report lists), 2 RUN_DIR is not a readable run or an output cannot be written.
    """
    from soak.report.export import write_report

    with errors_as_exit_codes():
        try:
            rep, html_path = write_report(run_dir, out, export_json, export_csv)
        except OSError as exc:
            fail(f"cannot write the report: {exc}", EXIT_USAGE)
    if rep.partial:
        click.echo(f"soak: {rep.run.path}: partial run ({rep.run.status})", err=True)
    for p in rep.run.problems:
        click.echo(f"soak: warning: {p}", err=True)
    click.echo(str(html_path))


@click.command()
@click.argument("runs", nargs=-1, metavar="RUN_A RUN_B [RUN_C ...]")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for compare.html, compare.json and the charts (default: "
    "compare-<label A>-vs-<label B> next to RUN_A, in its results directory).",
)
@click.option(
    "--max-regression",
    "max_regression",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a limit (repeatable): rtt_p99=10% (relative, must also be significant), "
    "heartbeat_success=0.1 (percentage points), false_timeouts=0 (absolute increase).",
)
@click.option("--seed", default=1, show_default=True, type=int, help="Bootstrap RNG seed.")
@click.option(
    "--resamples",
    default=1000,
    show_default=True,
    type=click.IntRange(100),
    help="Bootstrap resamples.",
)
def compare(
    runs: tuple[str, ...],
    out: Path | None,
    max_regression: tuple[str, ...],
    seed: int,
    resamples: int,
) -> None:
    """Compare runs against the first (the baseline): metrics side by side,
    bootstrap confidence intervals of the RTT differences, a verdict.

    The page, its charts and compare.json go into --out, by default into
    compare-<label A>-vs-<label B>[-vs-...] in the results directory that holds
    RUN_A (RUN_A's parent directory); the last line printed is the page's path.

    Exit codes: 0 no regression, 1 a regression, 2 bad input (including an
    output directory that cannot be written)."""
    from soak.report import compare as cmp
    from soak.report import compare_page, compare_text
    from soak.results.reader import load_run

    if len(runs) < 2:
        raise click.UsageError("compare needs at least two runs: RUN_A RUN_B [RUN_C ...]")
    try:
        limits = cmp.parse_limits(max_regression)
    except cmp.LimitSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-regression") from None
    with errors_as_exit_codes():
        loaded = [load_run(r) for r in runs]
        result = cmp.compare(loaded, limits, resamples=resamples, seed=seed)
        target = out if out is not None else compare_page.default_out_dir(result)
        page = compare_page.write_outputs(result, target)
    for w in result.warnings:
        click.echo(w, err=True)
    click.echo(compare_text.render_text(result), nl=False)
    click.echo(f"page: {page}")
    sys.exit(result.exit_code)
