"""A Pusher Channels server (protocol 7), as
the Pusher Channels protocol document describes it: ``pusher:connection_established`` with
its ``activity_timeout`` (data a JSON string), ``pusher:ping`` answered
``pusher:pong``, its own ping after ``activity_timeout`` without a message
of the client's and close 4201 when no pong came within ``pong_timeout``,
refusals as ``pusher:error`` then the close with the same code."""

from __future__ import annotations

import json
import math

import trio

from tests.support.fakes.wsfake import Conn, FakeServer

PING = '{"event":"pusher:ping","data":{}}'
PONG = '{"event":"pusher:pong","data":{}}'


class FakePusher(FakeServer):
    def __init__(
        self,
        *,
        activity_timeout: int = 120,
        pong_timeout: float = 30.0,
        refuse: tuple[int, str] | None = None,
        deaf_after: float = math.inf,
        restart_code: tuple[int, str] = (4200, "Generic reconnect"),
    ) -> None:
        super().__init__(deaf_after)
        self.activity_timeout = activity_timeout
        self.pong_timeout = pong_timeout
        self.refuse = refuse
        self.restart_code = restart_code
        self.pings = 0
        self.pongs_to_its_pings = 0
        self.socket_ids = 0

    async def opened(self, conn: Conn) -> None:
        if self.refuse is not None:
            code, message = self.refuse
            error = {"event": "pusher:error", "data": {"code": code, "message": message}}
            await conn.send_text(json.dumps(error))
            await conn.close(code, message)
            return
        self.socket_ids += 1
        data = {"socket_id": f"{self.socket_ids}.{1000 + self.socket_ids}"}
        data["activity_timeout"] = self.activity_timeout  # type: ignore[assignment]
        event = {"event": "pusher:connection_established", "data": json.dumps(data)}
        await conn.send_text(json.dumps(event))
        conn.nursery.start_soon(self._activity, conn)

    async def _activity(self, conn: Conn) -> None:
        while True:
            due = conn.last_heard + self.activity_timeout
            if trio.current_time() < due:
                await trio.sleep_until(due)
                continue
            heard = conn.heard
            await conn.send_text(PING)
            await trio.sleep(self.pong_timeout)
            if conn.heard == heard:
                await conn.close(4201, "Pong reply not received")
                return

    async def text(self, conn: Conn, text: str) -> None:
        event = json.loads(text)["event"]
        if event == "pusher:ping":
            self.pings += 1
            await conn.send_text(PONG)
        elif event == "pusher:pong":
            self.pongs_to_its_pings += 1

    async def goodbye(self, conn: Conn) -> None:
        await conn.close(*self.restart_code)
