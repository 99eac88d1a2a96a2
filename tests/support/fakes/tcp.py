"""A fake server on a real socket (127.0.0.1, a port the kernel picks), in
its own thread with its own trio loop, for runs through the CLI."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

import trio

from tests.support.fakes.wsfake import FakeServer

START_TIMEOUT = 10.0  # seconds for the listener to come up


@contextlib.contextmanager
def served(server: FakeServer) -> Iterator[int]:
    """Serve ``server`` on 127.0.0.1; yields the port, stops on exit."""
    ready = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, server.serve, 0, host="127.0.0.1")
            )
            box["port"] = listeners[0].socket.getsockname()[1]
            box["token"] = trio.lowlevel.current_trio_token()
            box["cancel"] = nursery.cancel_scope.cancel
            ready.set()

    def thread() -> None:
        try:
            trio.run(main)
        finally:
            ready.set()

    worker = threading.Thread(target=thread, daemon=True)
    worker.start()
    if not ready.wait(START_TIMEOUT) or "port" not in box:
        raise RuntimeError("the fake server did not start")
    try:
        yield int(box["port"])  # type: ignore[call-overload]
    finally:
        token = box["token"]
        assert isinstance(token, trio.lowlevel.TrioToken)
        cancel = box["cancel"]
        token.run_sync_soon(cancel)  # type: ignore[arg-type]
        worker.join(START_TIMEOUT)
