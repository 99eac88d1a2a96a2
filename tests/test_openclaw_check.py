"""The checks `make test-openclaw` applies to a run against the real
gateway (tests/openclaw/check.py), on made-up results: a good run passes,
and each way a run can go wrong is named."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.openclaw.check import problems

CLIENTS = 300


def good() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    summary: dict[str, Any] = {
        "status": "completed",
        "verdict": "passed",
        "duration_s": 120.07,
        "totals": {
            "false_timeouts": 0,
            "justified_timeouts": 0,
            "zombies": 0,
            "reconnect_failed": 0,
            "reconnects": 300,
            "closes": {"client_shutdown": 300, "server_1012_restart": 300},
        },
        "protocol": {
            "name": "openclaw",
            "clients_ticked": 300,
            "tick_gap_ms": {"count": 300, "min": 29982.7, "p50": 30015.5, "max": 30031.9},
        },
        "storms": [{"lost": 300, "recovered": 300, "recovery_s": {"p100": 4.5}}],
    }
    manifest = {"server_version": "2026.9.6"}
    events = [{"event": "storm_command", "exit_code": 0}]
    intervals = [
        {"t": 110.0, "dt": 5.0, "connected": 300},
        {"t": 115.0, "dt": 5.07, "connected": 0},  # written after the shutdown
    ]
    return summary, manifest, events, intervals


def test_a_good_run_passes() -> None:
    assert problems(*good(), clients=CLIENTS, exit_code=0) == []


def _late_ticks(s: dict[str, Any]) -> None:
    s["protocol"]["tick_gap_ms"]["max"] = 45000.0


def _a_tickless_client(s: dict[str, Any]) -> None:
    s["protocol"]["clients_ticked"] = 299


def _false_timeout(s: dict[str, Any]) -> None:
    s["totals"]["false_timeouts"] = 1


def _not_all_back(s: dict[str, Any]) -> None:
    s["storms"][0]["recovered"] = 290


def _no_storm(s: dict[str, Any]) -> None:
    s["storms"] = []


def _unannounced(s: dict[str, Any]) -> None:
    s["totals"]["closes"] = {"server_1012_service_restart": 300}


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        (_late_ticks, "tick gaps 29983..45000 ms, expected 30 s +- 1 s"),
        (_a_tickless_client, "299 of 300 clients got a tick"),
        (_false_timeout, "1 false timeouts"),
        (_not_all_back, "290 of 300 came back"),
        (_no_storm, "0 reconnect storms measured, expected 1"),
        (_unannounced, "0 of 300 clients got shutdown + 1012"),
    ],
)
def test_each_failure_is_named(spoil: Any, expected: str) -> None:
    summary, manifest, events, intervals = copy.deepcopy(good())
    spoil(summary)
    assert expected in problems(summary, manifest, events, intervals, clients=CLIENTS, exit_code=0)


def test_run_level_failures_are_named() -> None:
    summary, manifest, events, intervals = good()
    found = problems(
        summary,
        {"server_version": None},
        [{"event": "storm_command", "exit_code": 1}],
        intervals,
        clients=CLIENTS,
        exit_code=1,
    )
    assert found[0] == "soak exited 1: passed"
    assert "run.json server_version is None, expected '2026.9.6'" in found
    assert any(p.startswith("the SIGUSR2 command did not run cleanly") for p in found)
    last = [{"t": 110.0, "dt": 5.0, "connected": 250}]
    assert "250 clients connected at the end, expected 300" in problems(
        summary, manifest, events, last, clients=CLIENTS, exit_code=0
    )
