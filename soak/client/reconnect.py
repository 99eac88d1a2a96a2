"""The life of one simulated client: the reconnect loop.

    connect -> handshake -> heartbeat + receive -> close -> backoff -> ...

Each turn counts its attempt, waits for a handshake slot, opens the
connection (:mod:`soak.client.handshake`), lives on it
(:class:`soak.client.live.Live`), records its end
(:mod:`soak.client.closing`) and waits as :mod:`soak.backoff` says before
the next; it gives up after ``max_attempts`` or once a refusal is known to
be permanent.
"""

from __future__ import annotations

import trio

from soak import backoff
from soak.classify import CHURN, CLIENT, SCALE_DOWN, SHUTDOWN
from soak.client.closing import retry_hint
from soak.client.handshake import open_connection
from soak.client.live import Live
from soak.client.shared import Shared
from soak.client.transport import _Conn
from soak.errors import HandshakeError


class _Stopped(Exception):
    """The runner stopped the client while it was connecting."""


class _Permanent(Exception):
    """A permanent refusal became known while the client queued to connect."""


class Client(Live):
    """One simulated client. The runner starts :meth:`run` and steers it
    with :meth:`~soak.client.live.Live.request_close`."""

    __slots__ = ("finished",)

    def __init__(self, shared: Shared, index: int, phase: float) -> None:
        super().__init__(shared, index, phase)
        self.finished = False

    async def run(self) -> None:
        sh = self.shared
        services = self.services
        m = services.metrics
        cfg = sh.config.profile.reconnect
        attempt = 0  # failed attempts in a row
        previous_delay = 0.0
        lost_at: float | None = None  # when the last connection was lost
        try:
            while True:
                req = self._close_request
                if req is not None and req[2] in (SHUTDOWN, SCALE_DOWN):
                    return
                if services.permanence.known is not None:
                    self._give_up(attempt, permanent=True)
                    return
                self._close_request = None
                m.count("connect_attempts")
                if lost_at is not None:
                    m.count("reconnect_attempts")
                    services.storms.attempt(trio.current_time(), sh.gauges.connecting + 1)
                hint: float | None = None
                try:
                    conn, began = await self._connect()
                except _Stopped:
                    return  # asked to stop while connecting: not a failure
                except _Permanent:
                    self._give_up(attempt, permanent=True)
                    return
                except HandshakeError as exc:
                    m.handshake_failure(exc.cause)
                    services.storms.failed(trio.current_time(), exc.cause)
                    hint = exc.retry_after
                    failure = self._event(
                        "handshake_failure",
                        trio.current_time(),
                        cause=exc.cause,
                        error=str(exc),
                    )
                    if exc.permanent:
                        failure["permanent"] = True
                    services.emit(failure)
                    if exc.permanent and self._permanent(exc):
                        self._give_up(attempt + 1, permanent=True)
                        return
                else:
                    ready = trio.current_time()
                    m.count("connects")
                    m.record("connect", ready - began)
                    if lost_at is not None:
                        m.count("reconnects")
                        m.record("reconnect", ready - lost_at)
                    services.storms.ready(ready, ready - began, lost_at)
                    services.storm_tick(ready)
                    services.permanence.connected()
                    attempt = 0
                    info = await self._live(conn, ready)
                    now = trio.current_time()
                    self._record_close(info, now)
                    if info.initiator == CLIENT and info.cause in (SHUTDOWN, SCALE_DOWN):
                        return
                    lost_at = now
                    if info.cause == CHURN:
                        continue  # churn reopens at once, as a page reload does
                    hint = retry_hint(info)
                    if hint is None:
                        hint = self.protocol.close_hint()
                    storm = services.storms.lost(now)
                    if storm is not None:
                        services.emit(
                            {
                                "t": round(services.elapsed(storm.start), 6),
                                "event": "storm_start",
                                "storm": storm.index,
                                "lost": storm.lost,
                            }
                        )
                if not cfg.enabled:
                    return
                attempt += 1
                if backoff.gave_up(cfg, attempt):
                    self._give_up(attempt)
                    return
                delay = backoff.next_delay(cfg, attempt, previous_delay, services.rng, hint)
                previous_delay = delay
                with trio.CancelScope(deadline=trio.current_time() + delay) as scope:
                    self._wake = scope
                    await trio.sleep_forever()
                self._wake = None
        finally:
            self.finished = True

    def _give_up(self, attempt: int, *, permanent: bool = False) -> None:
        """Stop reconnecting: after max_attempts, or because a permanent
        refusal is known (then ``attempt`` counts this client's failures)."""
        services = self.services
        now = trio.current_time()
        services.metrics.count("reconnect_failed")
        self.shared.gauges.gave_up += 1
        services.storms.gave_up(now)
        ev = self._event("reconnect_failed", now, attempts=attempt if permanent else attempt - 1)
        if permanent:
            ev["permanent"] = services.permanence.known
        services.emit(ev)

    def _permanent(self, exc: HandshakeError) -> bool:
        """Count a permanent refusal; True once the run knows it is one."""
        services = self.services
        permanence = services.permanence
        now = trio.current_time()
        if permanence.refused(exc.cause, str(exc), now):
            failures = permanence.count
            services.metrics.permanent_failure = {
                "cause": exc.cause,
                "error": str(exc),
                "t": round(services.elapsed(now), 6),
                "failures": failures,
            }
            services.emit(
                {
                    "t": round(services.elapsed(now), 6),
                    "event": "permanent_failure",
                    "cause": exc.cause,
                    "error": str(exc),
                    "failures": failures,
                }
            )
        return permanence.known is not None

    async def _connect(self) -> tuple[_Conn, float]:
        """Wait for a handshake slot, then connect. Returns the connection and
        when its handshake began: the timeout and the ``connect`` histogram
        start there, because time spent queueing for a slot is the tester's
        own limit (``max_connecting``), not the target's slowness."""
        sh = self.shared
        services = self.services
        gauges = sh.gauges
        timeout = sh.config.profile.target.connect_timeout
        gauges.connecting += 1
        try:
            with trio.CancelScope() as wake:  # request_close() wakes us, even queued
                self._wake = wake
                async with services.limiter:
                    if services.permanence.known is not None:
                        raise _Permanent  # known while we queued: do not try
                    began = trio.current_time()
                    with trio.move_on_at(began + timeout):
                        return await open_connection(sh, self.protocol), began
                    if not wake.cancel_called:
                        raise HandshakeError(
                            "timeout", f"{sh.config.shown_url}: no handshake within {timeout:g}s"
                        )
            raise _Stopped
        finally:
            self._wake = None
            gauges.connecting -= 1
