"""The behaviours a user relies on that mutation testing found unguarded
(issue 21, docs/testing.md): each test is about what a user reads in the
results, not about the mutant that showed the gap.

Pure and MockClock tests, except the SIGKILL one and the server-count runs,
which start a process or open loopback sockets (marked ``process``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import fields
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from soak.classify import (
    CATEGORY_HEARTBEAT,
    CATEGORY_TRANSPORT,
    CODE_NAMES,
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    SERVER,
    TRANSPORT,
    Classifier,
    CloseInfo,
    Evidence,
    server_key,
)
from soak.client.connection import Closing, Connection
from soak.config.heartbeat import ServerHeartbeat
from soak.config.thresholds import Threshold
from soak.gateway import Gateway, GatewayConfig
from soak.gateway.bugs import NoPong
from soak.heartbeat import HeartbeatEngine
from soak.metrics import COUNTERS, FAMILIES, HISTOGRAMS, Interval, Metrics, Tally, read_totals
from soak.protocols import JsonPing
from soak.recorder import Recorder, now_wall
from soak.results.names import RUN_JSON
from soak.results.reader import load_run
from soak.run.merge import absorb, encode_interval
from soak.run.runner import Runner
from soak.storm import StormTracker
from soak.summary import EXIT_THRESHOLDS, exit_code, judge, totals
from tests.support.runs import (
    WALL0,
    events,
    gateway_opener,
    make_profile,
    one_client,
    run_in_memory,
    serving,
)


class Clock:
    t0 = 100.0
    wall0 = WALL0


def live(
    *, interval: float = 1.0, timeout: float = 0.5, max_missed: int = 3
) -> tuple[Connection, Metrics]:
    """A connection that became ready at t=100, the run's start."""
    conn = Connection(WsConnection(ConnectionType.CLIENT), opened_at=100.0)
    metrics = Metrics()
    hb = HeartbeatEngine(
        interval=interval, timeout=timeout, max_missed=max_missed, origin=100.0, now=100.0
    )
    conn.start(hb, JsonPing("soak-000001"), metrics, Clock(), 100.0)
    return conn, metrics


def send(conn: Connection, now: float) -> int:
    """Tick at ``now`` expecting a heartbeat; write it. Returns its seq."""
    action = conn.tick(now, None)
    assert isinstance(action, bytes)
    conn.pinged()
    server = WsConnection(ConnectionType.SERVER)
    server.receive_data(action)
    [event] = list(server.events())
    assert isinstance(event, TextMessage)
    seq: int = json.loads(event.data)["seq"]
    return seq


def pong(seq: int) -> bytes:
    server = WsConnection(ConnectionType.SERVER)
    return server.send(TextMessage(data=json.dumps({"type": "pong", "seq": seq})))


# -- 1. a late send: the tester's lateness is not the gateway's ---------------------


def test_a_zombie_late_sender_is_timed_from_its_real_sends() -> None:
    """The tester sends every ping 0.4 s after its slot (a loaded tester).
    The gateway has been silent since the first real send, not since the
    first slot: blaming it for 0.4 s more would be blaming our lateness on it."""
    conn, m = live(interval=1.0, timeout=0.5, max_missed=2)
    assert send(conn, 100.4) == 1  # slot 100.0, sent 100.4
    assert conn.tick(100.8, None) is None  # 0.4 s after the send: not yet missed
    assert send(conn, 101.4) == 2  # slot 101.0
    assert conn.tick(101.5, None) is None  # ping 1 missed at 100.9 (sent + timeout)
    assert m.current.counts["missed"] == 1
    closing = conn.tick(101.9, None)  # ping 2 missed: max_missed reached
    assert isinstance(closing, Closing)
    ev = closing.info.evidence
    assert ev is not None
    assert ev.consecutive_missed == 2
    # unresponsive since ping 1 went out at 100.4, not since its slot at 100.0
    assert ev.unresponsive_for == pytest.approx(1.5)
    lag = m.current.hist["lag"]
    assert lag.get_total_count() == 2
    assert lag.get_max_value() == pytest.approx(400_000, rel=1e-3)  # the lateness, apart


