"""Profiles from TOML bodies, and runs of the real Runner with no sockets:
every client's stream is one end of a trio memory stream pair whose other
end an in-process server (the reference gateway, or a test's own) serves."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from soak.config.load import parse_profile
from soak.config.overrides import override
from soak.config.profile import Profile
from soak.gateway import Gateway
from soak.recorder import Recorder
from soak.run.runner import Outcome, Runner

WALL0 = 1_790_000_000.0  # a fixed wall clock for runs under MockClock
Opener = Callable[[], Awaitable[trio.abc.Stream]]


def make_profile(
    body: str,
    *,
    url: str = "ws://127.0.0.1:9/ws",
    results: Path | None = None,
    environ: dict[str, str] | None = None,
    protocol: str = "json",
    target_extra: str = "",
) -> Profile:
    """A profile from a TOML body; [target] and [run].results_dir are filled in."""
    head = f'[target]\nurl = "{url}"\nprotocol = "{protocol}"\n' + target_extra
    text = head + body
    profile = parse_profile(text, "test.toml", environ or {})
    if results is not None:
        profile = override(profile, results_dir=str(results))
    return profile


def memory_opener(
    gateway: Gateway, nursery: trio.Nursery
) -> Callable[[], Awaitable[trio.abc.Stream]]:
    """Connect clients to an in-process gateway over in-memory streams."""

    async def open_stream() -> trio.abc.Stream:
        client_side, server_side = trio.testing.memory_stream_pair()
        nursery.start_soon(gateway.handle_stream, server_side)
        return client_side

    return open_stream


async def run_in_memory(
    profile: Profile,
    tmp_path: Path,
    make_opener: Callable[[trio.Nursery], Opener],
    during: Callable[[Runner], Awaitable[None]] | None = None,
    recorder: Recorder | None = None,
) -> tuple[Outcome, Path]:
    """Run a profile with no sockets: ``make_opener`` gets the nursery where
    servers live and returns how each client opens its stream. ``recorder``:
    the run's (default: a new one under ``tmp_path``)."""
    if recorder is None:
        recorder = Recorder(tmp_path, profile.run.label, WALL0)
    async with trio.open_nursery() as servers:
        runner = Runner(
            profile, recorder, open_stream=make_opener(servers), lag_probe=None, manage_gc=False
        )
        if during is not None:
            servers.start_soon(during, runner)
        outcome = await runner.run()
        servers.cancel_scope.cancel()
    return outcome, recorder.path


def gateway_opener(gateway: Gateway) -> Callable[[trio.Nursery], Opener]:
    """Clients connect to ``gateway`` (with its heartbeat checker running)."""

    def make(nursery: trio.Nursery) -> Opener:
        nursery.start_soon(gateway.run_checker)
        return memory_opener(gateway, nursery)

    return make


def serving(
    server: Callable[[trio.abc.Stream], Awaitable[None]],
) -> Callable[[trio.Nursery], Opener]:
    """An opener whose every connection is served by ``server`` over
    in-memory streams."""

    def make(nursery: trio.Nursery) -> Opener:
        async def open_stream() -> trio.abc.Stream:
            client, server_side = trio.testing.memory_stream_pair()
            nursery.start_soon(server, server_side)
            return client

        return open_stream

    return make


def events(tmp_path: Path) -> list[dict[str, Any]]:
    """The events.jsonl records of the one run under ``tmp_path``."""
    (run_dir,) = tmp_path.iterdir()
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


ONE_CLIENT = """
[run]
label = "one"
report_interval = "10s"
{run_extra}
[clients]
[[clients.stages]]
kind = "ramp"
to = 1
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "{hold}"
[heartbeat]
interval = "1s"
timeout = "1s"
max_missed = 3
phase = "aligned"
[reconnect]
jitter = "none"
initial_delay = "1s"
max_attempts = {attempts}
"""


def one_client(hold: str = "20s", attempts: int = 5, run_extra: str = "") -> str:
    """The body of a one-client profile: 1 s aligned heartbeats, no jitter."""
    return ONE_CLIENT.format(hold=hold, attempts=attempts, run_extra=run_extra)
