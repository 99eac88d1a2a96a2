"""A Phoenix endpoint (V2 JSON serializer, ``vsn=2.0.0``) under Bandit, as
its specification and Phoenix 1.7.21 with Bandit 1.6.0 behave: heartbeats on topic "phoenix" replied
on their ref, channel joins replied ok (or refused), and the websocket
``timeout``: a connection it received nothing on for that long is closed
1002 with an empty reason."""

from __future__ import annotations

import json
import math
from typing import Any

import trio

from tests.support.fakes.wsfake import Conn, FakeServer


def reply(join_ref: Any, ref: Any, topic: str, status: str, response: Any) -> str:
    """As Phoenix writes it: ``{"status":...,"response":...}``."""
    body = [join_ref, ref, topic, "phx_reply", {"status": status, "response": response}]
    return json.dumps(body, separators=(",", ":"))


class FakePhoenix(FakeServer):
    def __init__(
        self,
        *,
        idle_timeout: float = 60.0,
        refuse_join: str | None = None,  # the reason of a join refused
        deaf_after: float = math.inf,
        ignore_heartbeats: bool = False,  # replies, but its idle timer does not see them
    ) -> None:
        super().__init__(deaf_after)
        self.idle_timeout = idle_timeout
        self.refuse_join = refuse_join
        self.ignore_heartbeats = ignore_heartbeats
        self.joins: list[tuple[str, Any]] = []
        self.heartbeats = 0

    async def opened(self, conn: Conn) -> None:
        conn.state["idle_since"] = conn.opened
        conn.nursery.start_soon(self._idle, conn)

    async def _idle(self, conn: Conn) -> None:
        while True:
            deadline = conn.state["idle_since"] + self.idle_timeout
            if trio.current_time() >= deadline:
                await conn.close(1002, "")  # Bandit: do_error(1002, :timeout)
                return
            await trio.sleep_until(deadline)

    async def text(self, conn: Conn, text: str) -> None:
        join_ref, ref, topic, event, payload = json.loads(text)
        if not (topic == "phoenix" and event == "heartbeat" and self.ignore_heartbeats):
            conn.state["idle_since"] = trio.current_time()
        if topic == "phoenix" and event == "heartbeat":
            self.heartbeats += 1
            await conn.send_text(reply(None, ref, "phoenix", "ok", {}))
        elif event == "phx_join":
            self.joins.append((topic, payload))
            if self.refuse_join is not None:
                await conn.send_text(
                    reply(join_ref, ref, topic, "error", {"reason": self.refuse_join})
                )
            else:
                await conn.send_text(reply(join_ref, ref, topic, "ok", {}))
                # a broadcast on the channel: not about the heartbeat
                await conn.send_text(json.dumps([join_ref, None, topic, "new_msg", {"body": "hi"}]))
