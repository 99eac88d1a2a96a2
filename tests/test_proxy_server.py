"""The proxy's I/O on memory streams under MockClock, with exact virtual
times, and once over real sockets on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from soak.proxy import ImpairmentConfig, Latency, Proxy, TimedDrop
from soak.proxy.config import NatIdle
from soak.proxy.impair import Event

Pair = tuple[trio.abc.Stream, trio.abc.Stream]


async def echo(stream: trio.abc.Stream) -> None:
    async for data in stream:
        await stream.send_all(data)


async def start_proxy(
    nursery: trio.Nursery, config: ImpairmentConfig, events: list[Event], **kw: object
) -> Pair:
    """A client stream and the server's end of its upstream, with the proxy
    between them; the proxy's clock starts now."""
    client, proxy_client = trio.testing.memory_stream_pair()
    proxy_up, server = trio.testing.memory_stream_pair()

    async def connect() -> trio.abc.Stream:
        return proxy_up

    proxy = Proxy(config, on_event=events.append, start=trio.current_time(), **kw)  # type: ignore[arg-type]
    nursery.start_soon(proxy.handle, proxy_client, connect)
    return client, server


async def silent_for(stream: trio.abc.Stream, seconds: float) -> bool:
    """True if nothing, not even EOF, arrives on ``stream`` for ``seconds``."""
    with trio.move_on_after(seconds):
        await stream.receive_some()
        return False
    return True


DOWN_100MS = ImpairmentConfig(latency=(Latency(0.1, directions=("down",)),))


