"""The batch receiver's epoll path on real sockets (127.0.0.1): many
sockets in one set, a close in the middle of a wakeup, a reused descriptor,
the end of a stream and a reset, a pong left unread counted as the tester's
read lag; and whole runs against the reference gateway with the batch on
and off. The dispatcher's logic alone: test_batch.py."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from soak.client import batch
from soak.client.batch import BatchReceiver
from soak.gateway import Gateway, GatewayConfig
from soak.metrics import Metrics
from soak.recorder import Recorder, now_wall
from soak.run.runner import Runner
from tests.support.runs import make_profile

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(not batch.AVAILABLE, reason="the batch receiver needs select.epoll"),
]


class Conn:
    """A connection as the batch sees it: its descriptor and its step."""

    def __init__(self, sock: socket.socket, on_data: Callable[[Conn, bytes], None] | None = None):
        self.sock = sock
        self.fd = sock.fileno()
        self.got: list[tuple[bytes, float]] = []
        self.hook = on_data

    def on_data(self, data: bytes, now: float) -> None:
        self.got.append((data, now))
        if self.hook is not None:
            self.hook(self, data)


class Client:
    def __init__(self) -> None:
        self.handed: list[tuple[Any, Any, float]] = []

    def _from_batch(self, conn: Any, item: Any, now: float) -> None:
        self.handed.append((conn, item, now))


@contextmanager
def pairs(n: int) -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """``n`` TCP connections on 127.0.0.1: (our side, the server's side)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=n)
    out: list[tuple[socket.socket, socket.socket]] = []
    try:
        for _ in range(n):
            ours = socket.create_connection(listener.getsockname(), timeout=5)
            theirs, _ = listener.accept()
            ours.setblocking(False)
            out.append((ours, theirs))
        yield out
    finally:
        listener.close()
        for ours, theirs in out:
            ours.close()
            theirs.close()


async def until(check: Callable[[], bool]) -> None:
    """Wait (bounded by the caller's fail_after) until ``check()`` holds."""
    while not check():  # noqa: ASYNC110 (the batch task offers no event to wait on)
        await trio.sleep(0.001)


async def test_many_sockets_each_get_their_own_bytes() -> None:
    m = Metrics()
    rx = BatchReceiver(m)
    with pairs(300) as conns:
        mine = [(Client(), Conn(ours)) for ours, _ in conns]
        for client, conn in mine:
            rx.enroll(client, conn)
        for i, (_, theirs) in enumerate(conns):
            theirs.sendall(b"pong %d" % i)
        with trio.fail_after(10):
            await until(lambda: all(conn.got for _, conn in mine))
        for i, (client, conn) in enumerate(mine):
            assert [data for data, _ in conn.got] == [b"pong %d" % i]
            assert not client.handed
        # fewer wakeups than sockets read: that is the point
        assert rx.reads >= 300
        assert rx.wakes < rx.reads
        assert rx.strays == 0
        assert m.current.hist["read_lag"].get_total_count() == rx.reads
        for _, conn in mine:
            assert rx.remove(conn.fd, conn)
        assert not rx.members


async def test_end_of_stream_and_reset_go_to_the_clients_task() -> None:
    rx = BatchReceiver(Metrics())
    with pairs(2) as conns:
        (a_ours, a_theirs), (b_ours, b_theirs) = conns
        a, b = Client(), Client()
        a_conn, b_conn = Conn(a_ours), Conn(b_ours)
        rx.enroll(a, a_conn)
        rx.enroll(b, b_conn)
        a_theirs.shutdown(socket.SHUT_WR)  # FIN
        b_theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        b_theirs.close()  # RST
        with trio.fail_after(10):
            await until(lambda: bool(a.handed and b.handed))
        assert a.handed[0][:2] == (a_conn, b"")
        assert isinstance(b.handed[0][1], ConnectionResetError)
        # both left the set: a level-triggered descriptor at EOF is not read again
        assert not rx.members
        await trio.sleep(0.01)
        assert len(a.handed) == len(b.handed) == 1


async def test_a_socket_closed_and_its_descriptor_reused_in_the_middle_of_a_wakeup() -> None:
    rx = BatchReceiver(Metrics())
    with pairs(3) as conns:
        clients = [Client() for _ in conns]
        replaced: list[Conn] = []
        spare_ours, spare_theirs = conns[2]

        def close_the_other(conn: Conn, data: bytes) -> None:
            """The first socket read closes the other one (its client's task
            ends it) and a new connection gets that very descriptor number."""
            if replaced:
                return
            other = mine[1] if conn is mine[0] else mine[0]
            assert rx.remove(other.fd, other)  # unregistered before the close
            number = other.fd
            other.sock.close()
            fresh_fd = os.dup(spare_ours.fileno())  # the lowest free number: likely that one
            if fresh_fd != number:
                os.dup2(fresh_fd, number)
                os.close(fresh_fd)
            new = Conn(socket.socket(fileno=number))
            replaced.append(new)
            rx.enroll(Client(), new)

        mine = [Conn(ours, close_the_other) for ours, _ in conns[:2]]
        for client, conn in zip(clients, mine, strict=False):
            rx.enroll(client, conn)
        # both ready before the batch task wakes: one wakeup reads both
        conns[0][1].sendall(b"first")
        conns[1][1].sendall(b"second")
        with trio.fail_after(10):
            await until(lambda: bool(replaced) or any(c.handed for c in clients))
            assert not any(c.handed for c in clients), clients[0].handed + clients[1].handed
            # what the spare connection's server side sends now reaches the
            # connection that owns the reused number, and only it
            spare_theirs.sendall(b"for the new one")
            await until(lambda: bool(replaced[0].got))
        [first] = [c for c in mine if c.got]
        assert len(first.got) == 1
        (other,) = [c for c in mine if c is not first]
        assert other.got == []  # its bytes were never read for anybody
        assert [d for d, _ in replaced[0].got] == [b"for the new one"]
        rx.remove(replaced[0].fd, replaced[0])
        replaced[0].sock.close()


def test_a_pong_left_unread_while_the_batch_reads_others_is_read_lag() -> None:
    """The first read's step takes 10 s (the mock clock jumps): the socket
    read after it waited that long, and says so; its data's arrival time
    is still the wakeup's."""
    clock = trio.testing.MockClock(rate=1.0)

    async def main() -> tuple[list[float], list[list[float]]]:
        m = Metrics()
        rx = BatchReceiver(m)
        with pairs(2) as conns:

            def slow(conn: Conn, data: bytes) -> None:
                if sum(len(c.got) for c in mine) == 1:
                    clock.jump(10.0)

            mine = [Conn(ours, slow) for ours, _ in conns]
            for conn in mine:
                rx.enroll(Client(), conn)
            conns[0][1].sendall(b"a")
            conns[1][1].sendall(b"b")
            with trio.fail_after(30):
                await until(lambda: all(c.got for c in mine))
            h = m.current.hist["read_lag"]
            lags = [h.get_min_value() / 1e6, h.get_max_value() / 1e6]
            return lags, [[now for _, now in c.got] for c in mine]

    lags, nows = trio.run(main, clock=clock)
    assert lags[0] < 10.0 <= lags[1]
    # one wakeup: both steps were given its time, the unread one included
    assert nows[0] == nows[1]


PROFILE = """
[run]
label = "batch"
report_interval = "1s"
batch_receive = {batch}
[clients]
max_connecting = 64
[[clients.stages]]
kind = "ramp"
to = 40
duration = "500ms"
[[clients.stages]]
kind = "hold"
duration = "2s"
[heartbeat]
interval = "250ms"
timeout = "2s"
"""


@pytest.mark.slow
async def test_the_servers_pings_are_answered_by_the_clients_task_which_returns_to_the_batch(
    tmp_path: Path,
) -> None:
    gateway = Gateway(GatewayConfig(host="127.0.0.1", port=0, server_ping_interval=0.2))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            toml = PROFILE.format(batch="true")
            profile = make_profile(toml, url=f"ws://127.0.0.1:{port}/ws", results=tmp_path)
            recorder = Recorder(tmp_path, profile.run.label, now_wall())
            runner = Runner(profile, recorder, manage_gc=False)
            outcome = await runner.run()
            nursery.cancel_scope.cancel()
    tot = outcome.summary["totals"]
    assert tot["connects"] == 40
    # each server ping is a hand-off to the client's task (its answer is
    # written there); the pongs that came after it were read by the batch
    # again: the task put the connection back
    assert tot["server_pings"] >= 40 * 5
    assert tot["missed"] == 0
    assert tot["closes"] == {"client_shutdown": 40}
    rx = runner.shared.services.batch
    assert rx is not None
    assert rx.reads >= tot["server_pings"] + tot["pongs"] // 2
    assert not rx.members


@pytest.mark.slow
@pytest.mark.parametrize("on", [True, False])
async def test_a_run_against_the_gateway_with_the_batch_on_and_off(
    tmp_path: Path, on: bool
) -> None:
    gateway = Gateway(GatewayConfig(host="127.0.0.1", port=0))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            toml = PROFILE.format(batch="true" if on else "false")
            profile = make_profile(toml, url=f"ws://127.0.0.1:{port}/ws", results=tmp_path)
            recorder = Recorder(tmp_path, profile.run.label, now_wall())
            runner = Runner(profile, recorder, manage_gc=False)
            outcome = await runner.run()
            nursery.cancel_scope.cancel()
    tot = outcome.summary["totals"]
    assert tot["connects"] == 40
    assert tot["missed"] == 0
    assert tot["closes"] == {"client_shutdown": 40}
    assert gateway.stats()["pings_received"] == tot["pings"]
    assert tot["pongs"] >= tot["pings"] - 40  # the last ones may be in flight at the end
    read_lag = outcome.summary["latency_ms"]["read_lag"]["count"]
    rx = runner.shared.services.batch
    if on:
        assert rx is not None
        assert rx.reads > 0
        assert read_lag == rx.reads >= tot["pongs"] // 2
        assert not rx.members  # every connection left before its socket closed
    else:
        assert rx is None
        assert read_lag == 0
