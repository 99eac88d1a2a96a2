"""Server-side heartbeat bookkeeping for the reference gateway, sans-IO.

No trio, no clock: every method takes ``now`` (seconds, any monotonic origin),
so tests drive it with plain numbers, as wsproto's tests drive its protocol
objects with plain bytes.

The incident this tool exists for (see docs/design.md) was a gateway whose timeout
handler ignored ``maxMissed`` and closed every client whose last heartbeat was
older than ``timeout``. The rule implemented here is the fixed one: a
connection expires only when BOTH

    now - last_beat >= timeout
    floor((now - last_beat) / interval) >= max_missed

hold, so the timeout never fires before ``max_missed`` heartbeats were missed.
The rule lives in one method, :meth:`HeartbeatManager.should_expire`, the seam
for :class:`IncidentHeartbeatManager`, which replays the incident: it drops the
second condition and expires on ``now - last_beat > timeout`` alone (the
2026.04 ``handleTimeout``). Whatever the subclass does,
:meth:`HeartbeatManager.fixed_rule` still answers "would the FIXED rule expire
this age?", which the gateway's ground-truth log needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ConnId = int


@dataclass(frozen=True, slots=True)
class Expiry:
    """One connection that :meth:`HeartbeatManager.expired` found dead."""

    conn_id: ConnId
    last_beat_age: float
    missed: int


class HeartbeatManager:
    """Last-heartbeat time per connection, and the rule that expires them.

    ``expired`` is a plain scan of a dict. For 20,000 connections checked every
    few seconds that is about a millisecond of arithmetic; a heap or sorted
    structure would make every ``beat`` (thousands per second, the hot path)
    pay for a check that runs rarely.
    """

    __slots__ = ("_last_beat", "interval", "max_missed", "timeout")

    def __init__(self, interval: float, timeout: float, max_missed: int) -> None:
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"interval: expected a finite number > 0, got {interval!r}")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout: expected a finite number > 0, got {timeout!r}")
        if max_missed < 1:
            raise ValueError(f"max_missed: expected an integer >= 1, got {max_missed!r}")
        self.interval = float(interval)
        self.timeout = float(timeout)
        self.max_missed = int(max_missed)
        self._last_beat: dict[ConnId, float] = {}

    def __len__(self) -> int:
        return len(self._last_beat)

    def __contains__(self, conn_id: object) -> bool:
        return conn_id in self._last_beat

    def add(self, conn_id: ConnId, now: float) -> None:
        """Start tracking a connection. Opening it counts as its first heartbeat."""
        self._last_beat[conn_id] = now

    def beat(self, conn_id: ConnId, now: float) -> bool:
        """Record a heartbeat. Returns False (and changes nothing) for an unknown id.

        Unknown ids are ignored rather than added: a connection that was just
        expired and removed may still deliver a heartbeat that was already in
        flight, and re-adding it would leak an entry nobody removes.
        """
        last_beat = self._last_beat
        if conn_id in last_beat:
            last_beat[conn_id] = now
            return True
        return False

    def remove(self, conn_id: ConnId) -> float | None:
        """Stop tracking a connection; returns its last-beat time, or None
        (and changes nothing) for an unknown id."""
        return self._last_beat.pop(conn_id, None)

    def last_beat(self, conn_id: ConnId) -> float | None:
        """When the connection's last heartbeat was recorded; None if untracked."""
        return self._last_beat.get(conn_id)

    def missed(self, age: float) -> int:
        """Whole heartbeat intervals that fit in ``age``: floor(age / interval)."""
        return math.floor(age / self.interval)

    def should_expire(self, age: float, missed: int) -> bool:
        """The expiry rule (the fixed one): timeout passed AND max_missed missed."""
        return age >= self.timeout and missed >= self.max_missed

    def fixed_rule(self, age: float) -> bool:
        """Would the FIXED rule expire a connection silent for ``age``?

        Not overridden by :class:`IncidentHeartbeatManager`: it is the yardstick
        for "was this client truly alive when it was closed".
        """
        return age >= self.timeout and self.missed(age) >= self.max_missed

    def expired(self, now: float) -> list[Expiry]:
        """Connections that are expired at ``now``, in insertion order.

        This is a query: it does not remove them. The caller removes each one
        when it acts on it, so a connection is reported until it is handled.
        """
        timeout = self.timeout
        found: list[Expiry] = []
        for conn_id, last in self._last_beat.items():
            age = now - last
            # Fast path: almost every connection is fresh, and no rule may
            # expire a connection before its timeout, so skip the division.
            if age < timeout:
                continue
            missed = self.missed(age)
            if self.should_expire(age, missed):
                found.append(Expiry(conn_id, age, missed))
        return found


class IncidentHeartbeatManager(HeartbeatManager):
    """The incident's rule: expire once ``age > timeout``, whatever the missed count.

    The ``ignore-max-missed`` bug. With ``timeout >= interval * max_missed`` it
    behaves like the fixed rule (up to the ``>`` at the boundary); with a
    tighter timeout it kills clients that were merely late or missed one
    heartbeat.
    """

    __slots__ = ()

    def should_expire(self, age: float, missed: int) -> bool:
        return age > self.timeout
