"""The run's one-line verdict when the planned load was not held
(soak.summary.exit_code with the availability and storm-recovery shares):
what a user reads at the end of `soak run` and in summary.json. Pure."""

from __future__ import annotations

from typing import Any

from soak.availability import Span, summarize
from soak.config.thresholds import Threshold, with_defaults
from soak.summary import EXIT_OK, EXIT_THRESHOLDS, exit_code, judge
from tests.support.runs import make_profile

PROFILE = make_profile('[[clients.stages]]\nkind = "hold"\nduration = "1s"\n')
TOT = {"connects": 10, "connect_attempts": 10, "reconnect_failed": 0}
HALF = [Span(0.0, 45.0, 9000.0, 9000.0), Span(45.0, 45.0, 0.0, 9000.0)]
FULL = [Span(0.0, 90.0, 18000.0, 18000.0)]


def storm(index: int, start: float, lost: int, back: int) -> dict[str, Any]:
    return {"index": index, "start_s": start, "lost": lost, "recovered": back, "gave_up": 0}


def verdict(av: dict[str, Any], *mine: Threshold) -> tuple[int, str]:
    return exit_code("completed", TOT, judge(with_defaults(list(mine)), {}, {}, av), PROFILE)


def test_the_verdict_says_in_words_that_the_planned_load_was_not_held() -> None:
    """Every share that failed with its figures, what they are made of (the
    client-seconds, the longest stretch below, the worst storm), then the
    other thresholds that failed."""
    av = summarize(HALF, [storm(2, 60.0, 10, 9), storm(1, 45.0, 200, 150)])
    assert verdict(av, Threshold("rtt_p99", 0.25, "250ms", "<")) == (
        EXIT_THRESHOLDS,
        "the planned load was not held: availability 50.00% (at least 90%); "
        "storm_recovery 75.00% (at least 100%); "
        "9,000 of 18,000 planned client-seconds connected; below 95% for 45 s from 45 s; "
        "worst: storm 1 at 45 s: 150 of 200 lost clients back by the end; "
        "thresholds failed: rtt_p99 (no data)",
    )


def test_a_storm_that_did_not_recover_alone_fails_the_run_in_words() -> None:
    av = summarize(FULL, [storm(1, 30.0, 20, 19)])
    assert verdict(av) == (
        EXIT_THRESHOLDS,
        "the planned load was not held: storm_recovery 95.00% (at least 100%); "
        "worst: storm 1 at 30 s: 19 of 20 lost clients back by the end",
    )


def test_availability_below_its_share_without_a_stretch_says_only_its_seconds() -> None:
    """Without a stretch below the share (none recorded), the line gives the
    client-seconds alone."""
    av = summarize([Span(0.0, 10.0, 89.0, 100.0)], [])
    av["below"] = {"share": 0.95, "longest_s": 0.0, "from_s": None}
    assert verdict(av) == (
        EXIT_THRESHOLDS,
        "the planned load was not held: availability 89.00% (at least 90%); "
        "89 of 100 planned client-seconds connected",
    )


def test_a_share_without_figures_adds_nothing_to_the_verdict() -> None:
    av = summarize(FULL, [])
    av["storm_recovery"] = 0.5  # a summary without the storms behind it
    assert verdict(av) == (
        EXIT_THRESHOLDS,
        "the planned load was not held: storm_recovery 50.00% (at least 100%)",
    )


def test_a_run_that_held_its_load_passes() -> None:
    assert verdict(summarize(FULL, [storm(1, 30.0, 20, 20)])) == (EXIT_OK, "passed")
