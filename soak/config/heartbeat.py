"""Heartbeats both ways and what follows a lost connection: the client's
``[heartbeat]``, the server's ``[target.server_heartbeat]``, ``[reconnect]``
and ``[storms]``. Plain frozen dataclasses; parsed in soak.config.tables.run
and soak.config.tables.target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from soak.config.kinds import Duration, Toml, at_least, one_of

PHASES = ("spread", "aligned", "random", "connect")
JITTERS = ("none", "full", "equal", "decorrelated")
MIN_ONE = Toml({"type": "number", "minimum": 1})


@dataclass(frozen=True)
class HeartbeatConfig:
    """[heartbeat]: the clients' own heartbeat."""

    interval: Duration = 30.0
    timeout: Duration = 10.0
    max_missed: Annotated[int, at_least(1)] = 3
    phase: Annotated[str, one_of(PHASES)] = "spread"
    # the kernel's receive time of each pong (SO_TIMESTAMPNS): rtt_wire and
    # rx_delay beside rtt and rtt_service (soak.wire); plain TCP on Linux
    kernel_timestamps: bool = False


@dataclass(frozen=True)
class ServerHeartbeat:
    """What the server does about heartbeats, as far as we know it. With it,
    a server close that matches the heartbeat-timeout signature is judged
    against the client's evidence: a false or a justified timeout."""

    interval: Duration = 30.0
    timeout: Duration = 120.0
    max_missed: Annotated[int, at_least(1)] = 3
    # the signature of the server's heartbeat-timeout close; any match counts
    close_codes: tuple[int, ...] = (4000,)
    reason_pattern: str = "heartbeat"  # a regular expression, case-insensitive
    abrupt_after: Duration | None = None  # an abrupt close (1006) this long after the last pong
    abrupt_tolerance: Duration = 5.0
    # an abrupt close at 2, 3, ... times this after the connection was ready:
    # a server whose per-connection ping timer terminates the socket (OpenClaw)
    abrupt_period: Duration | None = None


@dataclass(frozen=True)
class ReconnectConfig:
    """[reconnect]: how a client reconnects after a lost connection."""

    enabled: bool = True
    initial_delay: Duration = 1.0
    base: Annotated[float, MIN_ONE] = 2.0
    max_delay: Duration = 60.0
    max_attempts: Annotated[int, at_least(0)] = 5  # 0 means no limit
    jitter: Annotated[str, one_of(JITTERS)] = "full"


@dataclass(frozen=True)
class StormConfig:
    """[storms]: when lost connections make a reconnect storm (soak.storm)."""

    min_losses: Annotated[int, at_least(2)] = 10  # at least this many losses ...
    window: Duration = 1.0  # ... within this many seconds start a storm
    quiet: Duration = 10.0  # a storm nothing happens in for this long is over
