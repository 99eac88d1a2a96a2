"""A tiny wsproto client that stands in for soak's client engine when a test
pokes the reference gateway over memory streams, and the deadlock watchdog
for tests under the autojump clock."""

from __future__ import annotations

import json
from collections import deque

import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Event, Request, TextMessage

from soak.gateway import Gateway, GatewayConfig

# interval 10, timeout 25, max_missed 3: timeout < interval * max_missed, so
# the fixed rule waits 30 s where the incident's buggy rule would kill at 25.
FAST = GatewayConfig(hb_interval=10.0, hb_timeout=25.0, max_missed=3, check_every=4.0)


class WsClient:
    """Just enough of a WebSocket client to poke the gateway."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: deque[Event] = deque()

    async def handshake(self) -> None:
        await self.send(Request(host="gateway.test", target="/ws"))
        assert isinstance(await self.next_event(), AcceptConnection)

    async def send(self, event: Event) -> None:
        await self.stream.send_all(self.ws.send(event))

    async def ping(self, seq: int, client_id: str = "abc123") -> dict[str, object]:
        """Send a JSON heartbeat and return the gateway's answer."""
        msg = {"type": "ping", "timestamp": 1000 + seq, "clientId": client_id, "seq": seq}
        await self.send(TextMessage(data=json.dumps(msg)))
        event = await self.next_event()
        assert isinstance(event, TextMessage)
        pong: dict[str, object] = json.loads(event.data)
        return pong

    async def next_event(self) -> Event:
        while not self.pending:
            data = await self.stream.receive_some()
            self.ws.receive_data(bytes(data) if data else None)
            self.pending.extend(self.ws.events())
        return self.pending.popleft()

    async def read_until_eof(self) -> bytes:
        rest = b""
        while data := await self.stream.receive_some():
            rest += data
        return rest


# Under the autojump clock a deadlock would hang forever; this turns it into a
# failure after a virtual day (an instant of real time).
DEADLOCK_AFTER = 24 * 3600.0


async def watchdog() -> None:
    """Fails the test after :data:`DEADLOCK_AFTER` seconds (virtual, under
    the autojump clock) of nothing else happening."""
    await trio.sleep(DEADLOCK_AFTER)
    raise AssertionError(f"nothing happened for {DEADLOCK_AFTER} virtual seconds: deadlock")


async def connect(gateway: Gateway, nursery: trio.Nursery) -> WsClient:
    client_side, server_side = trio.testing.memory_stream_pair()
    nursery.start_soon(gateway.handle_stream, server_side)
    client = WsClient(client_side)
    await client.handshake()
    return client