# -- 2. a client that never got a pong ----------------------------------------------


ABRUPT = ServerHeartbeat(interval=25.0, timeout=50.0, abrupt_after=50.0, abrupt_tolerance=5.0)


def lost_at(age: float, last_pong: float | None) -> CloseInfo:
    ev = Evidence(
        age=age,
        last_pong_age=last_pong,
        last_frame_age=age,
        consecutive_missed=0,
        pings_pending=0,
    )
    return CloseInfo(TRANSPORT, 1006, "", "eof", evidence=ev)


def test_an_abrupt_close_without_any_pong_is_timed_from_the_connection_start() -> None:
    """A server that terminates the socket ~50 s after the last pong does so
    ~50 s after the connection opened when no pong ever came."""
    c = Classifier(ABRUPT)
    assert c.classify(lost_at(51.0, None)).category == CATEGORY_HEARTBEAT
    assert c.classify(lost_at(51.0, 2.0)).category == CATEGORY_TRANSPORT  # pong 2 s ago
    assert c.classify(lost_at(120.0, None)).key == "transport_eof"  # not 50 s
    assert c.classify(lost_at(120.0, 49.0)).category == CATEGORY_HEARTBEAT


# -- 3. the close codes, named as RFC 6455 (7.4.1) and the IANA registry name them ---

# code: (registered name, what a server may send it, soak's key word(s))
RFC6455_IANA = {
    1000: ("Normal Closure", True, "normal"),
    1001: ("Going Away", True, "going_away"),
    1002: ("Protocol error", True, "protocol_error"),
    1003: ("Unsupported Data", True, "unsupported_data"),
    1004: ("Reserved", False, None),
    1005: ("No Status Rcvd", False, None),  # never in a close frame
    1006: ("Abnormal Closure", False, None),  # never in a close frame
    1007: ("Invalid frame payload data", True, "invalid_payload"),
    1008: ("Policy Violation", True, "policy_violation"),
    1009: ("Message Too Big", True, "message_too_big"),
    1010: ("Mandatory Ext.", False, None),  # a client's close only
    1011: ("Internal Error", True, "internal_error"),
    1012: ("Service Restart", True, "service_restart"),
    1013: ("Try Again Later", True, "try_again_later"),
    1014: ("Bad Gateway", True, "bad_gateway"),
    1015: ("TLS handshake", False, None),  # never in a close frame
}


def test_every_close_code_has_its_registered_name() -> None:
    for code, (name, server_sends, key) in RFC6455_IANA.items():
        if server_sends:
            assert server_key(code) == f"server_{code}_{key}", name
            # every word of soak's key is a word of the registered name
            assert set(str(key).split("_")) <= set(name.lower().split()), (code, name)
        else:
            assert server_key(code) == f"server_{code}", name
    assert set(CODE_NAMES) == {c for c, (_, sends, _) in RFC6455_IANA.items() if sends}
    # the private range and unknown codes keep their number
    assert server_key(4000) == "server_4000"
    assert server_key(None) == "server_None"


# -- 4. a loss before a storm is not that storm's recovery ---------------------------


def test_a_connection_lost_before_a_storm_does_not_count_as_its_recovery() -> None:
    t = StormTracker(heartbeat_interval=10.0, min_losses=3, window=1.0, quiet=5.0)
    assert t.lost(1.0) is None  # alone: no storm
    assert t.lost(5.0) is None
    assert t.lost(5.1) is None
    storm = t.lost(5.2)
    assert storm is not None
    assert storm.start == 5.0
    assert storm.lost == 3
    t.ready(5.5, 0.01, 1.0)  # lost at 1.0: back, but not from this storm
    assert storm.recovered == 0
    t.ready(5.6, 0.01, 5.0)  # lost at the storm's first loss: it is the storm's
    t.ready(5.7, 0.01, 5.1)
    t.ready(5.8, 0.01, 5.2)
    assert t.tick(6.3) is storm  # every one of its losses is back
    summary = t.summary_of(storm)
    assert summary["lost"] == 3
    assert summary["recovered"] == 3
    assert storm.recovery_times == pytest.approx([0.6, 0.7, 0.8])


