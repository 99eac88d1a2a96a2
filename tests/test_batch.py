"""The batch receiver's dispatcher (soak.client.batch.Dispatcher): what each
read of one wakeup means, fed (fd, data, now) with plain numbers and real
sans-IO connections, no sockets. The epoll side: test_batch_real.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType
from wsproto.events import Event, Ping, TextMessage

from soak.client.batch import Dispatcher
from soak.client.connection import Connection
from soak.client.transport import RECEIVE_SLICE
from soak.config.load import load_profile
from soak.config.profile import Profile
from soak.errors import ProfileError
from soak.heartbeat import HeartbeatEngine
from soak.metrics import TESTER_BOTTLENECK_LAG_MS, Metrics
from soak.protocols import JsonPing


class Clock:
    t0 = 100.0
    wall0 = 1_790_000_000.0


class Client:
    """A client's side of the hand-off: what the batch left to its task."""

    def __init__(self) -> None:
        self.handed: list[tuple[Any, Any, float]] = []

    def _from_batch(self, conn: Any, item: Any, now: float) -> None:
        self.handed.append((conn, item, now))


def connection(metrics: Metrics) -> Connection:
    """A connection ready at t=100 whose first heartbeat went out then."""
    conn = Connection(WsConnection(ConnectionType.CLIENT), opened_at=100.0)
    hb = HeartbeatEngine(interval=1.0, timeout=0.5, max_missed=3, origin=100.0, now=100.0)
    conn.start(hb, JsonPing("soak-000001"), metrics, Clock(), 100.0)
    action = conn.tick(100.0, None)
    assert isinstance(action, bytes)
    conn.pinged()
    return conn


def from_server(*events: Event) -> bytes:
    server = WsConnection(ConnectionType.SERVER)
    return b"".join(server.send(e) for e in events)


def pong(seq: int) -> bytes:
    text = json.dumps({"type": "pong", "seq": seq}, separators=(",", ":"))
    return from_server(TextMessage(data=text))


def ms(metrics: Metrics, name: str) -> list[float]:
    """Every sample of a histogram, in ms (each distinct value once)."""
    h = metrics.current.hist[name]
    return sorted(it.value_iterated_to / 1000 for it in h.get_recorded_iterator())


def setup(n: int) -> tuple[Dispatcher, Metrics, list[Client], list[Connection]]:
    m = Metrics()
    d = Dispatcher(m)
    clients = [Client() for _ in range(n)]
    conns = [connection(m) for _ in range(n)]
    for fd, (client, conn) in enumerate(zip(clients, conns, strict=True), start=10):
        d.add(fd, client, conn)
    return d, m, clients, conns


def test_pongs_of_one_wakeup_count_with_the_wakeups_time_and_their_wait_as_read_lag() -> None:
    d, m, clients, _ = setup(3)
    woke = 100.020
    # three sockets ready at the wakeup; the batch reads them 0, 2 and 4 ms later
    for i, fd in enumerate((10, 11, 12)):
        d.deliver(fd, pong(1), woke, woke + 0.002 * i)
    assert m.current.counts["pongs"] == 3
    # the pong left unread for 4 ms is not 4 ms slower: its data was there
    # at the wakeup; the wait is the tester's, as read_lag
    assert ms(m, "rtt") == [pytest.approx(20.0, rel=1e-3)]
    assert ms(m, "read_lag") == [0.0, pytest.approx(2.0, rel=1e-3), pytest.approx(4.0, rel=1e-3)]
    assert all(not c.handed for c in clients)  # the client tasks stay asleep
    assert d.reads == 3
    assert len(d.members) == 3


def test_read_lag_above_the_bottleneck_line_flags_the_interval() -> None:
    d, m, _, _ = setup(2)
    late = (TESTER_BOTTLENECK_LAG_MS + 1) / 1000
    d.deliver(10, pong(1), 100.01, 100.01 + late)
    d.deliver(11, pong(1), 100.01, 100.01 + late)
    rec = m.current.record({})
    assert rec["lag_p99_ms"] < TESTER_BOTTLENECK_LAG_MS  # sent on time
    assert rec["read_lag_p99_ms"] == pytest.approx(late * 1000, rel=1e-3)
    assert rec["tester_bottleneck"] is True
    assert Metrics().current.record({})["tester_bottleneck"] is False


