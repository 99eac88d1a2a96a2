"""Pure reconnect policies: exponential backoff with a choice of jitter.

Jitter variants follow the AWS Architecture Blog post "Exponential Backoff
And Jitter" (Brooker, 2015), plus the official WebSocket clients' own:

- ``none``:         d = min(cap, initial * base ** (attempt - 1))
- ``full``:         uniform(0, d)
- ``equal``:        d / 2 + uniform(0, d / 2)
- ``decorrelated``: min(cap, uniform(initial, previous * 3))
- ``proportional``: min(cap, raw * (1 + uniform(lo, hi))), ``spread = [lo,
  hi]`` (socket.io-client's randomizationFactor 0.5 is [-0.5, 0.5]; the cap
  comes after the jitter, as backo2 does it; ``first_spread`` for the first
  retry, ActionCable's [0, 1])

then ``add = [lo, hi]`` seconds at random on top (graphql-ws's 300-3000 ms),
capped again. ``delays`` replaces initial * base ** n by a table (Phoenix,
SignalR; the last entry repeats). A preset ([reconnect] preset) is these
fields as an official client sets them (soak.config.heartbeat.PRESETS).

Without jitter, clients that lost their connections together retry together
at 1, 2, 4, 8 s: the reconnect storm returns at every retry. The random
source is passed in, so a seeded run is reproducible.

A server's restart hint (Retry-After, retryAfterMs, restartExpectedMs) is
honoured either way: the client never retries sooner. ``hint = "floor"``
makes it the delay's floor, so every draw shorter than the hint becomes the
hint itself and a full-jitter policy retries all at once, exactly then;
``hint = "jitter"`` (the default) waits the hint and then the policy's own
delay, so the retries spread over the policy's jitter after the hint.
"""

from __future__ import annotations

import random

from soak.config.heartbeat import ReconnectConfig


def _raw(cfg: ReconnectConfig, attempt: int) -> float:
    """The delay before jitter and cap: the table's, or initial * base ** n."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if cfg.delays:
        return cfg.delays[min(attempt, len(cfg.delays)) - 1]
    # cap the exponent first: base ** 1000 overflows a float
    exp = min(attempt - 1, 1000)
    try:
        return float(cfg.initial_delay * cfg.base**exp)
    except OverflowError:
        return float("inf")


def exponential(cfg: ReconnectConfig, attempt: int) -> float:
    """The un-jittered delay before reconnect attempt ``attempt`` (1-based)."""
    return min(cfg.max_delay, _raw(cfg, attempt))


def policy_delay(cfg: ReconnectConfig, attempt: int, previous: float, rng: random.Random) -> float:
    """The policy's own delay before attempt ``attempt``, jitter included."""
    d = exponential(cfg, attempt)
    jitter = cfg.jitter
    if jitter == "full":
        d = rng.uniform(0.0, d)
    elif jitter == "equal":
        d = d / 2 + rng.uniform(0.0, d / 2)
    elif jitter == "decorrelated":
        low = cfg.initial_delay
        high = max(low, (previous or low) * 3)
        d = min(cfg.max_delay, rng.uniform(low, high))
    elif jitter == "proportional":
        lo, hi = cfg.first_spread if attempt == 1 and cfg.first_spread else cfg.spread
        raw = _raw(cfg, attempt)
        d = min(cfg.max_delay, raw * (1.0 + rng.uniform(lo, hi))) if raw < float("inf") else d
    lo, hi = cfg.add
    if hi > 0:
        d = min(cfg.max_delay, d + (lo if lo == hi else rng.uniform(lo, hi)))
    return d


def next_delay(
    cfg: ReconnectConfig,
    attempt: int,
    previous: float,
    rng: random.Random,
    server_hint: float | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt``. ``previous`` is the last
    delay used (decorrelated jitter needs it). A server hint (Retry-After,
    retryAfterMs) is honoured as ``cfg.hint`` says (see the module)."""
    d = policy_delay(cfg, attempt, previous, rng)
    if server_hint is not None:
        if cfg.hint == "floor":
            return max(d, server_hint)
        return server_hint + d
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
