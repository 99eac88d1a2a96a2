"""The mutation score per module, from what `mutmut run` left in mutants/.

    python .ci/mutation_score.py [--min PERCENT] [--survivors] [MODULE ...]

Prints one Markdown row per mutated module (killed, survived, no tests,
timeouts, score) and, with --survivors, every surviving mutant's name (see
one with `mutmut show NAME`). A timeout counts as killed (the mutant hung
the tests), as mutmut's own badge counts it. With --min, exits 1 when a
listed module (or, without MODULE, any) scores under PERCENT. See
docs/testing.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KILLED = {1, 3}  # tests failed; pytest's internal error
SURVIVED = {0}
NO_TESTS = {5, 33}
TIMEOUT = {24, -24, 36, 152, 255}
SKIPPED = {34}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", help="e.g. soak/heartbeat.py (default: all)")
    ap.add_argument("--min", type=float, default=None, help="fail under this score (percent)")
    ap.add_argument("--survivors", action="store_true", help="list the surviving mutants")
    ap.add_argument("--dir", default="mutants", help="mutmut's working directory")
    args = ap.parse_args(argv)
    root = Path(args.dir)
    metas = sorted(root.rglob("*.py.meta"))
    if not metas:
        print(f"{root}: no mutation results; run `make mutate` first", file=sys.stderr)
        return 2
    rows = []
    survivors: list[str] = []
    low: list[str] = []
    for meta in metas:
        module = str(meta.relative_to(root))[: -len(".meta")]
        if args.modules and module not in args.modules:
            continue
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        killed = sum(1 for c in codes.values() if c in KILLED)
        timeout = sum(1 for c in codes.values() if c in TIMEOUT)
        survived = sorted(k for k, c in codes.items() if c in SURVIVED)
        untested = sorted(k for k, c in codes.items() if c in NO_TESTS)
        skipped = sum(1 for c in codes.values() if c in SKIPPED)
        unchecked = sum(1 for c in codes.values() if c is None)
        judged = len(codes) - skipped - unchecked
        score = 100.0 * (killed + timeout) / judged if judged else 0.0
        rows.append(
            f"| `{module}` | {len(codes)} | {killed} | {timeout} | {len(survived)} "
            f"| {len(untested)} | {unchecked} | {score:.1f}% |"
        )
        survivors += [f"{k} (survived)" for k in survived] + [f"{k} (no tests)" for k in untested]
        if args.min is not None and (score < args.min or unchecked):
            low.append(f"{module} {score:.1f}%")
    print("| module | mutants | killed | timeout | survived | no tests | not run | score |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.survivors and survivors:
        print()
        print("\n".join(survivors))
    if low:
        print(f"\nunder {args.min:g}%: " + ", ".join(low), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
