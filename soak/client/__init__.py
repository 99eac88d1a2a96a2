"""I/O: the simulated clients, raw wsproto on Trio streams.

Raw wsproto rather than trio-websocket: less memory per idle connection and
more handshakes per second (benchmarks/engine.py measures both); the price
is that this package does the little framing bookkeeping itself.

- shared: what all clients of a run share: config, services and gauges (:class:`Shared`)
- transport: reaching the target (TCP, TLS, source addresses) and one connection's bytes
- handshake: the HTTP upgrade and the protocol's own handshake, and why one failed
- connection: sans-IO: how a live connection reacts to each frame and timer
- live: the task that carries out those reactions while a client is connected
- pacer: one task that sends the heartbeats of every plain-TCP client
- batch: one task that reads the sockets of every plain-TCP client (an epoll set)
- closing: close bookkeeping: verdict, counters, the close event and its evidence
- reconnect: a client's life: connect, live, close, back off, give up (:class:`Client`)
"""

from __future__ import annotations

from soak.client.closing import retry_hint
from soak.client.connection import Closed, Closing, Connection
from soak.client.live import CLOSE_WAIT, TIMER_EARLY
from soak.client.pacer import Pacer
from soak.client.pacer import Pacer as _Pacer
from soak.client.reconnect import Client
from soak.client.shared import ClientConfig, Gauges, Services, Shared
from soak.client.transport import (
    RECEIVE_SIZE,
    OpenStream,
    _Conn,
    target_address,
    tls_context,
    url_opener,
)
from soak.client.transport import connect_cause as _os_cause

__all__ = [
    "CLOSE_WAIT",
    "RECEIVE_SIZE",
    "TIMER_EARLY",
    "Client",
    "ClientConfig",
    "Closed",
    "Closing",
    "Connection",
    "Gauges",
    "OpenStream",
    "Pacer",
    "Services",
    "Shared",
    "_Conn",
    "_Pacer",
    "_os_cause",
    "retry_hint",
    "target_address",
    "tls_context",
    "url_opener",
]
