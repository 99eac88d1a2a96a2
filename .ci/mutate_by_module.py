"""Mutation testing of one module at a time, against that module's own tests.

    python .ci/mutate_by_module.py [--min PERCENT] [--children N] [--keep DIR] [MODULE ...]

Without MODULE: CI's ratchet (RATCHET below). With MODULE (e.g.
soak/storm.py, or `all`): those modules of MODULE_TESTS.

`make mutate` maps the whole fast tier to the functions it reaches and runs
every test that reaches a mutated function: hours on this machine for the
whole core, since the run-level tests reach nearly everything. Here each
module gets a scratch copy of `soak/`, `tests/`, `profiles/` and `docs/` whose
`[tool.mutmut]` names that module and its own test files only (mutmut reads
its configuration from the working directory's pyproject.toml; it has no
command-line override), so the map and each mutant's tests take seconds. A
module's score here is a lower bound of its score against the whole tier.
The repository's own `mutants/` is not touched. Exits 1 when a module
scores under --min (default 90), with `.ci/mutation_score.py`. See
docs/testing.md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module -> the fast test files that are about it (each must pass unmutated)
MODULE_TESTS: dict[str, list[str]] = {
    "soak/heartbeat.py": [
        "tests/test_heartbeat.py",
        "tests/test_dialect_model.py",
        "tests/test_measurement_core.py",
    ],
    "soak/classify.py": [
        "tests/test_classify.py",
        "tests/test_classify_edges.py",
        "tests/test_measurement_core.py",
    ],
    "soak/storm.py": [
        "tests/test_storm.py",
        "tests/test_storm_record.py",
        "tests/test_storm_log.py",
        "tests/test_measurement_core.py",
    ],
    "soak/backoff.py": ["tests/test_backoff.py", "tests/test_reconnect_presets.py"],
    "soak/schedule.py": ["tests/test_schedule.py", "tests/test_config.py"],
    "soak/metrics.py": [
        "tests/test_metrics_core.py",
        "tests/test_tally.py",
        "tests/test_measurement_core.py",
    ],
    "soak/results/writer.py": [
        "tests/test_writer.py",
        "tests/test_results.py",
        "tests/test_full_disk.py",
    ],
    "soak/results/hlog.py": ["tests/test_hlog.py", "tests/test_results.py"],
    "soak/results/backlog.py": ["tests/test_backlog.py", "tests/test_full_disk.py"],
    "soak/summary.py": [
        "tests/test_verdicts.py",
        "tests/test_verdict_lines.py",
        "tests/test_availability.py",
        "tests/test_findings.py",
        "tests/test_tally.py",
        "tests/test_measurement_core.py",
    ],
    "soak/config/thresholds.py": [
        "tests/test_verdicts.py",
        "tests/test_availability.py",
        "tests/test_profile.py",
    ],
    "soak/run/merge.py": [
        "tests/test_merge_core.py",
        "tests/test_storm_record.py",
        "tests/test_storm_log.py",
        "tests/test_measurement_core.py",
    ],
    "soak/merge_shards.py": ["tests/test_shards.py"],
    "soak/merge_write.py": ["tests/test_shards.py"],
    "soak/wsframe.py": ["tests/test_wsframe.py"],
    "soak/client/connection.py": [
        "tests/test_client_step.py",
        "tests/test_dialect_model.py",
        "tests/test_measurement_core.py",
    ],
    "soak/gateway/heartbeat.py": ["tests/test_gateway_heartbeat.py"],
}

# CI's ratchet: the heartbeat engine and the thresholds' parsing (each run
# of CI must keep them at --min)
RATCHET = ["soak/heartbeat.py", "soak/config/thresholds.py"]

# what the tests read besides soak/ and tests/ (the shipped profiles, the docs)
COPY = ("soak", "tests", "profiles", "docs")

SECTION = re.compile(r"^\[tool\.mutmut\]\n(?:(?!^\[).*\n?)*", re.MULTILINE)


def config(module: str, tests: list[str]) -> str:
    def toml_list(xs: list[str]) -> str:
        return "[" + ", ".join(f'"{x}"' for x in xs) + "]"

    return (
        "[tool.mutmut]\n"
        'source_paths = ["soak"]\n'
        f'only_mutate = ["{module}"]\n'
        'also_copy = ["profiles/", "docs/"]\n'
        'pytest_add_cli_args = ["-m", "not process and not slow", "-p", "no:cacheprovider"]\n'
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        "use_git_change_detection = false\n\n"
    )


def mutate(module: str, work: Path, children: int) -> bool:
    """mutmut over ``module`` in ``work`` (a fresh copy); True when it ran."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in COPY:
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    text, n = SECTION.subn(
        config(module, MODULE_TESTS[module]), (ROOT / "pyproject.toml").read_text()
    )
    if n != 1:
        print("pyproject.toml: no [tool.mutmut] section to replace", file=sys.stderr)
        return False
    (work / "pyproject.toml").write_text(text)
    mutmut = Path(sys.executable).with_name("mutmut")
    run = subprocess.run(
        [str(mutmut), "run", "--max-children", str(children)],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if run.returncode != 0:
        print(run.stdout[-4000:], file=sys.stderr)
        print(f"{module}: mutmut exited {run.returncode}", file=sys.stderr)
        return False
    return True


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", help="soak/... or `all` (default: CI's ratchet)")
    ap.add_argument("--min", type=float, default=90.0, help="fail under this score (percent)")
    ap.add_argument("--children", type=int, default=2, help="mutmut's --max-children")
    ap.add_argument("--keep", default=None, help="work under this directory and keep it")
    args = ap.parse_args(argv)
    modules = list(MODULE_TESTS) if args.modules == ["all"] else args.modules or RATCHET
    unknown = [m for m in modules if m not in MODULE_TESTS]
    if unknown:
        print(f"not a module of MODULE_TESTS: {', '.join(unknown)}", file=sys.stderr)
        return 2
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="soak-mutate-"))
    worst = 0
    try:
        for module in modules:
            start = time.monotonic()
            work = base / module.replace("/", "_").removesuffix(".py")
            if not mutate(module, work, args.children):
                worst = 2
                continue
            score = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / ".ci" / "mutation_score.py"),
                    "--dir",
                    str(work / "mutants"),
                    "--min",
                    f"{args.min:g}",
                    "--survivors",
                    module,
                ]
            )
            print(f"{module}: {time.monotonic() - start:.0f} s\n", flush=True)
            worst = max(worst, score.returncode)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
