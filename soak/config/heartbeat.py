"""Heartbeats both ways and what follows a lost connection: the client's
``[heartbeat]``, the server's ``[target.server_heartbeat]``, ``[reconnect]``
and ``[storms]``. Plain frozen dataclasses; parsed in soak.config.tables.run
and soak.config.tables.target."""

from __future__ import annotations

from dataclasses import dataclass

PHASES = ("spread", "aligned", "random", "connect")
JITTERS = ("none", "full", "equal", "decorrelated")


@dataclass(frozen=True)
class HeartbeatConfig:
    interval: float = 30.0
    timeout: float = 10.0
    max_missed: int = 3
    phase: str = "spread"


@dataclass(frozen=True)
class ServerHeartbeat:
    """What the server does about heartbeats, as far as we know it. With it,
    a server close that matches the heartbeat-timeout signature is judged
    against the client's evidence: a false or a justified timeout."""

    interval: float = 30.0
    timeout: float = 120.0
    max_missed: int = 3
    # the signature of the server's heartbeat-timeout close; any match counts
    close_codes: tuple[int, ...] = (4000,)
    reason_pattern: str = "heartbeat"  # a regular expression, case-insensitive
    abrupt_after: float | None = None  # an abrupt close (1006) this long after the last pong
    abrupt_tolerance: float = 5.0
    # an abrupt close at 2, 3, ... times this after the connection was ready:
    # a server whose per-connection ping timer terminates the socket (OpenClaw)
    abrupt_period: float | None = None


@dataclass(frozen=True)
class ReconnectConfig:
    enabled: bool = True
    initial_delay: float = 1.0
    base: float = 2.0
    max_delay: float = 60.0
    max_attempts: int = 5  # 0 means no limit
    jitter: str = "full"


@dataclass(frozen=True)
class StormConfig:
    """[storms]: when lost connections make a reconnect storm (soak.storm)."""

    min_losses: int = 10  # at least this many losses ...
    window: float = 1.0  # ... within this many seconds start a storm
    quiet: float = 10.0  # a storm nothing happens in for this long is over