# -- 5. an out-of-range sample reaches the totals as dropped -------------------------


def test_a_sample_beyond_the_histogram_is_counted_as_dropped_up_to_the_verdict() -> None:
    m = Metrics()
    m.record("rtt", 0.010)
    m.record("rtt", 7200.0)  # two hours: beyond the 1 h range
    m.record("rtt", 5000.0)  # beyond what the histogram rounds its range up to (~71 min)
    m.record("rtt", 3600.0)  # the top of the range: kept
    m.record("rtt_service", -1.0)  # a negative duration is 0, which is kept
    m.record("lag", 0.0)
    iv = m.rotate(10.0)
    assert iv.record({})["dropped_samples"] == {"rtt": 2}
    tot = totals(m)
    assert tot["dropped_samples"] == {"rtt": 2}
    assert tot["dropped_samples_total"] == 2
    rtt = m.total.hist["rtt"]
    assert rtt.get_total_count() == 2  # never recorded as something else
    assert rtt.get_max_value() >= 3_600_000_000
    assert m.total.hist["rtt_service"].get_total_count() == 1
    assert m.total.hist["lag"].get_max_value() == 0  # zero lateness is zero
    # a run killed before its summary: the totals read back from intervals.jsonl
    assert read_totals([json.loads(json.dumps(iv.record({})))])["dropped_samples_total"] == 2
    [v] = judge([Threshold("dropped_samples", 0.0, "0")], tot, m.total.hist)
    assert (v["ok"], v["value"]) == (False, "2")


def test_intervals_and_run_totals_so_far() -> None:
    m = Metrics()
    m.count("pings", 3)
    m.rotate(10.0)
    m.count("pings", 2)
    assert m.so_far("pings") == 5  # the finished interval and the one in progress
    m.rotate(20.0)
    assert m.intervals_done == 2
    assert m.current.index == 2


# -- 6. every field of an interval survives the worker merge -------------------------


def full_interval(k: int) -> Interval:
    """An interval with every counter, family, histogram and pause set,
    each to its own value (``k`` makes two workers' differ)."""
    iv = Interval(4, 40.0)
    for i, name in enumerate(COUNTERS):
        iv.counts[name] = k * 100 + i + 1
    for i, name in enumerate(FAMILIES):
        iv.family(name).update({f"{name}_a": k + i + 1, f"{name}_b": 2 * k + i + 3})
    for i, name in enumerate(HISTOGRAMS):
        for us in range(1, 50 + i):
            assert iv.hist[name].record_value(us * 1000 * k + i)
    iv.gc_pause_max = 0.001 * k
    iv.gc_pause_total = 0.01 * k
    iv.connected_s = 1.5 * k  # client-seconds (soak.availability)
    iv.target_s = 2.0 * k
    return iv


def test_every_field_of_a_workers_interval_survives_the_merge() -> None:
    a, b = full_interval(1), full_interval(2)
    merged = Interval(4, 40.0)
    for iv in (a, b):
        absorb(merged, json.loads(json.dumps(encode_interval(iv, gave_up=0))))
    expected = Interval(4, 40.0)
    expected.add(a)
    expected.add(b)
    # every Tally field, named from the dataclass: a field added later is covered
    for f in fields(Tally):
        got, want = getattr(merged, f.name), getattr(expected, f.name)
        if f.name == "hist":
            for name in HISTOGRAMS:
                g, w = got[name], want[name]
                assert g.get_total_count() == w.get_total_count() > 0, name
                assert g.get_min_value() == w.get_min_value(), name
                assert g.get_max_value() == w.get_max_value(), name
                assert g.get_value_at_percentile(99.0) == w.get_value_at_percentile(99.0), name
        else:
            assert got == want, f.name
            assert got, f.name  # nothing merged to zero
    assert merged.gc_pause_max == 0.002
    assert merged.gc_pause_total == pytest.approx(0.03)
    assert merged.record({}) == expected.record({})