async def test_one_way_latency_gives_an_exact_round_trip(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[Event] = []
    async with trio.open_nursery() as nursery:
        client, server = await start_proxy(nursery, DOWN_100MS, events)
        nursery.start_soon(echo, server)
        t0 = trio.current_time()
        await client.send_all(b"ping")
        assert await client.receive_some() == b"ping"
        assert trio.current_time() == t0 + 0.1
        await trio.sleep(1.0)
        await client.send_all(b"again")
        assert await client.receive_some() == b"again"
        assert trio.current_time() == t0 + 0.1 + 1.0 + 0.1
        nursery.cancel_scope.cancel()
    assert [(e["impairment"], e["direction"]) for e in events] == [("latency", "down")]


async def test_upstream_eof_reaches_the_client(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        client, server = await start_proxy(nursery, DOWN_100MS, [])
        await server.send_all(b"bye")
        await server.aclose()
        assert await client.receive_some() == b"bye"
        assert trio.current_time() == 0.1
        assert await client.receive_some() == b""  # the FIN follows its data
        nursery.cancel_scope.cancel()


async def test_nat_idle_drop_leaves_both_sides_open_and_silent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[Event] = []
    config = ImpairmentConfig(nat_idle=NatIdle(30.0))
    async with trio.open_nursery() as nursery:
        client, server = await start_proxy(nursery, config, events)
        nursery.start_soon(echo, server)
        await trio.sleep(20.0)
        await client.send_all(b"hb")  # traffic at 20 keeps it alive past 30
        assert await client.receive_some() == b"hb"
        await trio.sleep(29.0)
        await client.send_all(b"hb")
        assert await client.receive_some() == b"hb"
        assert events == []
        await trio.sleep(31.0)  # silence from 49 on: forgotten at 79
        assert events == [{"t": 79.0, "conn": 0, "impairment": "nat_idle_drop", "idle": 30.0}]
        await client.send_all(b"hb")  # swallowed: neither an echo nor a FIN or RST
        assert await silent_for(client, 1000.0)
        nursery.cancel_scope.cancel()


async def test_nat_idle_drop_is_silent_for_the_server_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        client, server = await start_proxy(nursery, ImpairmentConfig(nat_idle=NatIdle(5.0)), [])
        await trio.sleep(6.0)
        await client.send_all(b"late")
        await client.aclose()  # even the client's FIN is lost
        assert await silent_for(server, 1000.0)
        await server.send_all(b"anyone?")  # the server can still write
        nursery.cancel_scope.cancel()


async def test_black_hole_drops_a_busy_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[Event] = []
    config = ImpairmentConfig(black_hole=TimedDrop(2.0))
    async with trio.open_nursery() as nursery:
        client, server = await start_proxy(nursery, config, events)
        nursery.start_soon(echo, server)
        for _ in range(3):
            await client.send_all(b"x")
            assert await client.receive_some() == b"x"
            await trio.sleep(0.5)
        await trio.sleep(0.5)
        await client.send_all(b"x")
        assert await silent_for(client, 100.0)
        assert events == [{"t": 2.0, "conn": 0, "impairment": "black_hole"}]
        nursery.cancel_scope.cancel()


async def test_data_in_flight_is_lost_with_the_mapping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = ImpairmentConfig(latency=(Latency(1.0),), black_hole=TimedDrop(0.5))
    async with trio.open_nursery() as nursery:
        client, server = await start_proxy(nursery, config, [])
        await client.send_all(b"x")  # due at 1.0, but the hole opens at 0.5
        assert await silent_for(server, 100.0)
        nursery.cancel_scope.cancel()


async def test_reset_closes_both_sides_at_t(autojump_clock: trio.testing.MockClock) -> None:
    events: list[Event] = []
    config = ImpairmentConfig(reset=TimedDrop(5.0))
    async with trio.open_nursery() as nursery:
        client, server = await start_proxy(nursery, config, events)
        assert await client.receive_some() == b""
        assert trio.current_time() == 5.0
        assert await server.receive_some() == b""
        assert trio.current_time() == 5.0
    assert events == [{"t": 5.0, "conn": 0, "impairment": "reset"}]


async def test_unreachable_upstream_closes_the_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[Event] = []
    client, proxy_client = trio.testing.memory_stream_pair()

    async def refused() -> trio.abc.Stream:
        raise ConnectionRefusedError(111, "Connection refused")

    await Proxy(ImpairmentConfig(), on_event=events.append).handle(proxy_client, refused)
    assert await client.receive_some() == b""
    assert events == [
        {
            "t": 0.0,
            "conn": 0,
            "event": "upstream_unreachable",
            "error": "[Errno 111] Connection refused",
        }
    ]


async def test_events_go_to_a_jsonl_log(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    path = tmp_path / "impairments.jsonl"
    with path.open("w") as log:
        async with trio.open_nursery() as nursery:
            _, server = await start_proxy(
                nursery, ImpairmentConfig(reset=TimedDrop(1.0)), [], log=log
            )
            assert await server.receive_some() == b""
            # flushed per event: readable while the proxy runs
            assert [json.loads(line) for line in path.read_text().splitlines()] == [
                {"t": 1.0, "conn": 0, "impairment": "reset"}
            ]


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[round(q * (len(s) - 1))]


async def test_measured_delays_recover_the_injected_distribution(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Known answer: 100 ms ± 50 ms uniform down, measured from the outside."""
    config = ImpairmentConfig(latency=(Latency(0.1, 0.05, "uniform", ("down",)),), seed=11)
    delays: list[float] = []
    async with trio.open_nursery() as nursery:
        client, server = await start_proxy(nursery, config, [])
        for _ in range(1000):
            sent = trio.current_time()
            await server.send_all(b"hb")
            assert await client.receive_some() == b"hb"
            delays.append(trio.current_time() - sent)
            await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert quantile(delays, 0.5) == pytest.approx(0.100, abs=0.005)
    assert quantile(delays, 0.1) == pytest.approx(0.060, abs=0.010)
    assert quantile(delays, 0.9) == pytest.approx(0.140, abs=0.010)
    assert min(delays) >= 0.05
    assert max(delays) <= 0.15


@pytest.mark.process
async def test_real_sockets_echo_through_the_proxy() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            echo_port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(trio.serve_listeners, echo, listeners)
            proxy = Proxy(ImpairmentConfig(latency=(Latency(0.05, directions=("down",)),)))
            port = await nursery.start(proxy.serve, "127.0.0.1", 0, "127.0.0.1", echo_port)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            t0 = trio.current_time()
            await stream.send_all(b"hello")
            got = b""
            while got != b"hello":
                got += await stream.receive_some()
            assert trio.current_time() - t0 >= 0.05
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def read_until_closed(stream: trio.abc.Stream) -> None:
    while await stream.receive_some():
        pass


@pytest.mark.process
async def test_real_sockets_reset_sends_an_rst() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            echo_port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(trio.serve_listeners, echo, listeners)
            proxy = Proxy(ImpairmentConfig(reset=TimedDrop(0.2)))
            port = await nursery.start(proxy.serve, "127.0.0.1", 0, "127.0.0.1", echo_port)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            with pytest.raises(trio.BrokenResourceError):
                await read_until_closed(stream)
            await stream.aclose()
            nursery.cancel_scope.cancel()


Unused = Callable[[], Awaitable[None]]
