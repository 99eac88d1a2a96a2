from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import trio.testing

from soak.gateway import Gateway
from soak.profile import Profile, override, parse_profile
from soak.recorder import Recorder
from soak.runner import Outcome, Runner


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


WALL0 = 1_790_000_000.0  # a fixed wall clock for runs under MockClock
Opener = Callable[[], Awaitable[trio.abc.Stream]]


async def run_in_memory(
    profile: Profile,
    tmp_path: Path,
    make_opener: Callable[[trio.Nursery], Opener],
    during: Callable[[Runner], Awaitable[None]] | None = None,
) -> tuple[Outcome, Path]:
    """Run a profile with no sockets: ``make_opener`` gets the nursery where
    servers live and returns how each client opens its stream."""
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


CHROMIUM = Path("/usr/bin/chromium")


def open_in_chromium(page: Path) -> str:
    """Open a page from disk in headless Chromium and return the DOM after
    load, with ``data-images`` (how many) and ``data-bad`` (how many failed to
    decode: naturalWidth 0) set on <body> by an injected script."""
    import subprocess

    probe = page.with_name("probe.html")
    probe.write_text(
        page.read_text().replace(
            "</body>",
            "<script>window.onload=()=>{const bad=[...document.images]"
            ".filter(i=>!i.complete||i.naturalWidth===0).length;"
            "document.body.setAttribute('data-bad', String(bad));"
            "document.body.setAttribute('data-images', String(document.images.length));};"
            "</script></body>",
        )
    )
    out = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout
