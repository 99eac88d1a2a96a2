"""CI's mutation ratchet: mutmut over a few key modules, with only their own tests.

    python .ci/mutation_ratchet.py [--min PERCENT] [--children N] [--keep DIR]

`make mutate` maps the whole fast tier to the functions it reaches before the
first mutant (minutes); the ratchet cannot afford that. It copies `soak/`,
`tests/` and `pyproject.toml` into a scratch directory, replaces the copy's
`[tool.mutmut]` with RATCHET's modules and test files (mutmut reads its
configuration from the working directory's pyproject.toml, with no override
on the command line), runs mutmut there and exits 1 when a module scores
under --min (default 90) with `.ci/mutation_score.py`. The repository's own
`mutants/` is not touched. See docs/testing.md, "The CI ratchet".
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

# module -> the test files that are about it (each must pass on the unmutated code)
RATCHET: dict[str, list[str]] = {
    "soak/heartbeat.py": [
        "tests/test_heartbeat.py",
        "tests/test_dialect_model.py",
        "tests/test_measurement_core.py",
    ],
    "soak/config/thresholds.py": ["tests/test_verdicts.py", "tests/test_profile.py"],
}

# what the tests above read (the shipped profiles)
COPY = ("soak", "tests", "profiles")

SECTION = re.compile(r"^\[tool\.mutmut\]\n(?:(?!^\[).*\n?)*", re.MULTILINE)


def config(modules: dict[str, list[str]]) -> str:
    tests = sorted({t for ts in modules.values() for t in ts})

    def toml_list(xs: list[str]) -> str:
        return "[" + ", ".join(f'"{x}"' for x in xs) + "]"

    return (
        "[tool.mutmut]\n"
        'source_paths = ["soak"]\n'
        f"only_mutate = {toml_list(sorted(modules))}\n"
        'also_copy = ["profiles/"]\n'
        'pytest_add_cli_args = ["-m", "not process and not slow", "-p", "no:cacheprovider"]\n'
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        "use_git_change_detection = false\n\n"
    )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min", type=float, default=90.0, help="fail under this score (percent)")
    ap.add_argument("--children", type=int, default=2, help="mutmut's --max-children")
    ap.add_argument("--keep", default=None, help="work in this directory and keep it")
    args = ap.parse_args(argv)
    start = time.monotonic()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="soak-ratchet-"))
    try:
        work.mkdir(parents=True, exist_ok=True)
        for name in COPY:
            shutil.rmtree(work / name, ignore_errors=True)
            shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.rmtree(work / "mutants", ignore_errors=True)
        text = (ROOT / "pyproject.toml").read_text()
        text, n = SECTION.subn(config(RATCHET), text)
        if n != 1:
            print("pyproject.toml: no [tool.mutmut] section to replace", file=sys.stderr)
            return 2
        (work / "pyproject.toml").write_text(text)
        mutmut = Path(sys.executable).with_name("mutmut")
        run = subprocess.run(
            [str(mutmut), "run", "--max-children", str(args.children)],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if run.returncode != 0:
            print(run.stderr[-4000:], file=sys.stderr)
            print(f"ratchet: mutmut exited {run.returncode}", file=sys.stderr)
            return 2
        score = subprocess.run(
            [
                sys.executable,
                str(ROOT / ".ci" / "mutation_score.py"),
                "--dir",
                str(work / "mutants"),
                "--min",
                f"{args.min:g}",
                "--survivors",
                *RATCHET,
            ]
        )
        print(f"ratchet: {time.monotonic() - start:.0f} s")
        return score.returncode
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
