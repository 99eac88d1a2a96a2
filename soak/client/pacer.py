"""The run's heartbeat pacer: one task sends the pings of every plain-TCP client."""

from __future__ import annotations

import heapq
import math
from typing import Any, Protocol

import trio


class Paced(Protocol):
    """What the pacer sees of a client: its current connection, and its turn."""

    @property
    def conn(self) -> Any: ...

    def _paced(self, conn: Any, now: float) -> None: ...


class Pacer:
    """Sends the heartbeat pings of a run's plain-TCP clients from one task.

    A client's ping timer would otherwise wake its task once per ping, and
    a trio timer is a cancellation (``Cancelled`` raised into the wait, the
    descriptor unregistered from epoll, the scope unwound): a sixth of the
    client's profile at 5,000 pings/s. The pacer keeps one entry per paced
    connection in a heap ordered by the next send time, wakes when the
    earliest is due (one wakeup sends every ping due by then) and lets the
    client write the hand-framed ping without waiting
    (:meth:`soak.client.live.Live._paced`). The client's task then waits
    only for data and for the first timeout. A ping the kernel does not take
    whole is finished by the client's task; while that task is itself
    writing, the pacer leaves the connection to it.

    It runs as a trio system task, started with the first paced connection.
    """

    __slots__ = ("_heap", "_n", "_scope", "_started")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Paced, Any]] = []
        self._n = 0  # tie-breaker: clients are not comparable
        self._scope: trio.CancelScope | None = None
        self._started = False

    def add(self, when: float, client: Paced, conn: Any) -> None:
        self._n += 1
        heapq.heappush(self._heap, (when, self._n, client, conn))
        if not self._started:
            self._started = True
            trio.lowlevel.spawn_system_task(self._run, name="soak-pacer")
        scope = self._scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when

    async def _run(self) -> None:
        heap = self._heap
        while True:
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, client, conn = heapq.heappop(heap)
                if client.conn is conn:  # else that connection is over
                    client._paced(conn, now)
