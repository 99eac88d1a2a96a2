"""The reference gateway's simulated restart (``Gateway.restart`` and
``POST /admin/restart``): clients closed with 1012, then 503 + Retry-After for
the outage, then business as usual.

Memory streams under the autojump MockClock, so every time asserted is an
exact virtual time; one test uses real loopback sockets for the admin
endpoint's loopback check.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request

from soak.errors import LocalError
from soak.gateway import Gateway, GatewayConfig, run_gateway
from soak.gateway.http import parse_request_head
from soak.gateway.restart import Outage
from soak.gateway.routes import _from_loopback, is_loopback_address
from tests.support.wsclient import FAST, WsClient, connect

RESTART_CLOSE = CloseConnection(code=1012, reason="service restart")


class Reply:
    """A parsed HTTP response."""

    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def json(self) -> Any:
        return json.loads(self.body)


async def request(gateway: Gateway, nursery: trio.Nursery, data: bytes) -> Reply:
    """Send raw request bytes over a fresh memory stream; the whole reply."""
    client_side, server_side = trio.testing.memory_stream_pair()
    nursery.start_soon(gateway.handle_stream, server_side)
    await client_side.send_all(data)
    raw = b""
    while chunk := await client_side.receive_some():
        raw += chunk
    return Reply(raw)


def upgrade_request() -> bytes:
    return WSConnection(ConnectionType.CLIENT).send(Request(host="gateway.test", target="/ws"))


def http_request(method: str, target: str) -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: gateway.test\r\n\r\n".encode()


async def expect_restart_close(client: WsClient) -> None:
    """The client gets 1012, answers it, and the gateway hangs up."""
    event = await client.next_event()
    assert event == RESTART_CLOSE
    assert isinstance(event, CloseConnection)
    await client.send(event.response())
    assert await client.read_until_eof() == b""


async def test_restart_closes_every_client_with_1012_at_the_restart_instant(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    clients = [await connect(gateway, nursery) for _ in range(3)]
    await trio.sleep(3.0)
    await clients[0].ping(seq=1, client_id="first")
    assert gateway.restart(5.0) == 3
    for client in clients:
        await expect_restart_close(client)
        assert trio.current_time() == 3.0  # answered closes are not waited out
    stats = gateway.stats()
    assert stats["closes_by_reason"] == {"service_restart": 3}
    assert stats["connections"] == 0
    assert (stats["restarts"], stats["refusing_until"], stats["refused_during_restart"]) == (
        1,
        5.0,
        0,
    )
    assert [(r["t"], r["conn"], r["reason"], r["code"]) for r in gateway.truth] == [
        (3.0, 1, "service_restart", 1012),
        (3.0, 2, "service_restart", 1012),
        (3.0, 3, "service_restart", 1012),
    ]
    # Recorded while the heartbeat manager still knew the connections.
    assert gateway.truth[0]["client_id"] == "first"
    assert [r["last_beat_age"] for r in gateway.truth] == [0.0, 3.0, 3.0]
    assert gateway.stats()["false_kills"] == 0


async def test_client_that_does_not_answer_is_hung_up_after_close_wait(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    client = await connect(gateway, nursery)
    gateway.restart(1.0)
    assert await client.next_event() == RESTART_CLOSE
    assert await client.read_until_eof() == b""
    assert trio.current_time() == FAST.close_wait
    assert gateway.stats()["closes_by_reason"] == {"service_restart": 1}


async def test_upgrade_during_the_outage_gets_503_with_retry_after(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    await trio.sleep(10.0)
    gateway.restart(5.0)  # refusing during [10, 15)
    expected_retry = {10.0: "5", 11.5: "4", 14.2: "1"}
    for at, retry_after in expected_retry.items():
        await trio.sleep_until(at)
        assert gateway.refusing(trio.current_time())
        reply = await request(gateway, nursery, upgrade_request())
        assert trio.current_time() == at
        assert reply.status == 503
        assert reply.headers["retry-after"] == retry_after
        assert reply.headers["connection"] == "close"
        assert reply.body == b"service restarting\n"
    stats = gateway.stats()
    assert stats["refused_during_restart"] == 3
    assert stats["accepted_total"] == 0
    assert stats["handshake_failures"] == 0


async def test_upgrade_after_the_outage_succeeds(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    gateway.restart(5.0)
    await trio.sleep(4.999)
    assert gateway.refusing(trio.current_time())
    assert (await request(gateway, nursery, upgrade_request())).status == 503
    await trio.sleep_until(5.0)
    assert not gateway.refusing(trio.current_time())
    client = await connect(gateway, nursery)
    assert (await client.ping(seq=7))["seq"] == 7
    stats = gateway.stats()
    assert (stats["connections"], stats["refusing_until"], stats["refused_during_restart"]) == (
        1,
        None,
        1,
    )


async def test_restart_during_an_outage_extends_it_and_never_shortens_it(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    gateway.restart(10.0)
    await trio.sleep(2.0)
    gateway.restart(1.0)  # ends at 3, before 10: the outage stays
    assert gateway.stats()["refusing_until"] == 8.0
    gateway.restart(20.0)  # ends at 22
    assert gateway.stats()["refusing_until"] == 20.0
    assert gateway.refusing(21.999)
    assert not gateway.refusing(22.0)
    assert gateway.stats()["restarts"] == 3


async def test_zero_outage_closes_everyone_and_refuses_nobody(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    client = await connect(gateway, nursery)
    assert gateway.restart(0.0) == 1
    assert not gateway.refusing(trio.current_time())
    await expect_restart_close(client)
    again = await connect(gateway, nursery)
    assert (await again.ping(seq=1))["seq"] == 1
    assert gateway.stats()["refusing_until"] is None


async def test_connection_mid_handshake_at_the_restart_is_closed_once_open(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    """A restart kills connections still in their handshake too: with no
    outage left to refuse it, it opens and is closed with 1012 at once."""
    gateway = Gateway(FAST)
    client_side, server_side = trio.testing.memory_stream_pair()
    nursery.start_soon(gateway.handle_stream, server_side)
    client = WsClient(client_side)
    request_bytes = client.ws.send(Request(host="gateway.test", target="/ws"))
    await client_side.send_all(request_bytes[:10])
    await trio.sleep(1.0)
    gateway.restart(0.0)
    await client_side.send_all(request_bytes[10:])
    assert isinstance(await client.next_event(), AcceptConnection)
    await expect_restart_close(client)
    assert trio.current_time() == 1.0
    assert [(r["t"], r["reason"], r["code"]) for r in gateway.truth] == [
        (1.0, "service_restart", 1012)
    ]


async def test_connection_already_expiring_is_not_closed_twice(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    client = await connect(gateway, nursery)
    await trio.sleep(30.0)
    assert gateway.check(trio.current_time()) == 1  # heartbeat expiry, not yet closed
    assert gateway.restart(5.0) == 0
    assert await client.next_event() == CloseConnection(code=4000, reason="heartbeat_timeout")
    assert [r["reason"] for r in gateway.truth] == ["heartbeat_timeout"]


@pytest.mark.parametrize("outage", [-1.0, math.inf, math.nan])
async def test_restart_rejects_a_bad_outage(
    autojump_clock: trio.testing.MockClock, outage: float
) -> None:
    gateway = Gateway(FAST)
    with pytest.raises(ValueError, match="outage"):
        gateway.restart(outage)
    assert gateway.stats()["restarts"] == 0


async def test_admin_endpoint_restarts_and_answers_202(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    clients = [await connect(gateway, nursery) for _ in range(2)]
    await trio.sleep(1.0)
    reply = await request(gateway, nursery, http_request("POST", "/admin/restart?outage=2.5"))
    assert reply.status == 202
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"restarting": True, "outage_s": 2.5, "connections_closed": 2}
    for client in clients:
        await expect_restart_close(client)
    assert trio.current_time() == 1.0
    assert gateway.refusing(3.499)
    assert not gateway.refusing(3.5)


async def test_admin_endpoint_default_outage_is_5s(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    reply = await request(gateway, nursery, http_request("POST", "/admin/restart"))
    assert reply.json() == {"restarting": True, "outage_s": 5.0, "connections_closed": 0}
    assert gateway.stats()["refusing_until"] == 5.0


async def test_admin_endpoint_is_served_during_the_outage(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    gateway.restart(5.0)
    reply = await request(gateway, nursery, http_request("POST", "/admin/restart?outage=1"))
    assert reply.status == 202
    assert gateway.stats()["restarts"] == 2


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("outage=abc", "expected seconds in 0..600, got 'abc'"),
        ("outage=-1", "expected seconds in 0..600, got '-1'"),
        ("outage=600.5", "expected seconds in 0..600, got '600.5'"),
        ("outage=nan", "got 'nan'"),
        ("outage=inf", "got 'inf'"),
        ("outage=", "got ''"),
        ("outage=1&outage=2", "outage: given more than once"),
        ("outage=1&delay=2", "unknown parameter(s) delay"),
        ("outage", "cannot parse the query string"),
    ],
)
async def test_admin_endpoint_rejects_a_bad_outage_with_400(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, query: str, message: str
) -> None:
    gateway = Gateway(FAST)
    client = await connect(gateway, nursery)
    reply = await request(gateway, nursery, http_request("POST", f"/admin/restart?{query}"))
    assert reply.status == 400
    assert message in reply.body.decode()
    assert reply.body.startswith(b"admin endpoint: ")
    assert gateway.stats()["restarts"] == 0
    assert (await client.ping(seq=1))["seq"] == 1  # nobody was closed


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_admin_endpoint_wants_post(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, method: str
) -> None:
    gateway = Gateway(FAST)
    reply = await request(gateway, nursery, http_request(method, "/admin/restart?outage=1"))
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"
    assert gateway.stats()["restarts"] == 0


async def test_admin_endpoint_can_be_turned_off(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(GatewayConfig(admin=False))
    reply = await request(gateway, nursery, http_request("POST", "/admin/restart"))
    assert reply.status == 404
    assert gateway.stats()["restarts"] == 0


def test_admin_setting_must_be_a_bool() -> None:
    with pytest.raises(LocalError, match="admin"):
        GatewayConfig(admin="yes")  # type: ignore[arg-type]


async def test_stats_are_served_during_the_outage_and_show_the_restart(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(FAST)
    client = await connect(gateway, nursery)
    await trio.sleep(2.0)
    gateway.restart(5.0)
    await expect_restart_close(client)
    await trio.sleep(1.25)
    assert (await request(gateway, nursery, upgrade_request())).status == 503
    elsewhere = await request(gateway, nursery, http_request("GET", "/elsewhere"))
    assert elsewhere.status == 503
    assert elsewhere.headers["retry-after"] == "4"
    reply = await request(gateway, nursery, http_request("GET", "/api/stats"))
    assert reply.status == 200
    stats = reply.json()
    assert stats["restarts"] == 1
    assert stats["refusing_until"] == 3.75
    assert stats["refused_during_restart"] == 2
    assert stats["closes_by_reason"] == {"service_restart": 1}
    assert trio.current_time() == 3.25
    after = await request(gateway, nursery, http_request("GET", "/elsewhere"))
    assert after.status == 503  # still refusing at 3.25
    await trio.sleep_until(7.0)
    assert (await request(gateway, nursery, http_request("GET", "/elsewhere"))).status == 404


def test_the_request_query_is_kept_for_the_admin_endpoint() -> None:
    head = parse_request_head(b"POST /admin/restart?outage=2 HTTP/1.1\r\n\r\n")
    assert head is not None
    assert (head.path, head.query) == (b"/admin/restart", b"outage=2")


async def _http_over_tcp(host: str, port: int, data: bytes) -> Reply:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(data)
        raw = b""
        while chunk := await stream.receive_some():
            raw += chunk
    return Reply(raw)


@pytest.mark.process
async def test_admin_endpoint_on_real_loopback_sockets() -> None:
    gateway = Gateway(GatewayConfig(port=0))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            client = WsClient(await trio.open_tcp_stream("127.0.0.1", port))
            await client.handshake()
            assert (await client.ping(seq=1))["seq"] == 1
            reply = await _http_over_tcp(
                "127.0.0.1", port, http_request("POST", "/admin/restart?outage=0.5")
            )
            assert reply.status == 202
            assert reply.json() == {"restarting": True, "outage_s": 0.5, "connections_closed": 1}
            await expect_restart_close(client)
            refused = await _http_over_tcp("127.0.0.1", port, upgrade_request())
            assert refused.status == 503
            assert refused.headers["retry-after"] == "1"
            stats = await _http_over_tcp("127.0.0.1", port, http_request("GET", "/api/stats"))
            assert stats.json()["refused_during_restart"] == 1
            await trio.sleep(0.6)
            again = WsClient(await trio.open_tcp_stream("127.0.0.1", port))
            await again.handshake()
            assert (await again.ping(seq=2))["seq"] == 2
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("203.0.113.5", False),  # TEST-NET-3: documentation only, never contacted
        ("::ffff:203.0.113.5", False),
        ("2001:db8::1", False),
        ("not-an-address", False),
    ],
)
def test_only_loopback_peers_may_restart(host: str, local: bool) -> None:
    # pure: a refusal test over real sockets would need traffic to an
    # address off loopback, which tests never send
    assert is_loopback_address(host) is local


async def test_streams_without_a_socket_count_as_local() -> None:
    _client_side, server_side = trio.testing.memory_stream_pair()
    assert _from_loopback(server_side)
    unix_a, unix_b = trio.socket.socketpair()
    with unix_a, unix_b:
        assert _from_loopback(trio.SocketStream(unix_a))


async def test_admin_default_outage_comes_from_the_config(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    gateway = Gateway(GatewayConfig(restart_outage=1.5))
    reply = await request(gateway, nursery, http_request("POST", "/admin/restart"))
    assert reply.json()["outage_s"] == 1.5
    assert gateway.refusing(1.499)
    assert not gateway.refusing(1.5)


@pytest.mark.parametrize("outage", [-0.5, 600.5, math.inf, math.nan])
def test_restart_outage_setting_is_bounded(outage: float) -> None:
    with pytest.raises(LocalError, match=r"restart_outage: expected seconds in 0\.\.600"):
        GatewayConfig(restart_outage=outage)


@pytest.mark.process
async def test_run_gateway_restarts_on_sigusr2(capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_gateway, GatewayConfig(port=0, restart_outage=0.5))
            line = ""
            while "\n" not in line:  # run_gateway prints once the port is bound
                await trio.testing.wait_all_tasks_blocked()
                line += capsys.readouterr().out
            match = re.fullmatch(r"soak gateway listening on 127\.0\.0\.1:(\d+)\n", line)
            assert match is not None, line
            port = int(match[1])
            client = WsClient(await trio.open_tcp_stream("127.0.0.1", port))
            await client.handshake()
            os.kill(os.getpid(), signal.SIGUSR2)
            await expect_restart_close(client)
            refused = await _http_over_tcp("127.0.0.1", port, upgrade_request())
            assert refused.status == 503
            await trio.sleep(0.6)
            again = WsClient(await trio.open_tcp_stream("127.0.0.1", port))
            await again.handshake()  # still serving: SIGUSR2 is not a shutdown
            assert (await again.ping(seq=1))["seq"] == 1
            assert "SIGUSR2: restart, 1 connections closed" in capsys.readouterr().err
            os.kill(os.getpid(), signal.SIGTERM)
            assert await again.next_event() == CloseConnection(code=1001, reason="going away")


# ---- the outage state, as a pure step (plain numbers for now) ----------------------


def test_outage_state_before_any_restart() -> None:
    outage = Outage()
    assert not outage.begun
    assert not outage.refusing(-1e9)
    assert outage.remaining(0.0) is None


def test_outage_state_extends_and_never_shortens() -> None:
    outage = Outage()
    outage.begin(10.0, 5.0)
    assert outage.begun
    assert outage.refusing(14.999)
    assert not outage.refusing(15.0)
    assert outage.remaining(12.5) == 2.5
    outage.begin(11.0, 1.0)  # ends earlier: the outage stays until 15
    assert outage.until == 15.0
    outage.begin(14.0, 3.0)
    assert outage.until == 17.0
    assert outage.remaining(17.0) is None  # over, but it did happen
    assert outage.begun


@pytest.mark.parametrize(("now", "retry_after"), [(10.0, "5"), (14.2, "1"), (14.9999, "1")])
def test_outage_refusal_says_when_to_retry(now: float, retry_after: str) -> None:
    outage = Outage()
    outage.begin(10.0, 5.0)
    reply = Reply(outage.refusal(now))
    assert (reply.status, reply.body) == (503, b"service restarting\n")
    assert reply.headers["retry-after"] == retry_after
