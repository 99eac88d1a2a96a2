"""The heartbeat filter on real RFC 6455 bytes (made by wsproto): the N-th
heartbeat goes, every other byte passes untouched, however the bytes are cut."""

from __future__ import annotations

import json
import random

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Ping, Pong, Request, TextMessage

from soak.proxy import ImpairmentConfig, Proxy
from soak.proxy.frames import DropHeartbeat, Dropper, FrameFilter, heartbeat_kind
from soak.proxy.impair import Event


def pair() -> tuple[WSConnection, WSConnection, bytes, bytes]:
    """A client and a server after the handshake, and the handshake bytes."""
    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    request = client.send(Request(host="gateway.test", target="/ws"))
    server.receive_data(request)
    assert isinstance(next(server.events()), Request)
    response = server.send(AcceptConnection())
    client.receive_data(response)
    assert isinstance(next(client.events()), AcceptConnection)
    return client, server, request, response


def hb(kind: str, seq: int) -> TextMessage:
    return TextMessage(data=json.dumps({"type": kind, "seq": seq}))


def feed(f: FrameFilter, data: bytes, step: int) -> bytes:
    return b"".join(f.feed(data[i : i + step]) for i in range(0, len(data), step))


@pytest.mark.parametrize("step", [1, 3, 7, 10_000])
def test_drops_the_nth_client_heartbeat_only(step: int) -> None:
    client, _, request, _ = pair()
    ping1, ping2, data, ping3 = (
        client.send(hb("ping", 1)),
        client.send(hb("ping", 2)),
        client.send(TextMessage(data='{"type": "chat", "text": "ping"}')),
        client.send(Ping(b"rfc")),
    )
    f = FrameFilter(Dropper(DropHeartbeat(nth=2), random.Random(1)))
    out = feed(f, request + ping1 + ping2 + data + ping3, step)
    assert out == request + ping1 + data + ping3
    assert f.dropped == [("ping", 2)]


def test_directions_count_together() -> None:
    client, server, request, response = pair()
    dropper = Dropper(DropHeartbeat(nth=2), random.Random(1))
    up, down = FrameFilter(dropper), FrameFilter(dropper)
    ping1, pong1, ping2 = (
        client.send(hb("ping", 1)),
        server.send(hb("pong", 1)),
        client.send(hb("ping", 2)),
    )
    assert up.feed(request + ping1) == request + ping1
    assert down.feed(response + pong1) == response  # the second heartbeat of the connection
    assert up.feed(ping2) == ping2
    assert down.dropped == [("pong", 2)]


def test_drops_server_pongs_json_or_control() -> None:
    _, server, _, response = pair()
    pong1, pong2 = server.send(Pong(b"x")), server.send(hb("pong", 1))
    f = FrameFilter(Dropper(DropHeartbeat(nth=1), random.Random(1)))
    assert f.feed(response + pong1 + pong2) == response + pong2
    assert f.dropped == [("pong", 1)]


@pytest.mark.parametrize(("p", "kept"), [(0.0, 20), (1.0, 0)])
def test_probability(p: float, kept: int) -> None:
    client, _, request, _ = pair()
    pings = [client.send(hb("ping", i)) for i in range(20)]
    f = FrameFilter(Dropper(DropHeartbeat(probability=p), random.Random(1)))
    assert f.feed(request + b"".join(pings)) == request + b"".join(pings[:kept])


def test_large_and_fragmented_text_is_data() -> None:
    big = json.dumps({"type": "ping", "pad": "x" * 5000}).encode()
    assert heartbeat_kind(0x1, True, big) is None
    assert heartbeat_kind(0x1, False, b'{"type": "ping"}') is None
    assert heartbeat_kind(0x2, True, b'{"type": "ping"}') is None
    assert heartbeat_kind(0x1, True, b"ping") is None
    assert heartbeat_kind(0x1, True, b'{"type": "pong"}') == "pong"


def test_rejects_bad_rules() -> None:
    with pytest.raises(ValueError, match="expected N >= 1, got 0"):
        DropHeartbeat(nth=0)
    with pytest.raises(ValueError, match=r"expected a probability in \[0, 1\], got 1.5"):
        DropHeartbeat(probability=1.5)


async def test_the_proxy_drops_the_first_heartbeat(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[Event] = []
    client_ws, _, request, _ = pair()
    ping1, ping2 = client_ws.send(hb("ping", 1)), client_ws.send(hb("ping", 2))
    client, proxy_client = trio.testing.memory_stream_pair()
    proxy_up, server = trio.testing.memory_stream_pair()

    async def connect() -> trio.abc.Stream:
        return proxy_up

    proxy = Proxy(ImpairmentConfig(drop_heartbeat=DropHeartbeat(nth=1)), on_event=events.append)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(proxy.handle, proxy_client, connect)
        await client.send_all(request + ping1 + ping2)
        got = b""
        while len(got) < len(request + ping2):
            got += await server.receive_some()
        assert got == request + ping2
        nursery.cancel_scope.cancel()
    assert events == [
        {
            "t": 0.0,
            "conn": 0,
            "impairment": "heartbeat_drop",
            "direction": "up",
            "kind": "ping",
            "n": 1,
        }
    ]
