"""Runs of a dialect against a fake server under MockClock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from soak.run.runner import Runner
from tests.support.fakes.wsfake import FakeServer
from tests.support.runs import events, make_profile, run_in_memory, serving

BODY = """
[run]
label = "fake"
report_interval = "10s"
[clients]
[[clients.stages]]
kind = "ramp"
to = {clients}
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "{hold}"
[heartbeat]
interval = "{interval}"
timeout = "{timeout}"
max_missed = {max_missed}
phase = "spread"
[reconnect]
{reconnect}
"""
NO_JITTER = 'jitter = "none"\ninitial_delay = "1s"\nmax_attempts = {attempts}\n'


def body(
    *,
    clients: int = 1,
    hold: str = "10s",
    interval: str = "1s",
    timeout: str = "500ms",
    max_missed: int = 3,
    attempts: int = 5,
    reconnect: str | None = None,
) -> str:
    again = NO_JITTER.format(attempts=attempts) if reconnect is None else reconnect
    return BODY.format(
        clients=clients,
        hold=hold,
        interval=interval,
        timeout=timeout,
        max_missed=max_missed,
        reconnect=again,
    )


async def run_fake(
    protocol: str,
    server: FakeServer,
    text: str,
    tmp_path: Path,
    *,
    table: str = "",
    url: str = "ws://127.0.0.1:9/ws",
    environ: dict[str, str] | None = None,
    during: Callable[[Runner], Awaitable[None]] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's summary and its events."""
    profile = make_profile(
        text,
        url=url,
        results=tmp_path,
        protocol=protocol,
        target_extra=table,
        environ=environ,
    )
    outcome, _ = await run_in_memory(profile, tmp_path, serving(server.serve), during)
    summary: dict[str, Any] = outcome.summary
    return summary, events(tmp_path)


def closes(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in evs if e.get("event") == "close"]
