"""Wire-true RTT (soak.wire): the kernel's receive times mapped onto the
run's clock, a wall-clock step never recorded as RTT, and rtt_wire /
rx_delay recorded by the connection. Plain numbers; the known-answer test
against tcpdump is tests/test_wire_tcpdump.py."""

from __future__ import annotations

import struct

import pytest
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType
from wsproto.events import TextMessage

from soak.client.connection import Connection
from soak.heartbeat import HeartbeatEngine
from soak.metrics import Metrics
from soak.protocols import JsonPing
from soak.run.finish import kernel_timestamps
from soak.wire import SCM_TIMESTAMPNS, SOL_SOCKET, WireClock, kernel_time
from tests.support.runs import make_profile, one_client


def test_the_kernel_time_is_read_from_its_control_message() -> None:
    stamp = struct.pack("@qq", 1_790_000_000, 250_000_000)
    assert kernel_time([(SOL_SOCKET, SCM_TIMESTAMPNS, stamp)]) == 1_790_000_000.25
    assert kernel_time([]) is None
    assert kernel_time([(0, SCM_TIMESTAMPNS, stamp)]) is None  # another level
    assert kernel_time([(SOL_SOCKET, SCM_TIMESTAMPNS, b"\x00" * 8)]) is None  # short


def test_kernel_times_map_onto_the_monotonic_clock_by_the_reads_offset() -> None:
    w = WireClock()
    assert w.observe(real=1000.5, mono=10.0)  # offset 990.5
    assert w.to_monotonic(1000.4995) == pytest.approx(9.9995)


def test_a_slewing_clock_is_not_a_step_but_a_jump_is() -> None:
    w = WireClock()
    assert w.observe(1000.0, 0.0)
    # 30 s later, 10 ms off: within 1 ms + 500 ppm x 30 s = 16 ms, a slew
    assert w.observe(1030.010, 30.0)
    assert w.steps == 0
    # 2 ms in 0.1 s: over 1 ms + 0.05 ms: a step
    assert not w.observe(1030.112, 30.1)
    assert w.steps == 1
    # from the new offset on, reads are trusted again
    assert w.observe(1030.212, 30.2)
    assert w.steps == 1


def test_a_step_backwards_is_a_step_too() -> None:
    w = WireClock()
    w.observe(1000.0, 0.0)
    assert not w.observe(990.0, 1.0)


def _wired() -> tuple[Connection, Metrics, HeartbeatEngine]:
    conn = Connection(WsConnection(ConnectionType.CLIENT), opened_at=100.0)
    m = Metrics()
    hb = HeartbeatEngine(interval=1.0, timeout=0.5, max_missed=3, origin=100.0, now=100.0)

    class Clock:
        t0 = 100.0
        wall0 = 1_790_000_000.0

    conn.start(hb, JsonPing("c"), m, Clock(), 100.0, wire=WireClock())
    return conn, m, hb


def _pong(seq: int) -> bytes:
    server = WsConnection(ConnectionType.SERVER)
    return server.send(TextMessage(data=f'{{"type":"pong","seq":{seq}}}'))


def _hist(m: Metrics, name: str) -> tuple[int, int]:
    h = m.current.hist[name]
    return h.get_total_count(), h.get_max_value()


def test_rtt_wire_runs_from_the_send_call_to_the_kernels_receive_time() -> None:
    conn, m, _hb = _wired()
    conn.tick(100.0, None)  # the ping, built at 100.000
    conn.pinged(at=100.0002)  # its send call started 200 us later
    conn.rx_at = 100.0009  # the kernel had the pong at 100.0009
    conn.on_data(_pong(1), 100.0015)  # soak read it at 100.0015
    count, wire_us = _hist(m, "rtt_wire")
    assert count == 1
    assert wire_us == pytest.approx(700, abs=1)
    assert _hist(m, "rx_delay")[1] == pytest.approx(600, abs=1)
    assert _hist(m, "rtt_service")[1] == pytest.approx(1500, abs=2)
    # rtt_service - rtt_wire = rx_delay + the send side's 200 us


def test_a_read_across_a_clock_step_records_no_wire_sample_but_counts_it() -> None:
    conn, m, _hb = _wired()
    conn.tick(100.0, None)
    conn.pinged(at=100.0)
    conn.rx_at, conn.rx_step = None, True
    conn.on_data(_pong(1), 100.001)
    assert _hist(m, "rtt_wire")[0] == 0
    assert m.current.dropped_samples["rtt_wire"] == 1
    assert _hist(m, "rtt")[0] == 1  # the monotonic RTTs are unaffected


def test_without_a_kernel_time_there_is_no_wire_sample_and_nothing_pretends() -> None:
    conn, m, _hb = _wired()
    conn.tick(100.0, None)
    conn.pinged(at=100.0)
    conn.on_data(_pong(1), 100.001)  # rx_at None: an in-memory stream
    assert _hist(m, "rtt_wire")[0] == 0
    assert m.current.dropped_samples["rtt_wire"] == 0


def test_run_json_says_why_there_is_no_wire_rtt() -> None:
    off = make_profile(one_client())
    assert kernel_timestamps(off) == {
        "requested": False,
        "available": False,
        "why_not": "[heartbeat] kernel_timestamps is off",
    }
    body = one_client().replace("max_missed = 3\n", "max_missed = 3\nkernel_timestamps = true\n")
    tls = make_profile(body, url="wss://127.0.0.1:9/ws")
    assert kernel_timestamps(tls)["why_not"].startswith("wss:// (TLS)")
    plain = make_profile(body)
    assert kernel_timestamps(plain) == {"requested": True, "available": True, "why_not": None}


def test_a_threshold_may_name_rtt_wire() -> None:
    body = one_client() + '\n[thresholds]\nrtt_wire_p99 = "5ms"\nrx_delay_p99 = "1ms"\n'
    names = [t.name for t in make_profile(body).thresholds]
    assert "rtt_wire_p99" in names
    assert "rx_delay_p99" in names


def test_compare_shows_rtt_wire_beside_rtt_when_a_run_measured_it() -> None:
    from types import SimpleNamespace
    from typing import Any, cast

    from soak.report.compare_rows import wire_rows

    def data(wire: dict[str, Any] | None) -> Any:
        latency = {} if wire is None else {"rtt_wire": wire}
        return SimpleNamespace(run=SimpleNamespace(summary={"latency_ms": latency}))

    with_wire = data({"count": 10, "p50": 0.4, "p99": 2.0})
    without = data(None)
    rows = wire_rows(cast(Any, [with_wire, without]))
    assert [(r.key, r.values) for r in rows] == [
        ("rtt_wire_p50", [0.4, None]),
        ("rtt_wire_p99", [2.0, None]),
    ]
    assert wire_rows(cast(Any, [without, without])) == []
