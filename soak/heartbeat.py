"""Sans-IO heartbeat engine: scheduling, RTT and missed-heartbeat rules.

No Trio, no clock: every method takes ``now`` (seconds, any monotonic
origin) and returns what happened. One engine lives for one connection.

The rules (docs/protocols.md, "How heartbeats are measured"):

- Pings follow a fixed grid, ``t_k = origin + phase + k * interval``. The grid
  does not move when a send is late, so lateness cannot accumulate.
- RTT is measured twice, as wrk2 does. ``rtt`` runs from the *scheduled* send
  time to the pong, which corrects for coordinated omission. ``service`` runs
  from the *actual* send. ``lateness`` (actual - scheduled) is the tester's own
  fault and is reported apart, so a slow tester never looks like a slow gateway.
- If the tester stalls for more than one interval, it sends one ping for the
  oldest due slot and skips the others; the skipped slots are counted
  (``skipped``), never silently lost and never blamed on the gateway.
- A ping without a pong ``timeout`` seconds after it was actually sent is
  *missed*. If its pong arrives later it is counted *late* (and its RTT is
  still recorded: dropping it would hide the tail). It is not counted twice.
- ``max_missed`` consecutive misses make the connection a zombie. Any pong,
  even a late one, proves the connection alive and resets the run of misses.
- A reply without an id (MQTT's PINGRESP) answers the oldest heartbeat still
  outstanding, late ones included (:meth:`HeartbeatEngine.on_oldest`):
  such servers answer in order.
- ``max_in_flight`` caps the heartbeats waiting for a reply. A slot that
  comes while the cap is reached is not sent at all (sending it later would
  bunch heartbeats up, sending it anyway would break the dialect): it is
  counted ``held``, apart from the tester's own ``skipped``.
- ``expects_reply`` False (one-way beats): heartbeats go out on the grid and
  nothing waits for an answer; nothing is missed, late or an RTT.
- ``sends`` False (the server pings, the client answers): the engine sends
  nothing; its schedule is empty.
"""

from __future__ import annotations

import math
from typing import NamedTuple

# An upper bound on missed pings kept for late matching. Misses beyond it are
# still counted; only the possibility of calling their pong "late" is lost
# (such a pong counts as a duplicate and, like one, does not reset the run of
# misses: only an answer to a ping we are still waiting for proves liveness).
MAX_EXPIRED_KEPT = 64

OK = "ok"
LATE = "late"
DUPLICATE = "duplicate"
UNKNOWN = "unknown"


class Pong(NamedTuple):
    kind: str  # OK, LATE, DUPLICATE or UNKNOWN
    rtt: float = 0.0  # seconds from the scheduled send
    service: float = 0.0  # seconds from the actual send


class Sent(NamedTuple):
    seq: int
    scheduled: float
    lateness: float  # actual - scheduled, >= 0
    skipped: int  # grid slots skipped because the tester was too late


class _Ping:
    __slots__ = ("expired", "scheduled", "sent", "written")

    def __init__(self, scheduled: float, sent: float) -> None:
        self.scheduled = scheduled
        self.sent = sent
        self.written = sent
        self.expired = False


