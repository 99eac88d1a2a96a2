"""The incident's bugs, as fault modes the reference gateway can switch on.

Each bug is a small frozen value; :data:`Bug` is their union. They are parsed
from the strings ``soak gateway --bug`` takes (:func:`parse_bug`) and printed
back in that form (``bug.cli``), so ``parse_bug(bug.cli) == bug``.

``ignore-max-missed``
    The 2026.04 ``handleTimeout``: close a connection as soon as the time since
    its last heartbeat is ``> timeout``, without looking at the missed count.
    It differs from the fixed rule only when ``timeout < interval * max_missed``.
    See :class:`soak.gateway.heartbeat.IncidentHeartbeatManager`.

``stale-session``
    Heartbeat state is kept per ``clientId`` and never cleaned up. The first
    connection whose JSON ping carries a clientId owns that client's session.
    A later connection with the same clientId (a reconnect) is attached to the
    old session: it inherits the old connection's last-beat time, and its own
    heartbeats are recorded against the old connection's id. Once the old
    connection is closed that id is no longer tracked, so the recording is a
    no-op (the heartbeat manager ignores unknown ids) and the new connection's
    last beat stays frozen at the old one's. It is closed for heartbeat timeout
    at the first check after the expiry rule fires for that OLD last beat,
    although it has been heartbeating all along. Two ways that plays out:

    - the old connection was expired (it really was silent), the client
      reconnects within seconds: the inherited last beat is already older than
      the timeout, so the new connection dies at the very next check, "last
      pong: 2s ago". Every later reconnect inherits the same stale beat and dies
      the same way: the client is locked out.
    - the client closed and reconnected at once (churn): the new connection
      dies one timeout after the old connection's last beat.

    If the old connection is still open (a half-open zombie the client gave up
    on), the new connection's heartbeats keep the OLD one alive instead: the
    server's online count drifts up while the live connection is killed.

``no-pong RATE``
    The gateway stops answering the heartbeats (JSON pings and RFC 6455 pings)
    of a fraction RATE of connections, while it keeps reading from them and
    keeps counting their heartbeats, so it never times them out itself: they
    become zombies. Server-initiated pings (``server_ping_interval``) still go
    out. Which connections: connection number k (1-based, in the order the
    WebSocket connections opened) is affected when
    ``floor(k * RATE) > floor((k - 1) * RATE)``, computed exactly on the
    decimal RATE, so ``no-pong 0.1`` affects exactly connections 10, 20, 30...

``drop-heartbeat N``
    The gateway ignores exactly the N-th heartbeat (JSON ping, RFC 6455 ping or
    pong) of each connection: it neither answers it nor counts it as a beat.
    (It still notes a JSON ping's clientId, so the truth log can name the
    client; with ``stale-session`` that is also when a session is attached.)
    The fixed gateway survives that; the incident's gateway with a timeout
    shorter than two intervals does not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import ClassVar, TypeAlias

from soak.config.validation import nearest
from soak.errors import LocalError


@dataclass(frozen=True, slots=True)
class IgnoreMaxMissed:
    """Expire on ``age > timeout`` alone (the incident's ``handleTimeout``)."""

    name: ClassVar[str] = "ignore-max-missed"

    @property
    def cli(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class StaleSession:
    """A reconnecting clientId inherits the old connection's heartbeat state."""

    name: ClassVar[str] = "stale-session"

    @property
    def cli(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class NoPong:
    """Do not answer the heartbeats of a deterministic fraction of connections."""

    name: ClassVar[str] = "no-pong"
    rate: float
    _exact: Fraction = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rate = self.rate
        if isinstance(rate, bool) or not (
            isinstance(rate, int | float) and math.isfinite(rate) and 0 < rate <= 1
        ):
            raise LocalError(
                f"gateway: bug no-pong: RATE: expected a number in (0, 1], got {rate!r}"
            )
        # The shortest decimal that round-trips (what the user typed), exactly:
        # 10 * 0.1 must be 1, which in binary floating point it is not always.
        object.__setattr__(self, "_exact", Fraction(repr(float(rate))))

    @property
    def cli(self) -> str:
        return f"{self.name} {float(self.rate)!r}"

    def affects(self, number: int) -> bool:
        """Is connection ``number`` (1-based, in opening order) affected?"""
        num, den = self._exact.numerator, self._exact.denominator
        return number * num // den > (number - 1) * num // den


@dataclass(frozen=True, slots=True)
class DropHeartbeat:
    """Ignore exactly the ``n``-th heartbeat of every connection."""

    name: ClassVar[str] = "drop-heartbeat"
    n: int

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise LocalError(
                f"gateway: bug drop-heartbeat: N: expected an integer >= 1, got {self.n!r}"
            )

    @property
    def cli(self) -> str:
        return f"{self.name} {self.n}"


Bug: TypeAlias = IgnoreMaxMissed | StaleSession | NoPong | DropHeartbeat
BUG_TYPES: tuple[type[Bug], ...] = (IgnoreMaxMissed, StaleSession, NoPong, DropHeartbeat)

# Name -> (argument metavar or None, what the argument is).
_USAGE: dict[str, tuple[str | None, str]] = {
    IgnoreMaxMissed.name: (None, ""),
    StaleSession.name: (None, ""),
    NoPong.name: ("RATE", "the fraction of connections to affect, a number in (0, 1]"),
    DropHeartbeat.name: ("N", "which heartbeat of each connection to drop, an integer >= 1"),
}
KNOWN = ", ".join(name if arg is None else f"{name} {arg}" for name, (arg, _) in _USAGE.items())

_DECIMAL = re.compile(r"[+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def parse_bug(text: str) -> Bug:
    """A bug from its CLI form: ``"ignore-max-missed"``, ``"no-pong 0.1"``,
    ``"drop-heartbeat 1"`` (``NAME=ARG`` works too).

    Raises :class:`LocalError` naming the bug and what was expected.
    """
    words = text.replace("=", " ").split()
    if not words:
        raise LocalError(f"gateway: bug: expected one of {KNOWN}, got {text!r}")
    name, args = words[0], words[1:]
    if name not in _USAGE:
        close = nearest(name.lower().replace("_", "-"), _USAGE, cutoff=0.6)
        hint = f"; did you mean {close!r}?" if close else ""
        raise LocalError(f"gateway: bug {text!r}: unknown bug {name!r}{hint} (known: {KNOWN})")
    metavar, meaning = _USAGE[name]
    if metavar is None:
        if args:
            raise LocalError(f"gateway: bug {text!r}: {name} takes no argument, got {args[0]!r}")
        return IgnoreMaxMissed() if name == IgnoreMaxMissed.name else StaleSession()
    if not args:
        example = f"{name} {'0.1' if name == NoPong.name else '1'}"
        raise LocalError(
            f"gateway: bug {text!r}: {name} needs {metavar}, {meaning} (e.g. {example!r})"
        )
    if len(args) > 1:
        raise LocalError(
            f"gateway: bug {text!r}: {name} takes one argument, {metavar}, got {len(args)}"
        )
    arg = args[0]
    if name == NoPong.name:
        rate = float(arg) if _DECIMAL.fullmatch(arg) else math.nan
        if not 0 < rate <= 1:
            raise LocalError(f"gateway: bug {text!r}: {metavar}: expected {meaning}, got {arg!r}")
        return NoPong(rate)
    if not arg.isdecimal() or int(arg) < 1:
        raise LocalError(f"gateway: bug {text!r}: {metavar}: expected {meaning}, got {arg!r}")
    return DropHeartbeat(int(arg))


def parse_bugs(texts: Iterable[str]) -> tuple[Bug, ...]:
    """Parse each of ``texts`` (e.g. the repeated ``--bug`` values)."""
    return tuple(parse_bug(text) for text in texts)


def check_bugs(bugs: Sequence[object]) -> None:
    """Each item must be a :data:`Bug`, and each kind may appear once."""
    seen: dict[str, str] = {}
    for bug in bugs:
        if not isinstance(bug, BUG_TYPES):
            raise LocalError(
                f"gateway: bugs: expected bug values (see soak.gateway.bugs.parse_bug), got {bug!r}"
            )
        if bug.name in seen:
            raise LocalError(
                f"gateway: bugs: {bug.name} given twice ({seen[bug.name]!r} and "
                f"{bug.cli!r}); expected each bug at most once"
            )
        seen[bug.name] = bug.cli


def cli_forms(bugs: Iterable[Bug]) -> list[str]:
    """The bugs as ``--bug`` values, e.g. ``["ignore-max-missed", "no-pong 0.1"]``."""
    return [bug.cli for bug in bugs]


__all__ = [
    "BUG_TYPES",
    "KNOWN",
    "Bug",
    "DropHeartbeat",
    "IgnoreMaxMissed",
    "NoPong",
    "StaleSession",
    "check_bugs",
    "cli_forms",
    "parse_bug",
    "parse_bugs",
]
