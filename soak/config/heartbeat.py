"""Heartbeats both ways and what follows a lost connection: the client's
``[heartbeat]``, the server's ``[target.server_heartbeat]``, ``[reconnect]``
and ``[storms]``. Plain frozen dataclasses; parsed in soak.config.tables.run
and soak.config.tables.target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from soak.config.kinds import DURATION_PATTERN, Duration, Toml, at_least, one_of

PHASES = ("spread", "aligned", "random", "connect")
JITTERS = ("none", "full", "equal", "decorrelated", "proportional")
HINTS = ("jitter", "floor")
MIN_ONE = Toml({"type": "number", "minimum": 1})
SPREAD = Toml({"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number"}})
DURATION_RANGE = Toml(
    {
        "type": "array",
        "minItems": 2,
        "maxItems": 2,
        "items": {"type": "string", "pattern": DURATION_PATTERN},
    }
)
DURATIONS = Toml(
    {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": DURATION_PATTERN}}
)
# The official clients' reconnect policies, as [reconnect] fields (read in
# their sources, named in docs/profiles.md next to each preset).
# A preset fills the fields a profile leaves out: explicit fields win.
PRESETS: dict[str, dict[str, object]] = {
    # backo2: 1 s x2, at most 5 s, +-50 %, forever
    "socket.io-client": dict(
        initial_delay=1.0,
        base=2.0,
        max_delay=5.0,
        jitter="proportional",
        spread=(-0.5, 0.5),
        max_attempts=0,
    ),
    # randomisedExponentialBackoff: 2^n s + 300-3000 ms, 5 retries
    "graphql-ws": dict(
        initial_delay=1.0,
        base=2.0,
        max_delay=60.0,
        jitter="none",
        add=(0.3, 3.0),
        max_attempts=5,
    ),
    # the legacy client: backo2 100 ms x2, at most 10 s, +-50 %, forever
    "subscriptions-transport-ws": dict(
        initial_delay=0.1,
        base=2.0,
        max_delay=10.0,
        jitter="proportional",
        spread=(-0.5, 0.5),
        max_attempts=0,
    ),
    # reconnectPeriod 1000: every second, no jitter, forever
    "mqtt.js": dict(initial_delay=1.0, base=1.0, max_delay=1.0, jitter="none", max_attempts=0),
    # reconnectAfterMs: a table, then 5 s, no jitter, forever
    "phoenix": dict(
        delays=(0.01, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0),
        initial_delay=0.01,
        max_delay=5.0,
        jitter="none",
        max_attempts=0,
    ),
    # withAutomaticReconnect(): 0, 2, 10, 30 s, then give up
    "signalr": dict(
        delays=(0.0, 2.0, 10.0, 30.0),
        initial_delay=0.0,
        max_delay=30.0,
        jitter="none",
        max_attempts=4,
    ),
    # reconnectDelay 5000, LINEAR: every 5 s, forever
    "stompjs": dict(initial_delay=5.0, base=1.0, max_delay=5.0, jitter="none", max_attempts=0),
    # ConnectionMonitor: 6 s x1.15 (exponent at most 10), + 0-100 % on the
    # first retry, + 0-15 % after
    "actioncable": dict(
        initial_delay=6.0,
        base=1.15,
        max_delay=6.0 * 1.15**10 * 1.15,
        jitter="proportional",
        spread=(0.0, 0.15),
        first_spread=(0.0, 1.0),
        max_attempts=0,
    ),
    # centrifuge-js: min(20 s, 0.5 s + uniform(0, min(20 s, 0.5 s x 2^n)))
    "centrifuge": dict(
        initial_delay=0.5,
        base=2.0,
        max_delay=20.0,
        jitter="full",
        add=(0.5, 0.5),
        max_attempts=0,
    ),
    # pusher-js: retryIn(1000) after a lost connection and after a 4100-4199
    # close, every time, no jitter, forever (4200-4299 and a pong timeout:
    # retryIn(0); 4000-4099: no retry at all)
    "pusher-js": dict(initial_delay=1.0, base=1.0, max_delay=1.0, jitter="none", max_attempts=0),
    # nats.js: reconnectTimeWait 2 s + up to reconnectJitter 100 ms (1 s
    # with TLS), maxReconnectAttempts 10
    "nats.js": dict(
        initial_delay=2.0,
        base=1.0,
        max_delay=2.0,
        jitter="none",
        add=(0.0, 0.1),
        max_attempts=10,
    ),
    # the OpenClaw Gateway's own client: 1 s x2, at most 30 s, no jitter
    "openclaw": dict(initial_delay=1.0, base=2.0, max_delay=30.0, jitter="none", max_attempts=0),
}
PRESET_NAMES = tuple(PRESETS)


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
    """[reconnect]: how a client reconnects after a lost connection
    (soak.backoff; ``preset`` fills what the profile leaves out)."""

    enabled: bool = True
    initial_delay: Duration = 1.0
    base: Annotated[float, MIN_ONE] = 2.0
    max_delay: Duration = 60.0
    max_attempts: Annotated[int, at_least(0)] = 5  # 0 means no limit
    jitter: Annotated[str, one_of(JITTERS)] = "full"
    preset: Annotated[str | None, one_of(PRESET_NAMES)] = None  # an official client's policy
    # jitter = "proportional": the delay times 1 + a random fraction in this range
    spread: Annotated[tuple[float, ...], SPREAD] = (-0.5, 0.5)
    first_spread: Annotated[tuple[float, ...] | None, SPREAD] = None  # the first retry's, if other
    # seconds added at random (a range) after the jitter
    add: Annotated[tuple[float, ...], DURATION_RANGE] = (0.0, 0.0)
    # a table of delays by attempt (the last repeats), instead of initial_delay x base
    delays: Annotated[tuple[float, ...], DURATIONS] = ()
    # a server's restart hint: the floor of the delay, or where the delay starts
    hint: Annotated[str, one_of(HINTS)] = "jitter"


@dataclass(frozen=True)
class StormConfig:
    """[storms]: when lost connections make a reconnect storm (soak.storm)."""

    min_losses: Annotated[int, at_least(2)] = 10  # at least this many losses ...
    window: Duration = 1.0  # ... within this many seconds start a storm
    quiet: Duration = 10.0  # a storm nothing happens in for this long is over