class HeartbeatEngine:
    __slots__ = (
        "_outstanding",
        "consecutive_missed",
        "early",
        "expects_reply",
        "held",
        "interval",
        "last_pong_at",
        "last_written",
        "max_in_flight",
        "max_missed",
        "miss_run_since",
        "next_send",
        "next_seq",
        "origin",
        "timeout",
    )

    def __init__(
        self,
        *,
        interval: float,
        timeout: float,
        max_missed: int,
        origin: float,
        now: float,
        first_seq: int = 1,
        early: float = 0.0,
        max_in_flight: int | None = None,
        expects_reply: bool = True,
        sends: bool = True,
    ) -> None:
        """``origin`` is the grid's zero (the run start plus this client's
        phase). The first ping is scheduled at the first grid point at or
        after ``now``, the moment the connection became ready.

        ``early`` lets a ping go out up to that long before its slot. Event
        loops wake timers on a coarse clock (epoll has 1 ms resolution), so
        waking exactly on time is impossible; a little early, the ping is on
        time and its RTT is measured from the actual send."""
        self.interval = interval
        self.early = early
        self.timeout = timeout
        self.max_missed = max_missed
        self.origin = origin
        self.max_in_flight = max_in_flight
        self.expects_reply = expects_reply
        self.held = 0  # slots not sent because max_in_flight was reached
        self.next_send = self._slot_at_or_after(now) if sends else math.inf
        self.next_seq = first_seq
        self.consecutive_missed = 0
        # when the first ping of the current run of misses was sent: how long
        # the connection has been unresponsive, for zombie detection times
        self.miss_run_since: float | None = None
        self.last_pong_at: float | None = None
        self.last_written = 0.0  # when the ping the last pong answered left
        self._outstanding: dict[int, _Ping] = {}

    def _slot_at_or_after(self, t: float) -> float:
        k = math.ceil((t - self.origin) / self.interval - 1e-9)
        return self.origin + k * self.interval

    # -- sending ---------------------------------------------------------------

    def due(self, now: float) -> bool:
        if now < self.next_send - self.early:
            return False
        cap = self.max_in_flight
        if cap is not None and self.pending >= cap:
            # the dialect allows no more in flight. Just before the slot
            # (its early window) wait: the ping in flight may yet be answered
            # or time out before the slot (next_deadline wakes at the first
            # of the two). From the slot on it is held (not sent), and the
            # next one is the next chance.
            if now < self.next_send:
                return False
            nxt = self._slot_at_or_after(now)
            if nxt <= now:
                nxt += self.interval
            self.held += round((nxt - self.next_send) / self.interval)
            self.next_send = nxt
            return False
        return True

    def on_send(self, now: float) -> Sent:
        """Call when a ping is about to be written. Returns its seq."""
        scheduled = self.next_send
        seq = self.next_seq
        self.next_seq = seq + 1
        if self.expects_reply:
            self._outstanding[seq] = _Ping(scheduled, now)
        following = scheduled + self.interval
        skipped = 0
        if following <= now:
            # We are more than one interval behind: skip to the first future
            # slot rather than firing a burst of catch-up pings.
            nxt = self._slot_at_or_after(now)
            if nxt <= now:
                nxt += self.interval
            skipped = round((nxt - following) / self.interval)
            following = nxt
        self.next_send = following
        return Sent(seq, scheduled, max(0.0, now - scheduled), skipped)

    # -- receiving -------------------------------------------------------------

    def on_pong(self, seq: int, now: float) -> Pong:
        ping = self._outstanding.pop(seq, None)
        if ping is None:
            return Pong(DUPLICATE if 0 < seq < self.next_seq else UNKNOWN)
        self.consecutive_missed = 0
        self.miss_run_since = None
        self.last_pong_at = now
        # from the scheduled time when we sent late (coordinated omission),
        # from the actual send when we sent a little early
        start = min(ping.scheduled, ping.sent)
        # when it left (see written()), for the wire RTT of this pong
        self.last_written = ping.written
        return Pong(LATE if ping.expired else OK, now - start, now - ping.sent)

    def written(self, seq: int, at: float) -> float | None:
        """Heartbeat ``seq`` left at ``at`` (its send call, or the kernel's
        transmit time; for the wire RTT). Returns its send time (the one
        ``rtt_service`` counts from), None when it is no longer waiting."""
        ping = self._outstanding.get(seq)
        if ping is None:
            return None
        ping.written = at
        return ping.sent

    def on_oldest(self, now: float) -> Pong:
        """A reply without an id: it answers the oldest heartbeat still
        outstanding (replies come in order); UNKNOWN when none is."""
        outstanding = self._outstanding
        if not outstanding:
            return Pong(UNKNOWN)
        return self.on_pong(next(iter(outstanding)), now)

    # -- timeouts --------------------------------------------------------------

    def check(self, now: float) -> int:
        """Expire pings whose timeout has passed. Returns how many became
        missed just now; see :attr:`zombie` for the consequence."""
        newly = 0
        expired_kept = 0
        for ping in self._outstanding.values():
            if ping.expired:
                expired_kept += 1
            elif now >= ping.sent + self.timeout:
                ping.expired = True
                expired_kept += 1
                newly += 1
                if self.miss_run_since is None:
                    self.miss_run_since = ping.sent
        self.consecutive_missed += newly
        if expired_kept > MAX_EXPIRED_KEPT:
            self._evict_expired(expired_kept - MAX_EXPIRED_KEPT)
        return newly

    def _evict_expired(self, n: int) -> None:
        for seq in [s for s, p in self._outstanding.items() if p.expired][:n]:
            del self._outstanding[seq]

    @property
    def zombie(self) -> bool:
        return self.consecutive_missed >= self.max_missed

    def next_deadline(self) -> float:
        """The next moment something can happen without input: a send is due
        or an outstanding ping times out. While the in-flight cap is reached
        the early window does not open (the slot can only be held or sent
        once a ping is answered or times out), else a pending timeout that
        falls inside it would have the caller wake again and again."""
        send = self.next_send - self.early
        cap = self.max_in_flight
        if cap is not None and self.pending >= cap:
            send = self.next_send
        return min(send, self.next_timeout())

    def next_timeout(self) -> float:
        """When the oldest ping still waiting for its pong times out (inf
        when none is waiting)."""
        for ping in self._outstanding.values():
            if not ping.expired:
                return ping.sent + self.timeout  # pings are sent in order
        return math.inf

    # -- evidence --------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Pings sent whose timeout has not passed yet (not missed, not
        answered). When the connection ends these are *abandoned*."""
        return sum(1 for p in self._outstanding.values() if not p.expired)

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)
