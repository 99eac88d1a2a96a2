"""Real servers of the heartbeat dialects, on loopback: for the tests, and
for a user who wants to try a dialect in a minute (``soak server NAME``).

Each :class:`Recipe` says what to install (npm packages, installed once into
a cache outside the repository, or a Debian package's binary), how to start
the server on ``127.0.0.1`` and a given port, and the URL a profile points
at. :func:`start` installs what is missing, starts it, waits (bounded) until
it accepts connections, checks with ``ss`` that it listens on loopback only,
and stops it by its PID when the ``with`` block ends.

One module per server family adds its recipes to :data:`RECIPES`
(``soak.servers.node`` for the npm ones, ``soak.servers.debian``).
"""

from __future__ import annotations

from soak.servers.base import (
    LOOPBACK,
    RealServer,
    Recipe,
    ServerUnavailable,
    cache_dir,
    start,
)
from soak.servers.registry import RECIPES, recipe

__all__ = [
    "LOOPBACK",
    "RECIPES",
    "RealServer",
    "Recipe",
    "ServerUnavailable",
    "cache_dir",
    "recipe",
    "start",
]
