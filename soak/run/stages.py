"""I/O: what a storm stage does besides dropping connections (the load
source's part): run its command, and ask the gateway to restart. Each
outcome is one event (``storm_command``, ``storm_restart``); a failure is
recorded, never fatal to the run. ``t0``: the run's start (trio time);
``emit``: where events go (the sink's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from soak.config.stages import Storm
from soak.reconcile import StatsError, fetch_json
from soak.urls import without_userinfo


async def run_command(stage: Storm, t0: float, emit: Callable[[dict[str, Any]], None]) -> None:
    """Run a storm's command; its outcome and output go to events.jsonl.
    A command that fails or hangs (past the stage's command_timeout) is
    recorded, never fatal to the run."""
    command = stage.command or ""
    limit = stage.command_timeout
    started = trio.current_time()
    ev: dict[str, Any] = {
        "t": round(started - t0, 6),
        "event": "storm_command",
        "command": command,
    }
    with trio.move_on_after(limit) as scope:
        try:
            proc = await trio.run_process(
                ["/bin/sh", "-c", command],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        except OSError as exc:
            ev["error"] = str(exc)
        else:
            ev["exit_code"] = proc.returncode
            ev["stdout"] = proc.stdout.decode(errors="replace")[-4096:]
            ev["stderr"] = proc.stderr.decode(errors="replace")[-4096:]
    if scope.cancelled_caught:
        ev["error"] = f"timed out after {limit:g}s and was killed"
    ev["duration_s"] = round(trio.current_time() - started, 6)
    emit(ev)


async def ask_restart(url: str, t0: float, emit: Callable[[dict[str, Any]], None]) -> None:
    """POST a storm's restart URL (the gateway's admin endpoint); its answer,
    or why there was none, goes to events.jsonl."""
    ev: dict[str, Any] = {
        "t": round(trio.current_time() - t0, 6),
        "event": "storm_restart",
        "url": without_userinfo(url),
    }
    try:
        with trio.fail_after(10):
            ev["response"] = await fetch_json(url, method="POST")
    except trio.TooSlowError:
        ev["error"] = "no answer within 10s"
    except StatsError as exc:
        ev["error"] = str(exc)
    emit(ev)
