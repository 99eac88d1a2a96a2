"""The WebSocket part every fake dialect server shares: the upgrade (with
the dialect's subprotocol), text messages in and out, RFC 6455 pings
answered, closes, and a restart (every connection closed, new ones refused
for a while, then accepted again). Times are trio's (MockClock in tests)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage


@dataclass(eq=False)
class Conn:
    """One connection of a fake server."""

    server: FakeServer
    stream: trio.abc.Stream
    ws: WSConnection
    nursery: trio.Nursery
    target: str = ""
    opened: float = 0.0
    last_heard: float = 0.0  # the last message received (what idle timers watch)
    last_sent: float = 0.0
    closed: bool = False
    upgraded: bool = False
    heard: int = 0  # messages received
    state: dict[str, Any] = field(default_factory=dict)
    lock: trio.Lock = field(default_factory=trio.Lock)  # one writer at a time

    async def send_text(self, text: str) -> None:
        if self.closed:
            return
        async with self.lock:
            self.last_sent = trio.current_time()
            await self.stream.send_all(self.ws.send(TextMessage(text)))

    async def close(self, code: int, reason: str = "") -> None:
        """A close frame, then the end of the connection (as servers do
        once the client answered or a moment passed)."""
        if self.closed:
            return
        self.closed = True
        self.server.closed.append((round(trio.current_time() - self.opened, 6), code, reason))
        try:
            async with self.lock:
                await self.stream.send_all(self.ws.send(CloseConnection(code, reason)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self.nursery.cancel_scope.cancel()

    async def abort(self) -> None:
        """The TCP connection ends with no close frame (a killed process)."""
        if self.closed:
            return
        self.closed = True
        self.server.closed.append((round(trio.current_time() - self.opened, 6), None, ""))
        await self.stream.aclose()
        self.nursery.cancel_scope.cancel()


class FakeServer:
    """Subclasses give the dialect: :meth:`opened` (after the upgrade),
    :meth:`text` (each message), :meth:`goodbye` (how a restart ends a
    connection). ``deaf_after``: from that long after its upgrade, a
    connection's messages are lost on the way (never read)."""

    subprotocol: str | None = None

    def __init__(self, deaf_after: float = math.inf) -> None:
        self.deaf_after = deaf_after
        self.conns: set[Conn] = set()
        self.down = False
        self.accepted = 0
        self.refused = 0
        self.targets: list[str] = []
        self.closed: list[tuple[float, int | None, str]] = []  # (age, code, reason)

    async def opened(self, conn: Conn) -> None:
        """The upgrade was accepted."""

    async def text(self, conn: Conn, text: str) -> None:
        """A text message of the client's."""

    async def goodbye(self, conn: Conn) -> None:
        """How a restart ends a connection (default: no close frame)."""
        await conn.abort()

    async def restart(self, down_for: float) -> None:
        """Close every connection (:meth:`goodbye`), refuse new ones for
        ``down_for``, then accept again."""
        self.down = True
        for conn in list(self.conns):
            await self.goodbye(conn)
        await trio.sleep(down_for)
        self.down = False

    async def serve(self, stream: trio.abc.Stream) -> None:
        if self.down:
            self.refused += 1
            await stream.aclose()  # nobody listening: the connection ends at once
            return
        try:
            async with trio.open_nursery() as nursery:
                conn = Conn(self, stream, WSConnection(ConnectionType.SERVER), nursery)
                await self._serve(conn)
                nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.conns.discard(conn)

    async def _serve(self, conn: Conn) -> None:
        stream, ws = conn.stream, conn.ws
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            now = trio.current_time()
            if conn.upgraded and now >= conn.opened + self.deaf_after:
                continue  # lost on the way
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, Request):
                    conn.target = event.target
                    self.targets.append(event.target)
                    chosen = self.subprotocol if self.subprotocol in event.subprotocols else None
                    async with conn.lock:
                        await stream.send_all(ws.send(AcceptConnection(subprotocol=chosen)))
                    conn.opened = conn.last_heard = conn.last_sent = trio.current_time()
                    conn.upgraded = True
                    self.accepted += 1
                    self.conns.add(conn)
                    await self.opened(conn)
                elif isinstance(event, Ping):
                    async with conn.lock:
                        await stream.send_all(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        async with conn.lock:
                            await stream.send_all(ws.send(event.response()))
                    return
                elif isinstance(event, TextMessage):
                    conn.last_heard = trio.current_time()
                    conn.heard += 1
                    await self.text(conn, event.data)