# -- 7. intervals readable while the run is alive, and after SIGKILL -----------------


def written_interval(rec: Recorder, m: Metrics, now: float) -> None:
    m.count("pings", 5)
    m.count("pongs", 5)
    m.record("rtt", 0.002)
    rec.event({"t": now - 0.5, "event": "close", "client": "c1"})
    rec.write_interval(m.rotate(now), {})


def test_each_interval_is_readable_while_the_run_is_alive(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "alive", WALL0)
    rec.write_json(RUN_JSON, {"tool": "soak", "label": "alive", "status": "running"})
    m = Metrics()
    for i in range(1, 3):
        written_interval(rec, m, 10.0 * i)
        # another reader, as `soak report` on a live run: every file has it
        run = load_run(rec.path)
        assert [iv["i"] for iv in run.intervals] == list(range(i))
        assert len(run.histograms("rtt")) == i
        assert len(list(run.events())) == i
    rec.close()


CHILD = """
import sys, time
from soak.metrics import Metrics
from soak.recorder import Recorder
rec = Recorder(sys.argv[1], "killed", 1790000000.0)
rec.write_json("run.json", {"tool": "soak", "label": "killed", "status": "running"})
m = Metrics()
for i in (1, 2):
    m.count("pongs", 5)
    m.record("rtt", 0.002)
    rec.event({"t": i - 0.5, "event": "close", "client": "c1"})
    rec.write_interval(m.rotate(float(i)), {})
m.count("pongs", 99)  # the interval in progress, lost with the process
print(rec.path, flush=True)
time.sleep(60)
"""


