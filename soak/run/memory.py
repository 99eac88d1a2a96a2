"""Pure: the tester's own memory against a budget.

A tester killed by the kernel's OOM killer takes every measurement of the
run with it, so it watches its resident set (each interval's
``rss_bytes``: this process's, plus its workers' in a ``--workers`` run)
against a budget, by default what the machine had available when the run
started (plus what the tester already held), less a 10% margin. Crossing
80%, 90% and 95% of it is each one loud ``tester_memory_warning`` event
and a line in the live view, while the run goes on.
"""

from __future__ import annotations

from typing import Any

WARN_AT = (0.80, 0.90, 0.95)
MARGIN = 0.10


def default_budget(rss: int, available: int | None) -> int | None:
    """What the tester may hold: ``rss`` now plus the machine's available
    memory, less the margin; None when the machine does not say."""
    if available is None or available <= 0:
        return None
    return rss + int(available * (1.0 - MARGIN))


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


class MemoryWatch:
    """Told each interval's RSS; says when it crosses the next step."""

    def __init__(self, budget: int | None) -> None:
        self.budget = budget
        self.peak = 0
        self.warnings = 0
        self._next = 0  # the index in WARN_AT of the next step to cross
        self._last: str | None = None

    def observe(self, rss: int, t: float) -> dict[str, Any] | None:
        """The interval ending ``t`` seconds into the run had ``rss`` bytes
        resident. Returns the warning event when a step is crossed."""
        self.peak = max(self.peak, rss)
        budget = self.budget
        if budget is None or rss <= 0:
            return None
        share = rss / budget
        crossed = False
        while self._next < len(WARN_AT) and share >= WARN_AT[self._next]:
            self._next += 1
            crossed = True
        if not crossed:
            return None
        self.warnings += 1
        self._last = (
            f"tester memory at {share:.0%} of its budget ({_mib(rss)} of {_mib(budget)}): "
            "an out-of-memory kill would lose the run; use fewer clients per process "
            "(--workers) or a bigger machine"
        )
        return {
            "t": round(t, 6),
            "event": "tester_memory_warning",
            "rss_bytes": rss,
            "budget_bytes": budget,
            "share": round(share, 4),
            "text": self._last,
        }

    def health(self) -> str | None:
        """The live view's line once a step was crossed, else None."""
        return self._last

    def summary(self) -> dict[str, Any]:
        return {
            "memory_budget_bytes": self.budget,
            "rss_peak_bytes": self.peak,
            "memory_warnings": self.warnings,
        }