def test_the_end_of_the_stream_goes_to_the_clients_task_and_the_socket_leaves_the_batch() -> None:
    d, m, clients, conns = setup(2)
    d.deliver(10, b"", 100.3, 100.3)
    assert clients[0].handed == [(conns[0], b"", 100.3)]
    assert 10 not in d.members
    assert 11 in d.members
    # a later read of that descriptor in the same wakeup is not delivered
    d.deliver(10, pong(1), 100.3, 100.3)
    assert d.strays == 1
    assert m.current.counts["pongs"] == 0
    assert len(clients[0].handed) == 1


def test_a_failed_read_goes_to_the_clients_task() -> None:
    d, _, clients, conns = setup(1)
    err = ConnectionResetError(104, "reset by peer")
    d.deliver(10, err, 100.1, 100.1)
    assert clients[0].handed == [(conns[0], err, 100.1)]
    assert not d.members


def test_nothing_to_read_changes_nothing() -> None:
    d, m, clients, _ = setup(1)
    d.deliver(10, None, 100.1, 100.1)
    assert not clients[0].handed
    assert 10 in d.members
    assert m.current.counts["pongs"] == 0


def test_a_burst_goes_to_the_clients_task_untouched() -> None:
    d, m, clients, conns = setup(1)
    burst = pong(1) * (RECEIVE_SLICE // len(pong(1)) + 1)
    assert len(burst) > RECEIVE_SLICE
    d.deliver(10, burst, 100.1, 100.1)
    # handed over as read: the task gives it to the connection a slice at a time
    assert clients[0].handed == [(conns[0], burst, 100.1)]
    assert m.current.counts["pongs"] == 0


def test_a_frame_that_needs_an_answer_is_a_reaction_for_the_task() -> None:
    d, m, clients, conns = setup(2)
    d.deliver(10, from_server(Ping(b"hb")), 100.2, 100.2)
    [(conn, reaction, now)] = clients[0].handed
    assert conn is conns[0]
    assert now == 100.2
    # the reaction is carried out by the task: the answer to write
    [answer] = list(reaction)
    assert isinstance(answer, bytes)
    assert m.current.counts["server_pings"] == 1
    assert list(d.members) == [11]


def test_several_pongs_in_one_read_are_counted_in_the_batch() -> None:
    d, m, clients, conns = setup(1)
    conn = conns[0]
    action = conn.tick(101.0, None)  # the second heartbeat
    assert isinstance(action, bytes)
    conn.pinged()
    d.deliver(10, pong(1) + pong(2), 101.01, 101.01)
    # the first one after its 0.5 s timeout (late), the second on time
    assert (m.current.counts["late"], m.current.counts["pongs"]) == (1, 1)
    assert not clients[0].handed
    assert 10 in d.members


def test_a_pong_and_a_server_ping_in_one_read_hand_only_the_answer_over() -> None:
    d, m, clients, _ = setup(1)
    d.deliver(10, pong(1) + from_server(Ping(b"hb")) + pong(99), 100.01, 100.01)
    assert m.current.counts["pongs"] == 1  # counted before the ping was reached
    [(_, reaction, _)] = clients[0].handed
    assert m.current.counts["unknown_pongs"] == 0  # the rest waits for the task
    [answer] = list(reaction)
    assert isinstance(answer, bytes)
    assert m.current.counts["unknown_pongs"] == 1
    assert not d.members


def test_an_error_in_the_step_is_raised_by_the_task_not_the_batch() -> None:
    class Broken:
        def on_data(self, data: bytes, now: float) -> None:
            raise ValueError("bad frame")

    m = Metrics()
    d = Dispatcher(m)
    client = Client()
    conn = Broken()
    d.add(10, client, conn)
    d.deliver(10, pong(1), 100.0, 100.0)
    [(_, exc, _)] = client.handed
    assert isinstance(exc, ValueError)
    assert not d.members


def test_a_reused_descriptor_is_read_for_its_new_connection_only() -> None:
    m = Metrics()
    d = Dispatcher(m)
    old_client, new_client = Client(), Client()
    old, new = connection(m), connection(m)
    d.add(10, old_client, old)
    assert d.remove(10, old)  # its task closes it
    d.add(10, new_client, new)  # the kernel hands out the number again
    # the old connection's task is late to leave: that cannot remove the new one
    assert not d.remove(10, old)
    assert d.members[10] == (new_client, new)
    d.deliver(10, b"", 100.5, 100.5)
    assert new_client.handed == [(new, b"", 100.5)]
    assert not old_client.handed


def test_removal_tells_the_io_side() -> None:
    released: list[int] = []

    class Tracking(Dispatcher):
        def _released(self, fd: int) -> None:
            released.append(fd)

    m = Metrics()
    d = Tracking(m)
    a, b = connection(m), connection(m)
    d.add(10, Client(), a)
    d.add(11, Client(), b)
    d.remove(10, a)
    d.deliver(11, b"", 100.0, 100.0)
    assert released == [10, 11]
    assert not d.remove(10, a)  # once only
    assert released == [10, 11]


# -- the switch and the threshold ------------------------------------------------------------

MINIMAL = """\
[target]
url = "ws://127.0.0.1:9/ws"

[[clients.stages]]
kind = "ramp"
to = 2
duration = "1s"
"""


def load(tmp_path: Path, text: str) -> Profile:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return load_profile(path, environ={})


def test_batch_receive_is_on_by_default_and_can_be_turned_off(tmp_path: Path) -> None:
    assert load(tmp_path, MINIMAL).run.batch_receive is True
    off = load(tmp_path, "[run]\nbatch_receive = false\n" + MINIMAL)
    assert off.run.batch_receive is False


def test_a_batch_receive_that_is_not_a_boolean_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        load(tmp_path, '[run]\nbatch_receive = "sometimes"\n' + MINIMAL)
    message = str(info.value)
    assert "\n" not in message
    assert "run.batch_receive" in message
    assert "sometimes" in message


def test_read_lag_can_be_a_threshold(tmp_path: Path) -> None:
    profile = load(tmp_path, MINIMAL + '\n[thresholds]\nread_lag_p99 = "2ms"\n')
    [threshold] = profile.thresholds
    assert threshold.name == "read_lag_p99"
    with pytest.raises(ProfileError, match="read_lag"):
        load(tmp_path, MINIMAL + '\n[thresholds]\nread_lag_p = "2ms"\n')


def test_the_tester_finding_names_answers_left_unread() -> None:
    from soak.facts import Facts
    from soak.findings import findings

    base: dict[str, Any] = {"dt": 10.0, "pings": 100, "pongs": 100, "lag_p99_ms": 0.4}
    unread = {"tester_bottleneck": True, "read_lag_p99_ms": 12.5}
    f = Facts().intervals([{**base, "t": 0.0}, {**base, "t": 10.0, **unread}])
    [finding] = [x for x in findings(f) if x.kind == "tester_bottleneck"]
    assert "answers left unread up to 12.5 ms at p99" in finding.text
    # a send-lateness bottleneck alone says nothing of reads
    late = {"tester_bottleneck": True, "lag_p99_ms": 9.0, "read_lag_p99_ms": 0.1}
    g = Facts().intervals([{**base, "t": 0.0, **late}])
    [finding] = [x for x in findings(g) if x.kind == "tester_bottleneck"]
    assert "unread" not in finding.text


def test_the_pacer_leaves_a_connection_to_its_task_while_the_batch_left_it_something() -> None:
    """An end of the stream read at ``woke`` and not yet seen by the task:
    a ping sent now would be later than the end its close's evidence is
    judged at (a negative silence, tests/test_middlebox.py)."""
    from soak.client.live import Live

    class Conn:
        busy = False
        pending = None
        parked = False

    live = Live.__new__(Live)
    live._inbox = (b"", 100.0)
    conn = Conn()
    live._paced(conn, 100.01)  # type: ignore[arg-type]
    assert conn.parked is True  # the task re-adds it to the pacer once it has looked
