"""Threshold verdicts and the run's exit code (soak.summary), with plain
numbers: the values a user's `[thresholds]` are judged on, how they are
shown, and which exit code and one-line reason a run ends with."""

from __future__ import annotations

from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from soak.config.thresholds import Threshold
from soak.metrics import HISTOGRAMS, Metrics, new_histogram
from soak.summary import (
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_TARGET,
    EXIT_THRESHOLDS,
    exit_code,
    judge,
    latencies,
    metric_value,
    totals,
)
from tests.support.runs import make_profile, one_client


def hist(*samples: tuple[int, int]) -> HdrHistogram:
    """(microseconds, how many times)."""
    h = new_histogram()
    for us, n in samples:
        h.record_value(us, n)
    return h


def hists() -> dict[str, HdrHistogram]:
    """rtt: 99 samples of 1 ms and one of 1.5 s; rtt_service: 7 ms and
    300 ms, apart from rtt so a lookup of the wrong histogram shows; the
    rest empty."""
    out = {name: new_histogram() for name in HISTOGRAMS}
    out["rtt"] = hist((1000, 99), (1_500_000, 1))
    out["rtt_service"] = hist((700, 50), (1900, 48), (300_000, 2))
    out["lag"] = hist((2000, 1))
    return out


def check(name: str, limit: float, text: str, op: str = "<=", tot: Any = None) -> dict[str, Any]:
    m = Metrics()
    [v] = judge([Threshold(name, limit, text, op)], tot or totals(m), hists())
    return v


@pytest.mark.parametrize(
    ("name", "seconds", "shown"),
    [
        ("rtt_p50", 0.001, "1.000ms"),
        ("rtt_p99", 0.001, "1.000ms"),
        ("rtt_p999", 1.500159, "1.50016s"),
        ("rtt_max", 1.500159, "1.50016s"),
        ("rtt_service_p50", 0.0007, "0.700ms"),
        ("rtt_service_p99", 0.300031, "300.031ms"),
        ("rtt_service_max", 0.300031, "300.031ms"),
        ("lag_max", 0.002, "2.000ms"),
    ],
)
def test_a_latency_threshold_is_judged_on_its_own_histogram(
    name: str, seconds: float, shown: str
) -> None:
    assert metric_value(Threshold(name, 1.0, "1s"), totals(Metrics()), hists()) == pytest.approx(
        seconds, abs=1e-6
    )
    v = check(name, 0.25, "250ms")
    assert v["value"] == shown
    assert v["ok"] is (seconds <= 0.25)
    assert v["text"] == f"{'PASS' if v['ok'] else 'FAIL'} {name} <= 250ms: {shown}"
    assert (v["name"], v["limit"], v["op"]) == (name, "250ms", "<=")


def test_the_limit_itself_passes_a_maximum_and_not_a_strict_one() -> None:
    assert check("rtt_p99", 0.001, "1ms")["ok"] is True
    assert check("rtt_p99", 0.001, "1ms", "<")["ok"] is False
    assert check("rtt_p99", 0.000999, "999us")["ok"] is False


def test_an_empty_histogram_is_no_data() -> None:
    v = check("connect_p99", 1.0, "1s")
    assert (v["ok"], v["value"]) == (False, "no data")
    assert metric_value(Threshold("reconnect_max", 1.0, "1s"), totals(Metrics()), hists()) is None


def run_totals() -> dict[str, Any]:
    m = Metrics()
    m.count("pongs", 99)
    m.count("missed", 1)
    m.count("zombies", 2)
    m.count("connect_attempts", 4)
    m.count("connects", 4)
    m.handshake_failure("refused")
    m.handshake_failure("timeout")
    m.handshake_failure("refused")
    m.rotate(10.0)
    return totals(m)


@pytest.mark.parametrize(
    ("name", "limit", "op", "value", "ok"),
    [
        ("heartbeat_success", 0.99, ">=", "99.000%", True),
        ("heartbeat_success", 0.995, ">=", "99.000%", False),
        ("handshake_failures", 2.0, "<=", "3", False),
        ("handshake_failures", 3.0, "<=", "3", True),
        ("zombies", 2.0, "==", "2", True),
        ("missed", 0.0, "<=", "1", False),
        ("false_timeouts", 0.0, "<=", "0", True),
        ("dropped_samples", 0.0, "<=", "0", True),
    ],
)
def test_rates_and_counts_are_judged_on_the_totals(
    name: str, limit: float, op: str, value: str, ok: bool
) -> None:
    v = check(name, limit, "x", op, run_totals())
    assert (v["value"], v["ok"], v["op"], v["name"]) == (value, ok, op, name)


