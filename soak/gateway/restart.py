"""A simulated gateway restart, as its clients see one: the outage state.

:meth:`soak.gateway.server.Gateway.restart` (also ``POST /admin/restart``
and SIGUSR2) closes every client with 1012 "service restart" and, for the
outage, refuses new requests with HTTP 503 and ``Retry-After``. This module
holds the part of that with no I/O: until when requests are refused, and the
503 they get. Sans-IO like :mod:`soak.gateway.heartbeat`: every method takes
``now`` (Trio time, seconds), so tests drive it with plain numbers.
"""

from __future__ import annotations

import math

from soak.gateway.http import response

# What a real gateway restart looks like to its clients.
SERVICE_RESTART = "service_restart"
SERVICE_RESTART_CODE = 1012  # RFC 6455 / IANA: "Service Restart"
SERVICE_RESTART_REASON = "service restart"


class Outage:
    """Until when new connections are refused, after one or more restarts."""

    __slots__ = ("until",)

    def __init__(self) -> None:
        # -inf: no restart yet. Kept after an outage ends (refusing() is then False).
        self.until = -math.inf

    def begin(self, now: float, seconds: float) -> None:
        """A restart at ``now`` refuses requests for ``seconds``; one during
        an outage extends it if it ends later, and never shortens it."""
        self.until = max(self.until, now + seconds)

    @property
    def begun(self) -> bool:
        """True once a restart has begun an outage (over or not)."""
        return self.until != -math.inf

    def refusing(self, now: float) -> bool:
        """True while an outage lasts at ``now``."""
        return now < self.until

    def remaining(self, now: float) -> float | None:
        """Seconds the current outage has left (rounded to ms), or None if
        there is none."""
        if not self.begun:
            return None
        left = self.until - now
        return round(left, 3) if left > 0 else None

    def refusal(self, now: float) -> bytes:
        """The 503 that a request gets during the outage; ``Retry-After`` is
        the whole seconds left, at least 1."""
        retry_after = max(1, math.ceil(self.until - now))
        return response(
            503, b"service restarting\n", headers=[(b"Retry-After", b"%d" % retry_after)]
        )


__all__ = ["SERVICE_RESTART", "SERVICE_RESTART_CODE", "SERVICE_RESTART_REASON", "Outage"]