@pytest.mark.process
def test_a_run_killed_with_sigkill_keeps_every_finished_interval(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        path = Path(proc.stdout.readline().strip())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    run = load_run(path)
    assert [iv["i"] for iv in run.intervals] == [0, 1]
    assert [iv["pongs"] for iv in run.intervals] == [5, 5]
    assert len(run.histograms("rtt")) == 2
    assert len(list(run.events())) == 2


# -- 8. mixed pongs and late pongs ---------------------------------------------------


def test_heartbeat_success_with_pongs_late_pongs_and_misses() -> None:
    """Four heartbeats: two answered on time, one answered after its timeout
    (late), one never. Success is 2 of 4: a late pong is a miss that was
    answered, and it stays a miss."""
    conn, m = live(interval=1.0, timeout=0.5)
    assert send(conn, 100.0) == 1
    assert conn.on_data(pong(1), 100.1) is None
    assert send(conn, 101.0) == 2
    assert conn.on_data(pong(2), 101.2) is None
    assert send(conn, 102.0) == 3
    assert conn.tick(102.6, None) is None  # 3 missed
    assert conn.on_data(pong(3), 102.7) is None  # 3 late
    assert send(conn, 103.0) == 4
    assert conn.tick(103.6, None) is None  # 4 missed, never answered
    iv = m.rotate(10.0)
    rec = iv.record({})
    assert (rec["pings"], rec["pongs"], rec["late"], rec["missed"]) == (4, 2, 1, 2)
    assert rec["heartbeat_success"] == 0.5
    assert rec["rtt_count"] == 3  # the late pong's RTT is kept: it is the tail
    tot = totals(m)
    assert tot["heartbeat_success"] == 0.5
    [v] = judge([Threshold("heartbeat_success", 0.5, "50%", ">=")], tot, m.total.hist)
    assert (v["ok"], v["value"]) == (True, "50.000%")


# -- 9. a threshold on a run with no data --------------------------------------------


NO_DATA = """
[thresholds]
rtt_p99 = "250ms"
heartbeat_success = "0%"
# the one client connects late in its 5 s (availability 80%): what is judged
# here is the RTT threshold with no sample, so availability's default is off
availability = "0%"
"""


def test_thresholds_without_data_fail_and_say_no_data() -> None:
    m = Metrics()
    m.count("connect_attempts", 1)
    m.count("connects", 1)
    m.rotate(10.0)
    tot = totals(m)
    checks = judge(
        [
            Threshold("rtt_p99", 0.25, "250ms"),
            Threshold("heartbeat_success", 0.0, "0%", ">="),
            Threshold("missed", 0.0, "0"),
        ],
        tot,
        m.total.hist,
    )
    assert [(v["ok"], v["value"]) for v in checks] == [
        (False, "no data"),
        (False, "no data"),
        (True, "0"),  # a count of zero is a measurement
    ]
    assert checks[0]["text"] == "FAIL rtt_p99 <= 250ms: no data"
    profile = make_profile(one_client() + NO_DATA)
    code, why = exit_code("completed", tot, checks, profile)
    assert code == EXIT_THRESHOLDS
    assert why == "thresholds failed: rtt_p99 (no data), heartbeat_success (no data)"


async def test_a_run_that_measured_no_rtt_fails_its_rtt_threshold(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Every heartbeat goes unanswered: the run has no RTT sample, and an RTT
    threshold cannot pass on nothing."""
    gateway = Gateway(GatewayConfig(bugs=(NoPong(1.0),)))
    profile = make_profile(one_client(hold="5s", attempts=1) + NO_DATA, results=tmp_path)
    outcome, _ = await run_in_memory(profile, tmp_path, gateway_opener(gateway))
    assert outcome.summary["totals"]["pongs"] == 0
    assert outcome.summary["totals"]["missed"] > 0
    assert outcome.exit_code == EXIT_THRESHOLDS
    assert outcome.summary["verdict"] == "thresholds failed: rtt_p99 (no data)"
    rtt = next(v for v in outcome.summary["thresholds"] if v["name"] == "rtt_p99")
    assert (rtt["ok"], rtt["value"]) == (False, "no data")


# -- point 4: pings pending at a server close ----------------------------------------

INCIDENT = ServerHeartbeat(interval=30.0, timeout=120.0, max_missed=3)


@pytest.mark.parametrize(
    ("last_pong", "missed", "key"),
    [(2.0, 0, FALSE_TIMEOUT), (None, 5, JUSTIFIED_TIMEOUT), (130.0, 3, JUSTIFIED_TIMEOUT)],
)
def test_pings_pending_at_a_server_close_do_not_change_the_verdict(
    last_pong: float | None, missed: int, key: str
) -> None:
    """Decided: a ping still waiting for its answer proves neither that the
    client was alive (nothing came back) nor that it was silent (its timeout
    has not passed). The verdict reads only decided evidence; the pending
    pings are in the close event and counted as abandoned."""
    c = Classifier(INCIDENT)
    verdicts = set()
    for pending in (0, 1, 3):
        ev = Evidence(
            age=600.0,
            last_pong_age=last_pong,
            last_frame_age=last_pong,
            consecutive_missed=missed,
            pings_pending=pending,
        )
        verdicts.add(c.classify(CloseInfo(SERVER, 4000, "heartbeat timeout", evidence=ev)))
    [verdict] = verdicts
    assert verdict.key == key


async def slow_pong_server(stream: trio.abc.Stream, *, close_at: float) -> None:
    """Answers each JSON ping 0.3 s later; closes with 4000 at ``close_at``
    (trio time), while the client's ping of that second is unanswered."""
    ws = WSConnection(ConnectionType.SERVER)

    async def later(data: bytes, delay: float) -> None:
        await trio.sleep(delay)
        if ws.state is ConnectionState.OPEN:
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:

        async def close() -> None:
            await trio.sleep_until(close_at)
            await stream.send_all(ws.send(CloseConnection(4000, "heartbeat timeout")))

        while True:
            data = await stream.receive_some(65536)
            if not data:
                nursery.cancel_scope.cancel()
                return
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, Request):
                    await stream.send_all(ws.send(AcceptConnection()))
                    nursery.start_soon(close)
                elif isinstance(event, TextMessage):
                    seq = json.loads(event.data)["seq"]
                    reply = ws.send(TextMessage(json.dumps({"type": "pong", "seq": seq})))
                    nursery.start_soon(later, reply, 0.3)
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        await stream.send_all(ws.send(event.response()))
                    nursery.cancel_scope.cancel()
                    return


async def test_a_server_close_with_a_ping_pending_is_judged_and_the_ping_abandoned(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    profile = make_profile(
        one_client(hold="6s", attempts=1),
        results=tmp_path,
        target_extra='server_heartbeat = { interval = "1s", timeout = "4s", max_missed = 3 }\n',
    )
    opener = serving(partial(slow_pong_server, close_at=trio.current_time() + 5.1))
    outcome, _ = await run_in_memory(profile, tmp_path, opener)
    tot = outcome.summary["totals"]
    close = next(e for e in events(tmp_path) if e.get("reason") == FALSE_TIMEOUT)
    # the ping of the 5 s slot went out (1 ms early) 0.1 s before the close; its
    # pong was due at 5.3; the one before came at 4.3
    assert close["evidence"]["pings_pending"] == 1
    assert close["evidence"]["consecutive_missed"] == 0
    assert close["why"].startswith("last pong 0.801s ago < server timeout 4s")
    assert tot["false_timeouts"] == 1
    assert tot["abandoned"] >= 1
    assert tot["missed"] == 0  # an abandoned ping is not a miss


# -- point 4: the server's count next to ours, and the sign of the gap ---------------


async def fixed_stats(count: int, stream: trio.SocketStream) -> None:
    """A stats endpoint that always reports ``count`` connections."""
    with trio.move_on_after(5):
        await stream.receive_some(65536)
        body = json.dumps({"connections": count}).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        await stream.send_all(head.encode() + body)
    await stream.aclose()


RECONCILE = """
[run]
label = "gap"
report_interval = "1s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 10
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "2500ms"
[heartbeat]
interval = "500ms"
timeout = "2s"
"""


@pytest.mark.process
@pytest.mark.slow
@pytest.mark.parametrize(("server_count", "gap"), [(13, 3), (8, -2)])
async def test_the_gap_is_the_servers_count_minus_ours(
    tmp_path: Path, server_count: int, gap: int
) -> None:
    """A server that counts 3 connections it no longer holds (stale
    sessions) shows a positive gap; one that lost track of 2 it still holds,
    a negative one. Our 10 clients are connected throughout."""
    gateway = Gateway(GatewayConfig(host="127.0.0.1", port=0))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            ws_port = await nursery.start(gateway.serve)
            [listener] = await nursery.start(
                partial(trio.serve_tcp, host="127.0.0.1"), partial(fixed_stats, server_count), 0
            )
            stats_port = listener.socket.getsockname()[1]
            profile = make_profile(
                RECONCILE,
                url=f"ws://127.0.0.1:{ws_port}/ws",
                results=tmp_path,
                target_extra=f'[target.stats]\nurl = "http://127.0.0.1:{stats_port}/s"\n'
                'field = "connections"\ntimeout = "500ms"\n',
            )
            recorder = Recorder(tmp_path, profile.run.label, now_wall())
            outcome = await Runner(profile, recorder, manage_gc=False).run()
            nursery.cancel_scope.cancel()
    intervals = [
        json.loads(x) for x in (recorder.path / "intervals.jsonl").read_text().splitlines()
    ]
    assert len(intervals) == 3
    for iv in intervals:
        assert (iv["server_connections"], iv["client_connections"]) == (server_count, 10)
        assert iv["connection_gap"] == gap
    rec = outcome.summary["reconcile"]
    assert rec["max_gap"] == gap
    assert rec["last_gap"] == gap
    assert rec["polls"] == 3