def test_latencies_in_summary_are_milliseconds() -> None:
    m = Metrics()
    m.record("rtt", 0.001)
    m.record("rtt", 0.002)
    m.rotate(10.0)
    rtt = latencies(m)["rtt"]
    assert (rtt["count"], rtt["min"], rtt["max"], rtt["mean"]) == (2, 1.0, 2.0, 1.5)
    assert latencies(m)["connect"]["p99"] is None


# -- the exit code -------------------------------------------------------------------


def tot(**kw: Any) -> dict[str, Any]:
    base = {"connects": 5, "connect_attempts": 5, "reconnect_failed": 0}
    base.update(kw)
    return base


PROFILE = make_profile(one_client())
WITH_GAVE_UP = make_profile(one_client() + "[thresholds]\nreconnect_failed = 3\n")
PASS = [{"name": "rtt_p99", "ok": True, "value": "1.000ms"}]
FAIL = [
    {"name": "rtt_p99", "ok": False, "value": "300.000ms"},
    {"name": "missed", "ok": True, "value": "0"},
    {"name": "zombies", "ok": False, "value": "2"},
]


@pytest.mark.parametrize(
    ("status", "code", "why"),
    [
        ("interrupted", EXIT_SIGINT, "interrupted (SIGINT)"),
        ("aborted", EXIT_SIGINT, "aborted by a second SIGINT"),
        ("terminated", EXIT_SIGTERM, "terminated (SIGTERM)"),
        ("completed", EXIT_OK, "passed"),
    ],
)
def test_how_the_run_ended_decides_first(status: str, code: int, why: str) -> None:
    assert exit_code(status, tot(), PASS, PROFILE) == (code, why)
    if status != "completed":  # a signal wins over failed thresholds
        assert exit_code(status, tot(), FAIL, PROFILE) == (code, why)


def test_failed_thresholds_are_named_in_order() -> None:
    assert exit_code("completed", tot(), FAIL, PROFILE) == (
        EXIT_THRESHOLDS,
        "thresholds failed: rtt_p99, zombies",
    )


def test_a_target_never_reached_is_exit_3() -> None:
    never = tot(connects=0, connect_attempts=7)
    assert exit_code("completed", never, FAIL, PROFILE) == (
        EXIT_TARGET,
        "the target was never reachable",
    )
    one = tot(connects=0, connect_attempts=1)
    assert exit_code("completed", one, PASS, PROFILE)[0] == EXIT_TARGET
    # no attempt at all (a zero-client profile) is not "unreachable"
    assert exit_code("completed", tot(connects=0, connect_attempts=0), PASS, PROFILE)[0] == EXIT_OK


def test_a_permanent_refusal_says_what_and_how_often() -> None:
    refusal = {"error": "unauthorized: token mismatch", "failures": 3}
    code, why = exit_code("completed", tot(connects=0, permanent_failure=refusal), PASS, PROFILE)
    assert code == EXIT_TARGET
    assert why == (
        "the target refused every connection: unauthorized: token mismatch "
        "(permanent: refused 3 times in a row, so no client tries again)"
    )
    code, why = exit_code("completed", tot(permanent_failure=refusal), PASS, PROFILE)
    assert why.startswith("reconnects stopped: unauthorized: token mismatch")


def test_clients_giving_up_fail_the_run_unless_a_threshold_decides() -> None:
    assert exit_code("completed", tot(reconnect_failed=2), PASS, PROFILE) == (
        EXIT_TARGET,
        "2 clients gave up reconnecting: the planned load was not held",
    )
    assert exit_code("completed", tot(reconnect_failed=2), PASS, WITH_GAVE_UP) == (
        EXIT_OK,
        "passed",
    )
    failed = [{"name": "reconnect_failed", "ok": False, "value": "4"}]
    assert exit_code("completed", tot(reconnect_failed=4), failed, WITH_GAVE_UP) == (
        EXIT_THRESHOLDS,
        "thresholds failed: reconnect_failed",
    )
