"""The reference gateway's I/O, on memory streams under MockClock.

A tiny wsproto client stands in for ``soak``'s client engine, so these tests
pin the gateway's behaviour without depending on the rest of the package.
Times are exact virtual times: the mock clock only moves when every task is
blocked, so nothing here sleeps for real.
"""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
import trio
import trio.testing
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol

from soak.gateway import Gateway, GatewayConfig, run_gateway
from tests.support.wsclient import DEADLOCK_AFTER, FAST, WsClient, connect


async def test_json_ping_gets_pong_with_same_seq(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST, wall_clock=lambda: 1_700_000_000.25)
    client = await connect(gateway, nursery)
    assert await client.ping(seq=12345) == {
        "type": "pong",
        "timestamp": 13345,
        "clientId": "abc123",
        "seq": 12345,
        "serverTime": 1_700_000_000_250,
    }
    stats = gateway.stats()
    assert (stats["pings_received"], stats["pongs_sent"], stats["connections"]) == (1, 1, 1)


async def test_rfc6455_ping_gets_pong_with_same_payload(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    client = await connect(gateway, nursery)
    await client.send(Ping(payload=b"seq=42"))
    assert await client.next_event() == Pong(payload=b"seq=42")
    assert gateway.stats()["ws_pings_received"] == 1


async def test_silent_client_is_closed_when_max_missed_and_timeout_both_passed(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    nursery.start_soon(gateway.run_checker)
    client = await connect(gateway, nursery)
    event = await client.next_event()
    assert event == CloseConnection(code=4000, reason="heartbeat_timeout")
    # Expired at age 30 (3 missed of 10 s; timeout 25 alone is not enough),
    # noticed at the checker's next tick: 4, 8, ..., 32.
    assert trio.current_time() == 32.0
    await client.send(event.response())
    assert await client.read_until_eof() == b""
    stats = gateway.stats()
    assert stats["closes_by_reason"] == {"heartbeat_timeout": 1}
    assert stats["connections"] == 0


@pytest.mark.parametrize("beat_every", [10.0, 28.0])
async def test_beating_client_survives_a_simulated_hour(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, beat_every: float
) -> None:
    # 28 s between beats exceeds the 25 s timeout but misses only 2 beats:
    # exactly the live client the incident's gateway killed.
    gateway = Gateway(FAST)
    nursery.start_soon(gateway.run_checker)
    client = await connect(gateway, nursery)
    seq = 0
    while trio.current_time() + beat_every <= 3600.0:
        await trio.sleep(beat_every)
        seq += 1
        assert (await client.ping(seq))["seq"] == seq
    assert trio.current_time() >= 3600.0 - beat_every
    stats = gateway.stats()
    assert stats["connections"] == 1
    assert stats["closes_by_reason"] == {}
    assert stats["pings_received"] == seq


async def test_client_pongs_to_server_pings_count_as_heartbeats(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    config = GatewayConfig(
        hb_interval=10.0, hb_timeout=25.0, max_missed=3, check_every=4.0, server_ping_interval=15.0
    )
    gateway = Gateway(config)
    nursery.start_soon(gateway.run_checker)
    client = await connect(gateway, nursery)
    ping_times = []
    with trio.move_on_after(100.0):
        while True:
            event = await client.next_event()
            assert isinstance(event, Ping)
            ping_times.append(trio.current_time())
            await client.send(event.response())
    assert ping_times == [15.0, 30.0, 45.0, 60.0, 75.0, 90.0]
    stats = gateway.stats()
    assert (stats["server_pings_sent"], stats["ws_pongs_received"]) == (6, 6)
    assert stats["closes_by_reason"] == {}


async def test_malformed_and_other_messages_are_counted_and_connection_survives(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    client = await connect(gateway, nursery)
    await client.send(TextMessage(data="{not json"))
    await client.send(TextMessage(data="[" * 5_000))  # too deep for json: still malformed
    await client.send(TextMessage(data='{"type":"hello"}'))
    await client.send(TextMessage(data="[1, 2]"))
    await client.send(BytesMessage(data=b"\x00\x01"))
    assert (await client.ping(seq=7))["seq"] == 7
    stats = gateway.stats()
    assert stats["messages_other"] == 3
    assert stats["messages_malformed"] == 2
    assert stats["connections"] == 1


async def test_fragmented_json_ping_is_reassembled(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    client = await connect(gateway, nursery)
    await client.send(TextMessage(data='{"type":"ping",', message_finished=False))
    await client.send(TextMessage(data='"seq":9}', message_finished=True))
    event = await client.next_event()
    assert isinstance(event, TextMessage)
    assert json.loads(event.data)["seq"] == 9


async def test_client_close_is_answered_and_recorded(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    client = await connect(gateway, nursery)
    await client.send(CloseConnection(code=1000, reason="bye"))
    assert await client.next_event() == CloseConnection(code=1000, reason="bye")
    assert await client.read_until_eof() == b""
    assert gateway.stats()["closes_by_reason"] == {"client_1000": 1}
    assert gateway.stats()["connections"] == 0


async def test_transport_drop_is_recorded(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    nursery.start_soon(gateway.run_checker)
    client = await connect(gateway, nursery)
    await client.stream.aclose()
    await trio.sleep(1.0)
    assert gateway.stats()["closes_by_reason"] == {"transport_lost": 1}
    assert len(gateway.heartbeats) == 0


async def test_invalid_utf8_is_a_protocol_error(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    client = await connect(gateway, nursery)
    # A masked text frame (mask key 0) whose payload is not UTF-8.
    await client.stream.send_all(b"\x81\x81\x00\x00\x00\x00\xff")
    event = await client.next_event()
    assert isinstance(event, CloseConnection)
    assert event.code == 1007
    await client.read_until_eof()
    assert gateway.stats()["closes_by_reason"] == {"protocol_error": 1}


async def test_shutdown_sends_going_away(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    client_side, server_side = trio.testing.memory_stream_pair()
    server_scope = trio.CancelScope()

    async def run_server() -> None:
        with server_scope:
            await gateway.handle_stream(server_side)

    nursery.start_soon(run_server)
    client = WsClient(client_side)
    await client.handshake()
    server_scope.cancel()  # what shutting down serve()'s nursery does to each connection
    event = await client.next_event()
    assert event == CloseConnection(code=1001, reason="going away")
    await client.send(event.response())
    assert await client.read_until_eof() == b""
    assert trio.current_time() == 0.0  # the answered close is not waited out
    assert gateway.stats()["closes_by_reason"] == {"server_shutdown": 1}


async def test_silent_client_is_dropped_during_handshake(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    client_side, server_side = trio.testing.memory_stream_pair()
    nursery.start_soon(gateway.handle_stream, server_side)
    await client_side.send_all(b"GET /ws HTTP/1.1\r\n")
    assert await client_side.receive_some() == b""
    assert trio.current_time() == FAST.handshake_timeout
    assert gateway.stats()["handshake_failures"] == 1


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n", b"200"),
        (b"POST /api/stats HTTP/1.1\r\nHost: x\r\n\r\n", b"405"),
        (b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
        (b"nonsense\r\n\r\n", b"400"),
        # Upgrade without Sec-WebSocket-Key: wsproto rejects the handshake.
        (
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"400",
        ),
    ],
)
async def test_plain_http_on_memory_streams(
    autojump_clock: trio.testing.MockClock, request_bytes: bytes, status: bytes
) -> None:
    gateway = Gateway(FAST)
    client_side, server_side = trio.testing.memory_stream_pair()
    with trio.fail_after(DEADLOCK_AFTER):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gateway.handle_stream, server_side)
            await client_side.send_all(request_bytes)
            reply = b""
            while data := await client_side.receive_some():
                reply += data
        assert reply.split(b" ", 2)[1] == status


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """GET over a raw socket; returns (status, body)."""
    sock = trio.socket.socket()
    with sock:
        await sock.connect(("127.0.0.1", port))
        await sock.send(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        reply = b""
        while data := await sock.recv(65536):
            reply += data
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.process
async def test_serve_on_loopback_answers_websocket_and_stats() -> None:
    gateway = Gateway(GatewayConfig(port=0))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            client = WsClient(await trio.open_tcp_stream("127.0.0.1", port))
            await client.handshake()
            assert (await client.ping(seq=1))["seq"] == 1
            await client.send(Ping(payload=b"1"))
            assert await client.next_event() == Pong(payload=b"1")

            status, body = await http_get(port, "/api/stats")
            assert status == 200
            stats = json.loads(body)
            assert stats["connections"] == 1
            assert stats["accepted_total"] == 1
            assert stats["pings_received"] == 1
            assert stats["pongs_sent"] == 1
            assert stats["ws_pings_received"] == 1
            assert stats["closes_by_reason"] == {}
            assert stats["heartbeat"] == {"interval": 30.0, "timeout": 120.0, "max_missed": 3}
            assert (await http_get(port, "/nope"))[0] == 404

            await client.send(CloseConnection(code=1000))
            assert await client.next_event() == CloseConnection(code=1000, reason="")
            await client.read_until_eof()
            nursery.cancel_scope.cancel()
    assert gateway.stats()["closes_by_reason"] == {"client_1000": 1}
    assert gateway.stats()["http_requests"] == 2


@pytest.mark.process
async def test_run_gateway_prints_port_and_says_going_away_on_sigterm(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_gateway, GatewayConfig(port=0))
            line = ""
            while "\n" not in line:  # run_gateway prints once the port is bound
                await trio.testing.wait_all_tasks_blocked()
                line += capsys.readouterr().out
            match = re.fullmatch(r"soak gateway listening on 127\.0\.0\.1:(\d+)\n", line)
            assert match is not None, line
            client = WsClient(await trio.open_tcp_stream("127.0.0.1", int(match[1])))
            await client.handshake()
            os.kill(os.getpid(), signal.SIGTERM)
            event = await client.next_event()
            assert event == CloseConnection(code=1001, reason="going away")
            await client.send(event.response())
        # run_gateway returned on its own: the nursery exited without a cancel.


async def test_oversized_text_is_counted_not_buffered(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    client = await connect(gateway, nursery)
    huge_ping = json.dumps({"type": "ping", "seq": 1, "pad": "x" * 100_000})
    await client.send(TextMessage(data=huge_ping))
    assert (await client.ping(seq=2))["seq"] == 2  # the huge one got no answer
    assert gateway.stats()["messages_other"] == 1
    assert gateway.stats()["pings_received"] == 1


async def test_frames_right_behind_the_handshake_are_not_lost(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    client_side, server_side = trio.testing.memory_stream_pair()
    nursery.start_soon(gateway.handle_stream, server_side)
    client = WsClient(client_side)
    upgrade = client.ws.send(Request(host="gateway.test", target="/ws"))
    ping_frame = FrameProtocol(client=True, extensions=[]).send_data('{"type":"ping","seq":5}')
    await client_side.send_all(upgrade + ping_frame)  # one write, one read on the server
    assert isinstance(await client.next_event(), AcceptConnection)
    event = await client.next_event()
    assert isinstance(event, TextMessage)
    assert json.loads(event.data)["seq"] == 5


async def test_works_on_lockstep_streams(autojump_clock: trio.testing.MockClock) -> None:
    # No buffering at all: every send waits for the peer's read.
    gateway = Gateway(FAST)
    client_side, server_side = trio.testing.lockstep_stream_pair()
    with trio.fail_after(DEADLOCK_AFTER):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gateway.handle_stream, server_side)
            client = WsClient(client_side)
            await client.handshake()
            for seq in range(3):
                assert (await client.ping(seq))["seq"] == seq
            await client.send(CloseConnection(code=1000))
            assert isinstance(await client.next_event(), CloseConnection)
            await client.read_until_eof()
        assert gateway.stats()["closes_by_reason"] == {"client_1000": 1}


async def test_checker_reports_how_many_it_closed(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    clients = [await connect(gateway, nursery) for _ in range(3)]
    await trio.sleep(20.0)
    assert (await clients[1].ping(seq=1))["seq"] == 1
    assert gateway.check(trio.current_time() + 10.0) == 2  # the two silent ones
    assert gateway.check(trio.current_time() + 10.0) == 0  # not reported twice
    for client in (clients[0], clients[2]):
        event = await client.next_event()
        assert isinstance(event, CloseConnection)
        assert event.code == 4000
