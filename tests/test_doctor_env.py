"""soak doctor: the environment checks, with injected facts and against the
reference gateway on 127.0.0.1."""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path

import pytest
import trio

from soak.config.profile import Profile
from soak.config.target import StatsConfig
from soak.doctor.environment import (
    Host,
    check_fds,
    check_loop_lag,
    check_memory,
    check_ports,
    check_sockets,
    count_states,
    parse_tcp_table,
    run_environment,
)
from soak.doctor.findings import ERROR, INFO, WARNING, Finding
from soak.doctor.target import check_stats, check_target
from soak.gateway import Gateway, GatewayConfig
from soak.limits import CLIENT_BYTES
from tests.support.runs import make_profile

FIXTURES = Path(__file__).parent / "fixtures" / "doctor"
STAGES = '[clients]\n[[clients.stages]]\nkind = "ramp"\nto = 5\nduration = "1s"\n'


def one(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


# -- descriptors, ports, memory: injected limits ----------------------------------


def test_fd_limits() -> None:
    assert one(check_fds(1000, 4096, 4096)).code == "fd-limit-ok"
    raised = one(check_fds(10_000, 1024, 20_000))
    assert raised.code == "fd-limit-raised"
    assert raised.severity == INFO
    low = one(check_fds(20_000, 1024, 20_000))
    assert low.code == "fd-limit-too-low"
    assert low.severity == ERROR
    assert "20064 descriptors" in low.message
    assert "at most 19936 clients" in low.fix
    assert "soak run --workers 2 or --workers auto" in low.fix
    # soak raises the soft limit only up to 65536, whatever the hard limit
    assert one(check_fds(70_000, 1024, 1_000_000)).code == "fd-limit-too-low"
    # with worker processes each holds its share
    split = one(check_fds(50_000, 1024, 20_000, workers=3))
    assert split.code == "fd-limit-raised"
    assert split.message.startswith("3 worker processes: 16667 clients at the peak")
    assert one(check_fds(50_000, 1024, 20_000, workers=2)).code == "fd-limit-too-low"


def test_ephemeral_ports() -> None:
    ok = one(check_ports(19_000, "32768\t60999\n"))
    assert ok.code == "ephemeral-ports-ok"
    assert "28232 ephemeral ports" in ok.message
    tight = one(check_ports(25_000, "32768 60999"))
    assert tight.code == "ephemeral-ports-tight"
    assert tight.severity == WARNING
    out = one(check_ports(30_000, "32768 60999"))
    assert out.code == "ephemeral-ports-exhausted"
    assert out.severity == ERROR
    assert "source addresses" in out.fix
    assert "ip_local_port_range" in out.fix
    assert one(check_ports(30_000, "32768 60999", pairs=2)).code == "ephemeral-ports-ok"
    assert one(check_ports(10, None)).code == "ephemeral-ports-unknown"
    assert one(check_ports(10, "garbage")).severity == WARNING


def test_memory_estimate() -> None:
    est = one(check_memory(20_000, 8 * 2**30))
    assert est.code == "memory-estimate"
    assert "10 KiB" in est.message
    assert "195 MiB" in est.message  # 20,000 x 10 KiB
    need = int(1000 * CLIENT_BYTES)
    assert one(check_memory(1000, need - 1)).code == "memory-short"
    assert one(check_memory(1000, need + need // 2)).code == "memory-tight"
    assert "unknown" in one(check_memory(1000, None)).message


# -- sockets from /proc/net/tcp* ----------------------------------------------------


def test_tcp_table_parsing() -> None:
    text = (FIXTURES / "proc-net-tcp.txt").read_text()
    rows = parse_tcp_table(text)
    assert rows[0] == (19045, 0, "LISTEN")
    assert rows[3] == (19045, 50002, "CLOSE_WAIT")
    assert rows[4] == (50003, 19045, "TIME_WAIT")
    assert parse_tcp_table("header\n  0: garbage\n") == []


def test_socket_counts_and_close_wait_warning() -> None:
    tables = [(FIXTURES / n).read_text() for n in ("proc-net-tcp.txt", "proc-net-tcp6.txt")]
    counts = count_states(tables, 19045)
    assert counts == Counter({"ESTABLISHED": 2, "CLOSE_WAIT": 2, "TIME_WAIT": 1, "LISTEN": 1})
    found = check_sockets(counts, 19045)
    assert codes(found) == ["sockets", "sockets-close-wait"]
    assert "CLOSE_WAIT 2" in found[0].message
    assert "ESTABLISHED 2" in found[0].message
    assert found[1].severity == WARNING
    assert "2 of 4" in found[1].message
    # another port: only the one socket on 8080
    assert count_states(tables, 8080) == Counter({"ESTABLISHED": 1})
    healthy = Counter({"ESTABLISHED": 100, "CLOSE_WAIT": 1})
    assert codes(check_sockets(healthy, 1)) == ["sockets"]


def test_loop_lag() -> None:
    assert one(check_loop_lag([0.0001] * 50)).code == "loop-lag"
    high = one(check_loop_lag([0.0001] * 40 + [0.02] * 10))
    assert high.code == "loop-lag-high"
    assert "p99 20.00 ms" in high.message
    assert check_loop_lag([]) == []


# -- the target: the reference gateway ------------------------------------------------


def gateway_profile(port: int, protocol: str = "json", stats: str = "") -> Profile:
    return make_profile(
        STAGES, url=f"ws://127.0.0.1:{port}/ws", protocol=protocol, target_extra=stats
    )


HOST = Host(
    fd_soft=1024,
    fd_hard=4096,
    port_range="32768 60999",
    mem_available=2**30,
    tcp_tables=((FIXTURES / "proc-net-tcp.txt").read_text(),),
)


@pytest.mark.process
async def test_target_and_stats_against_the_reference_gateway() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(Gateway(GatewayConfig()).serve)
            stats = f'[target.stats]\nurl = "http://127.0.0.1:{port}/api/stats"\n'
            found = await run_environment(gateway_profile(port, stats=stats), HOST)
            # the loop lag depends on this machine's load; the rest does not
            got = ["loop-lag" if c == "loop-lag-high" else c for c in codes(found)]
            assert got == [
                "fd-limit-ok",
                "ephemeral-ports-ok",
                "memory-estimate",
                "target-tcp-ok",
                "target-handshake-ok",
                "target-heartbeat-ok",
                "stats-ok",
                "loop-lag",
                "sockets",
            ]
            hb = next(f for f in found if f.code == "target-heartbeat-ok")
            assert "json heartbeat, RTT" in hb.message
            assert "connections = " in next(f for f in found if f.code == "stats-ok").message
            ws_ping = await check_target(gateway_profile(port, protocol="ws-ping"), 5)
            assert codes(ws_ping) == ["target-tcp-ok", "target-handshake-ok", "target-heartbeat-ok"]
            assert "ws-ping heartbeat, RTT" in ws_ping[-1].message
            nursery.cancel_scope.cancel()


@pytest.mark.process
async def test_handshake_refused() -> None:
    async def refuse(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, refuse, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            found = await check_target(gateway_profile(port), 5)
            assert codes(found) == ["target-tcp-ok", "target-handshake-failed"]
            assert "refused: HTTP 403" in found[-1].message
            nursery.cancel_scope.cancel()


@pytest.mark.process
async def test_stats_field_missing() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(Gateway(GatewayConfig()).serve)
            bad = StatsConfig(url=f"http://127.0.0.1:{port}/api/stats", field="nope")
            stats = one(await check_stats(bad))
            assert stats.code == "stats-unreadable"
            assert 'no key "nope"' in stats.message
            nursery.cancel_scope.cancel()


@pytest.mark.process
async def test_target_down() -> None:
    # bind a port, then close it: nothing listens there
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with trio.fail_after(10):
        found = await check_target(gateway_profile(port), 2)
        f = one(found)
        assert f.code == "target-tcp-failed"
        assert f.severity == ERROR
        assert f"127.0.0.1:{port}" in f.message
        stats = await check_stats(StatsConfig(url=f"http://127.0.0.1:{port}/s", timeout=2))
        assert one(stats).code == "stats-unreadable"


@pytest.mark.process
async def test_heartbeat_without_pong_times_out() -> None:
    """A server that accepts the upgrade and then says nothing."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request

    async def silent(stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, Request):
                    await stream.send_all(ws.send(AcceptConnection()))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            found = await check_target(gateway_profile(port), 0.5)
            assert codes(found) == [
                "target-tcp-ok",
                "target-handshake-ok",
                "target-heartbeat-failed",
            ]
            assert "no pong within 0.5 s" in found[-1].message
            nursery.cancel_scope.cancel()
