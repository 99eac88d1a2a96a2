from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import trio.testing

from soak.gateway import Gateway
from soak.profile import Profile, parse_profile


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
        from soak.profile import override

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
