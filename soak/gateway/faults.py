"""The incident's bugs at work: one object the gateway asks what they do.

:mod:`soak.gateway.bugs` says which bugs are enabled (``--bug``); this module
is what they do to connections, in one place. The gateway asks
:class:`Faults` at four moments of a connection's life, and nowhere else:

- :meth:`Faults.heartbeat_manager`, once: ``ignore-max-missed`` swaps the
  expiry rule for the incident's.
- :meth:`Faults.on_open`: marks the connection for the bugs that apply to
  it (``no-pong`` mutes a chosen fraction of connections).
- :meth:`Faults.on_heartbeat`, for every heartbeat of a marked connection
  (a JSON ping, an RFC 6455 ping or pong): :data:`ANSWER`, :data:`WITHHOLD`
  (count it, do not answer) or :data:`DROP` (ignore it entirely).
- :meth:`Faults.on_identified` and :meth:`Faults.on_untracked`: the
  ``stale-session`` table of clientIds, which outlives connections.

Sans-IO, like :mod:`soak.gateway.heartbeat`: no trio, no clock; times are
plain numbers, so tests drive it without a connection or a socket.

With no bug enabled, a heartbeat costs what it did before bugs existed: the
pump tests one attribute (``conn.tamper``, set by :meth:`Faults.on_open`)
and never calls :meth:`Faults.on_heartbeat`; the session table does not
exist. ``drop-heartbeat`` clears ``tamper`` once its N-th heartbeat is past,
so even that bug stops costing anything for the rest of the connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, Protocol, TypeAlias

from soak.gateway.bugs import Bug, DropHeartbeat, IgnoreMaxMissed, NoPong, StaleSession, check_bugs
from soak.gateway.counters import Counters
from soak.gateway.heartbeat import HeartbeatManager, IncidentHeartbeatManager

# What to do with one heartbeat (on_heartbeat's answer).
Action: TypeAlias = Literal[0, 1, 2]
ANSWER: Final = 0
"""Handle it normally: record the beat, and answer a ping."""
WITHHOLD: Final = 1
"""Record the beat but send no answer (``no-pong``)."""
DROP: Final = 2
"""Neither record it nor answer it (``drop-heartbeat``)."""


class FaultTarget(Protocol):
    """What the faults read and write of a connection
    (:class:`soak.gateway.connections.Conn` in the gateway)."""

    conn_id: int
    """1-based, in the order WebSocket connections opened."""
    beat_key: int
    """The id its heartbeats are recorded against (stale-session changes it)."""
    client_id: str | int | None
    tamper: bool
    """True while a bug may alter its heartbeats: only then is on_heartbeat asked."""
    muted: bool
    """no-pong: its heartbeats are counted but not answered."""
    beats_seen: int
    """drop-heartbeat: heartbeats seen so far (counted only while tampering)."""


class _Session:
    """stale-session: one clientId's heartbeat state, never cleaned up.

    ``owner`` is the first connection that carried the clientId; its beats are
    the session's. ``last_beat`` is the owner's last beat, kept when the
    heartbeat manager stopped tracking the owner.
    """

    __slots__ = ("last_beat", "owner")

    def __init__(self, owner: int) -> None:
        self.owner = owner
        self.last_beat: float | None = None


class Faults:
    """The enabled bugs (a validated sequence of :data:`soak.gateway.bugs.Bug`).

    What they do is counted in ``counters`` (``heartbeats_dropped``,
    ``stale_sessions_inherited``). Raises :class:`soak.errors.LocalError`
    (one line, naming the value) for anything but bug values, or a bug given
    twice.
    """

    __slots__ = ("_counters", "_drop_nth", "_incident_rule", "_no_pong", "_sessions")

    def __init__(self, bugs: Sequence[Bug], counters: Counters) -> None:
        check_bugs(bugs)
        self._counters = counters
        self._incident_rule = False
        self._no_pong: NoPong | None = None
        self._drop_nth = 0
        # stale-session only: clientId -> the session it inherits.
        self._sessions: dict[str | int, _Session] | None = None
        for bug in bugs:
            if isinstance(bug, IgnoreMaxMissed):
                self._incident_rule = True
            elif isinstance(bug, NoPong):
                self._no_pong = bug
            elif isinstance(bug, DropHeartbeat):
                self._drop_nth = bug.n
            elif isinstance(bug, StaleSession):
                self._sessions = {}

    def heartbeat_manager(
        self, interval: float, timeout: float, max_missed: int
    ) -> HeartbeatManager:
        """The heartbeat manager to expire connections with: the incident's
        rule with ``ignore-max-missed``, else the fixed one."""
        manager = IncidentHeartbeatManager if self._incident_rule else HeartbeatManager
        return manager(interval, timeout, max_missed)

    def on_open(self, conn: FaultTarget) -> None:
        """Mark a connection that just opened for the bugs that apply to it."""
        if self._no_pong is not None and self._no_pong.affects(conn.conn_id):
            conn.muted = True
        conn.tamper = conn.muted or self._drop_nth > 0

    def on_heartbeat(self, conn: FaultTarget) -> Action:
        """What the bugs do to this heartbeat of ``conn`` (one with ``tamper``
        set): :data:`DROP` for drop-heartbeat's N-th, :data:`WITHHOLD` for a
        no-pong connection, else :data:`ANSWER`."""
        drop_nth = self._drop_nth
        if drop_nth:
            conn.beats_seen += 1
            if conn.beats_seen >= drop_nth:
                conn.tamper = conn.muted  # past the N-th: only no-pong may still apply
                if conn.beats_seen == drop_nth:
                    self._counters.heartbeats_dropped += 1
                    return DROP
        return WITHHOLD if conn.muted else ANSWER

    def on_identified(
        self, conn: FaultTarget, client_id: str | int, heartbeats: HeartbeatManager
    ) -> None:
        """``conn`` just named its client (its first JSON ping with a
        clientId). With stale-session, a clientId that an earlier connection
        carried attaches ``conn`` to that connection's session: it inherits
        the session's last beat, and its beats are recorded against the
        owner's id from then on (``conn.beat_key``)."""
        sessions = self._sessions
        if sessions is None:
            return
        session = sessions.get(client_id)
        if session is None:
            sessions[client_id] = _Session(conn.conn_id)
            return
        if session.owner == conn.conn_id or conn.conn_id not in heartbeats:
            return
        inherited = heartbeats.last_beat(session.owner)
        if inherited is None:
            inherited = session.last_beat
        if inherited is None:
            return
        # The bug: the new connection takes over the old session's heartbeat
        # state, and its beats go on being recorded against the old id.
        heartbeats.add(conn.conn_id, inherited)
        conn.beat_key = session.owner
        self._counters.stale_sessions_inherited += 1

    def on_untracked(self, conn: FaultTarget | None, last_beat: float) -> None:
        """The heartbeat manager stopped tracking ``conn`` (None if it is
        already gone), whose last beat was at ``last_beat``. With
        stale-session, the session ``conn`` owns keeps that beat, for
        whoever reconnects with its clientId."""
        sessions = self._sessions
        if sessions is None or conn is None or conn.client_id is None:
            return
        session = sessions.get(conn.client_id)
        if session is not None and session.owner == conn.conn_id:
            session.last_beat = last_beat


__all__ = ["ANSWER", "DROP", "WITHHOLD", "Action", "FaultTarget", "Faults"]
