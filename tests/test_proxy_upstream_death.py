"""An upstream that dies mid-run, over real sockets on 127.0.0.1: the proxy
closes the matching client connections the way the network would, and keeps
serving the others.

- An upstream connection reset (RST: a crashed process with unread data, a
  reboot, a firewall) resets the client: its next read fails with
  ECONNRESET (trio.BrokenResourceError).
- An upstream connection closed cleanly (FIN: a process that exits closes
  its sockets) closes the client the same way, after the data in flight:
  its next read returns b"".
- An upstream that stops listening: new clients are accepted, then reset,
  as behind a real TCP proxy; connections already open are untouched.
"""

from __future__ import annotations

import pytest
import trio

from soak.proxy import ImpairmentConfig, Proxy
from soak.proxy.server import reset_stream

pytestmark = pytest.mark.process


class Upstream:
    """An echo server that remembers each connection by its first message,
    so a test can kill the one behind a given client."""

    def __init__(self) -> None:
        self.streams: dict[bytes, trio.SocketStream] = {}

    async def handle(self, stream: trio.SocketStream) -> None:
        first = True
        try:
            async for data in stream:
                if first:
                    self.streams[bytes(data)] = stream
                    first = False
                await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def round_trip(stream: trio.abc.Stream, data: bytes) -> bytes:
    await stream.send_all(data)
    got = b""
    for _ in range(100):  # bounded: loopback delivers 5-10 bytes in one or two reads
        chunk = await stream.receive_some()
        if not chunk:
            break
        got += chunk
        if len(got) >= len(data):
            break
    return got


async def read_to_end(stream: trio.abc.Stream) -> bytes:
    """Everything until EOF (an RST raises trio.BrokenResourceError)."""
    got = b""
    for _ in range(100):
        chunk = await stream.receive_some()
        if not chunk:
            return got
        got += chunk
    raise AssertionError("no EOF after 100 reads")


async def test_dead_upstream_connections_close_their_clients_only() -> None:
    upstream = Upstream()
    events: list[dict[str, object]] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            up_port = listeners[0].socket.getsockname()[1]
            up_scope = trio.CancelScope()

            async def serve_upstream() -> None:
                # connections live in the outer nursery: they outlive the listener
                with up_scope:
                    while True:
                        stream = await listeners[0].accept()
                        nursery.start_soon(upstream.handle, stream)

            nursery.start_soon(serve_upstream)
            proxy = Proxy(ImpairmentConfig(), on_event=events.append)
            port = await nursery.start(proxy.serve, "127.0.0.1", 0, "127.0.0.1", up_port)
            clients = []
            for i in range(4):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                assert await round_trip(stream, b"hello %d" % i) == b"hello %d" % i
                clients.append(stream)
            assert proxy.live == 4

            # client 0's upstream connection is reset, client 1's closed cleanly
            await reset_stream(upstream.streams[b"hello 0"])
            await upstream.streams[b"hello 1"].send_all(b"last words")
            await upstream.streams[b"hello 1"].aclose()

            with pytest.raises(trio.BrokenResourceError):  # ECONNRESET
                await read_to_end(clients[0])
            assert await read_to_end(clients[1]) == b"last words"  # then the FIN

            # the others are untouched, and the proxy takes new connections
            for i in (2, 3):
                assert await round_trip(clients[i], b"still %d" % i) == b"still %d" % i
            late = await trio.open_tcp_stream("127.0.0.1", port)
            assert await round_trip(late, b"hello 4") == b"hello 4"

            # the upstream stops listening: a new client is accepted, then reset
            up_scope.cancel()
            for listener in listeners:
                await listener.aclose()
            refused = await trio.open_tcp_stream("127.0.0.1", port)
            with pytest.raises(trio.BrokenResourceError):
                await read_to_end(refused)
            assert [e["event"] for e in events if "event" in e] == ["upstream_unreachable"]
            # ... while the connections it already had go on
            for i in (2, 3):
                assert await round_trip(clients[i], b"again %d" % i) == b"again %d" % i
            assert await round_trip(late, b"again 4") == b"again 4"

            for stream in (*clients, late, refused):
                await stream.aclose()
            nursery.cancel_scope.cancel()
