"""The run's batch receiver: one task reads every steady-state plain-TCP
client's socket.

Without it each client's task waits on its own descriptor, and every pong
is a wakeup of that task: trio's epoll dispatch, the scheduler, a cancel
scope around the wait, the descriptor re-armed. Most of the tester's CPU per
heartbeat was that machinery, not soak's own code.

Here one task waits on an epoll descriptor of its own (level-triggered)
that holds the live sockets, and trio wakes it once for all of them
(``wait_readable`` on the epoll descriptor). It reads every ready socket
without blocking and runs the connection's sans-IO step
(:meth:`soak.client.connection.Connection.on_data`) on what it read. A
pong ends there: counted and recorded without the client's task waking.
Several frames in one read go through wsproto here too, their pongs
counted the same way. Anything else goes to the client's task
(:meth:`Dispatcher.hand_off`): the end of the stream, a reset, an action
of the connection's reaction to carry out (an answer to the server's
ping, its close frame) with the rest of that reaction, a chunk larger than
:data:`soak.client.transport.RECEIVE_SLICE`, an error. The connection then
leaves the batch until its task has dealt with it, and the task reads its
socket itself meanwhile; nothing is ever read twice or out of order.

Truth: every read of one wakeup is given the wakeup's time as its arrival
(the data was ready then: epoll said so), so a pong left unread while the
batch reads others does not lengthen its RTT; the wait itself, the wakeup
to the read of that socket, is the tester's own delay and is recorded as
``read_lag`` (and flags ``tester_bottleneck`` like the send lateness).

Descriptors: a connection leaves the batch (unregistered from the epoll
set) before its socket is closed, and a read happens only for a descriptor
registered at that moment, so a closed descriptor reused by a new
connection is read for that new connection only.

Linux only (``select.epoll``); elsewhere, or with ``[run] batch_receive =
false``, each client's task reads its own socket as before.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
from typing import Any, Protocol

import trio

from soak.client.transport import RECEIVE_SIZE, RECEIVE_SLICE
from soak.metrics import Metrics

# a chunk larger than RECEIVE_SLICE goes to the client's task, which hands it
# to the connection a slice at a time with a checkpoint between slices (a
# burst must not hold the event loop); RECEIVE_SIZE: bytes read per socket
# per wakeup, as the client's own task reads
# ready sockets read per wakeup: bounds how long one wakeup holds the event
# loop (~15 us a read); the rest stay ready (level-triggered) for the next
MAX_EVENTS = 128

AVAILABLE = hasattr(select, "epoll")


class Member(Protocol):
    """What the batch sees of a client: it takes what the batch cannot
    handle (:meth:`soak.client.live.Live._from_batch`)."""

    def _from_batch(self, conn: Any, item: Any, now: float) -> None: ...


class Dispatcher:
    """Pure: what each read of a wakeup means, fed ``(fd, data, now)``.

    ``data`` is the bytes read (``b""``: the end of the stream), an
    ``OSError`` (the read failed) or None (nothing there after all). Tested
    without sockets; :class:`BatchReceiver` adds the epoll set and the task.
    """

    __slots__ = ("members", "metrics", "reads", "strays", "wakes")

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # fd -> (client, connection): the connections the batch reads
        self.members: dict[int, tuple[Member, Any]] = {}
        self.wakes = 0  # wakeups of the batch (for benchmarks/cpu.py)
        self.reads = 0  # reads delivered
        self.strays = 0  # reads of a descriptor no longer in the batch (none expected)

    def add(self, fd: int, client: Member, conn: Any) -> None:
        self.members[fd] = (client, conn)

    def remove(self, fd: int, conn: Any) -> bool:
        """Take ``conn`` out of the batch; False if it was not in it."""
        entry = self.members.get(fd)
        if entry is None or entry[1] is not conn:
            return False
        del self.members[fd]
        self._released(fd)
        return True

    def _released(self, fd: int) -> None:
        """A descriptor left the batch (the I/O side unregisters it)."""

    def deliver(self, fd: int, data: bytes | OSError | None, woke: float, now: float) -> None:
        """The read of ``fd`` at ``now`` in the wakeup at ``woke``."""
        entry = self.members.get(fd)
        if entry is None:
            self.strays += 1
            return
        self.reads += 1
        # how long this socket's data waited while the batch read others
        self.metrics.record("read_lag", now - woke)
        if data is None:
            return
        client, conn = entry
        if type(data) is not bytes or not data or len(data) > RECEIVE_SLICE:
            self.hand_off(fd, client, conn, data, woke)
            return
        try:
            reaction = conn.on_data(data, woke)
            if reaction is None:
                return
            # several frames in one read (wsproto's path, lazy): pongs are
            # counted as the reaction is run; the first action it asks for
            # (bytes to write, the close) goes to the task with the rest
            for action in reaction:
                self.hand_off(fd, client, conn, itertools.chain((action,), reaction), woke)
                return
        except Exception as exc:  # raised in the client's task, as it would have been
            self.hand_off(fd, client, conn, exc, woke)

    def hand_off(self, fd: int, client: Member, conn: Any, item: Any, now: float) -> None:
        """Give ``item`` to the client's task; the connection leaves the batch."""
        del self.members[fd]
        self._released(fd)
        client._from_batch(conn, item, now)


class BatchReceiver(Dispatcher):
    """The epoll set and the task that reads it (see the module). The task
    is a trio system task, started with the first member, as the pacer is."""

    __slots__ = ("_ep",)

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(metrics)
        self._ep: Any = None

    def enroll(self, client: Member, conn: Any) -> None:
        """Read ``conn`` (its socket's descriptor ``conn.fd``) in the batch."""
        ep = self._ep
        if ep is None:
            ep = self._ep = select.epoll()
            trio.lowlevel.spawn_system_task(self._run, ep, name="soak-batch-receive")
        ep.register(conn.fd, select.EPOLLIN)
        self.add(conn.fd, client, conn)

    def _released(self, fd: int) -> None:
        # before the socket is closed: a descriptor closed while registered
        # stays in the set for as long as another copy of it lives
        ep = self._ep
        if ep is not None:
            with contextlib.suppress(OSError, ValueError):
                ep.unregister(fd)

    async def _run(self, ep: Any) -> None:
        epfd = ep.fileno()
        poll = ep.poll
        read = os.read
        clock = trio.current_time
        members = self.members
        deliver = self.deliver
        try:
            while True:
                await trio.lowlevel.wait_readable(epfd)
                self.wakes += 1
                woke = clock()
                for fd, _events in poll(0, MAX_EVENTS):
                    if fd not in members:
                        continue  # left the batch during this wakeup: not ours to read
                    data: bytes | OSError | None
                    try:
                        data = read(fd, RECEIVE_SIZE)
                    except BlockingIOError:
                        data = None
                    except OSError as exc:
                        data = exc
                    deliver(fd, data, woke, clock())
        finally:
            self._ep = None
            ep.close()
