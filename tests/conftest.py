"""Fixtures shared by the test modules. Helpers live in tests/support/;
test modules import from there, never from one another or from here.

The ``process`` marker (registered in pyproject.toml) tags tests that start
child processes, talk over real sockets or real time to a real server, or
open Chromium; ``make test-fast`` runs the rest (see tests/README.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from tests.support.wsclient import watchdog


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for server tasks (the gateway's, say), cancelled after the
    test, with a watchdog: a deadlock under the autojump clock fails after a
    virtual day instead of hanging."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watchdog)
        yield nursery
        nursery.cancel_scope.cancel()
