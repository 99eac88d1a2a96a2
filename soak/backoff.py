"""Pure reconnect policies: exponential backoff with a choice of jitter.

Jitter variants follow the AWS Architecture Blog post "Exponential Backoff
And Jitter" (Brooker, 2015):

- ``none``:         d = min(cap, initial * base ** (attempt - 1))
- ``full``:         uniform(0, d)
- ``equal``:        d / 2 + uniform(0, d / 2)
- ``decorrelated``: min(cap, uniform(initial, previous * 3))

Without jitter, clients that lost their connections together retry together
at 1, 2, 4, 8 s: the reconnect storm returns at every retry. The random
source is passed in, so a seeded run is reproducible.
"""

from __future__ import annotations

import random

from soak.config.heartbeat import ReconnectConfig


def exponential(cfg: ReconnectConfig, attempt: int) -> float:
    """The un-jittered delay before reconnect attempt ``attempt`` (1-based)."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # cap the exponent first: base ** 1000 overflows a float
    exp = min(attempt - 1, 1000)
    try:
        raw = cfg.initial_delay * cfg.base**exp
    except OverflowError:
        raw = cfg.max_delay
    return min(cfg.max_delay, raw)


def next_delay(
    cfg: ReconnectConfig,
    attempt: int,
    previous: float,
    rng: random.Random,
    server_hint: float | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt``. ``previous`` is the last
    delay used (decorrelated jitter needs it). A server hint (Retry-After,
    retryAfterMs) is a floor: the client never retries sooner than asked."""
    d = exponential(cfg, attempt)
    if cfg.jitter == "full":
        d = rng.uniform(0.0, d)
    elif cfg.jitter == "equal":
        d = d / 2 + rng.uniform(0.0, d / 2)
    elif cfg.jitter == "decorrelated":
        low = cfg.initial_delay
        high = max(low, (previous or low) * 3)
        d = min(cfg.max_delay, rng.uniform(low, high))
    if server_hint is not None:
        d = max(d, server_hint)
    return d


def gave_up(cfg: ReconnectConfig, attempt: int) -> bool:
    """True when attempt number ``attempt`` is beyond ``max_attempts``
    (0 means never give up)."""
    return cfg.max_attempts > 0 and attempt > cfg.max_attempts


# How many refusals marked permanent, with no successful connect between
# them, make the run stop reconnecting.
PERMANENT_AFTER = 3


class Permanence:
    """Run-wide: when is a refusal known to be permanent?

    A server may say that trying again cannot help (OpenClaw: a wrong token,
    a protocol version it does not speak). One such answer could still be a
    fluke (a gateway reloading its configuration), so the clients back off
    as the policy says; ``after`` of them in a row with no successful
    connect between make it known, and from then on no client tries again:
    retrying a wrong token only feeds the gateway's failed-auth limiter.
    Pure: the caller passes the time."""

    def __init__(self, after: int = PERMANENT_AFTER) -> None:
        self.after = after
        self.count = 0  # permanent refusals since the last successful connect
        self.known: str | None = None  # the refusal's message once known
        self.cause: str | None = None
        self.at: float | None = None

    def refused(self, cause: str, message: str, now: float) -> bool:
        """A permanent refusal. True when it becomes known just now."""
        if self.known is not None:
            return False
        self.count += 1
        if self.count < self.after:
            return False
        self.known, self.cause, self.at = message, cause, now
        return True

    def connected(self) -> None:
        """A connect succeeded: earlier refusals were not permanent after all."""
        if self.known is None:
            self.count = 0
