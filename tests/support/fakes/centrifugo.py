"""A Centrifugo server (bidirectional protocol v2, JSON), as
centrifugal/centrifuge describes it: the connect command
answered with the client id, version, ``ping`` and ``pong``, an empty
object every ``ping_interval`` that must come back within ``pong_timeout``
(else disconnect 3012 "no pong"), refusals as a connect error reply."""

from __future__ import annotations

import json
import math
from typing import Any

import trio

from tests.support.fakes.wsfake import Conn, FakeServer


class FakeCentrifugo(FakeServer):
    def __init__(
        self,
        *,
        ping_interval: int = 25,
        pong_timeout: float = 10.0,
        pong: bool = True,
        token: str | None = None,  # the connect command must carry it, else 101
        deaf_after: float = math.inf,
        ignore_pongs: bool = False,  # a buggy server: our pongs do not count
        version: str = "5.4.9",
    ) -> None:
        super().__init__(deaf_after)
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.pong = pong
        self.token = token
        self.ignore_pongs = ignore_pongs
        self.version = version
        self.connects: list[dict[str, Any]] = []
        self.pongs = 0
        self.clients = 0

    async def text(self, conn: Conn, text: str) -> None:
        for line in text.split("\n"):
            doc = json.loads(line)
            if doc == {}:
                self.pongs += 1
                waiting = conn.state.get("waiting")
                if waiting is not None and not self.ignore_pongs:
                    waiting.set()
            elif "connect" in doc:
                await self._connect(conn, doc)

    async def _connect(self, conn: Conn, doc: dict[str, Any]) -> None:
        self.connects.append(doc["connect"])
        if self.token is not None and doc["connect"].get("token") != self.token:
            error = {"id": doc["id"], "error": {"code": 101, "message": "unauthorized"}}
            await conn.send_text(json.dumps(error))
            return
        self.clients += 1
        reply = {
            "client": f"c{self.clients:04d}",
            "version": self.version,
            "ping": self.ping_interval,
            "pong": self.pong,
        }
        await conn.send_text(json.dumps({"id": doc["id"], "connect": reply}))
        conn.nursery.start_soon(self._pings, conn)

    async def _pings(self, conn: Conn) -> None:
        while True:
            await trio.sleep(self.ping_interval)
            waiting = conn.state["waiting"] = trio.Event()
            await conn.send_text("{}")
            if not self.pong:
                continue
            with trio.move_on_after(self.pong_timeout):
                await waiting.wait()
            if not waiting.is_set():
                await conn.close(3012, "no pong")
                return

    async def goodbye(self, conn: Conn) -> None:
        await conn.close(3001, "shutdown")
