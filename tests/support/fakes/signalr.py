"""An ASP.NET Core SignalR hub speaking the JSON hub protocol over
WebSockets, as the hub protocol specification describes it:
the ``{"protocol":"json","version":1}`` handshake answered ``{}`` (or an
error), records ended by 0x1E, a ``{"type":6}`` ping when it has sent
nothing for ``keep_alive``, and its client timeout: nothing received for
``client_timeout`` and it sends ``{"type":7,"allowReconnect":true}`` and
closes."""

from __future__ import annotations

import json
import math

import trio

from tests.support.fakes.wsfake import Conn, FakeServer

RS = "\x1e"
PING = '{"type":6}' + RS


class FakeSignalr(FakeServer):
    def __init__(
        self,
        *,
        keep_alive: float = 15.0,
        client_timeout: float = 30.0,
        protocols: tuple[str, ...] = ("json",),
        deaf_after: float = math.inf,
        ping_with_handshake: bool = False,  # {}\x1e and a ping record in one frame
        pings: bool = True,
    ) -> None:
        super().__init__(deaf_after)
        self.keep_alive = keep_alive
        self.client_timeout = client_timeout
        self.protocols = protocols
        self.ping_with_handshake = ping_with_handshake
        self.pings = pings
        self.handshakes: list[object] = []
        self.client_pings = 0

    async def text(self, conn: Conn, text: str) -> None:
        assert text.endswith(RS), text
        for part in text[:-1].split(RS):
            await self._record(conn, json.loads(part))

    async def _record(self, conn: Conn, doc: dict[str, object]) -> None:
        if "handshake" not in conn.state:
            conn.state["handshake"] = doc
            self.handshakes.append(doc)
            if doc.get("protocol") not in self.protocols:
                error = f"Requested protocol '{doc.get('protocol')}' is not available."
                await conn.send_text(json.dumps({"error": error}) + RS)
                await conn.close(1000, "")
                return
            await conn.send_text("{}" + RS + (PING if self.ping_with_handshake else ""))
            if self.pings:
                conn.nursery.start_soon(self._keep_alive, conn)
            conn.nursery.start_soon(self._client_timeout, conn)
        elif doc.get("type") == 6:
            self.client_pings += 1

    async def _keep_alive(self, conn: Conn) -> None:
        while True:
            due = conn.last_sent + self.keep_alive
            if trio.current_time() >= due:
                await conn.send_text(PING)
                continue
            await trio.sleep_until(due)

    async def _client_timeout(self, conn: Conn) -> None:
        while True:
            due = conn.last_heard + self.client_timeout
            if trio.current_time() >= due:
                # HubConnectionContext: "Client timeout elapsed without
                # receiving a message from the client", the abort that
                # allows a reconnect
                await conn.send_text('{"type":7,"allowReconnect":true}' + RS)
                await conn.close(1000, "")
                return
            await trio.sleep_until(due)

    async def goodbye(self, conn: Conn) -> None:
        await conn.send_text(
            '{"type":7,"error":"Server is shutting down.","allowReconnect":true}' + RS
        )
        await conn.close(1000, "")
