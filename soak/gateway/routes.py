"""The plain HTTP requests the gateway's port answers.

``GET /api/stats`` (served during a restart's outage too: operators poll
it), ``POST /admin/restart?outage=SECONDS`` from a loopback peer (see
:meth:`soak.gateway.server.Gateway.restart`), a 503 with ``Retry-After``
for anything else during an outage, else 404. Each answer is one complete
response; the connection is closed after it.
"""

from __future__ import annotations

import ipaddress
import json
import math
import socket
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from soak.gateway.config import MAX_OUTAGE, GatewayConfig
from soak.gateway.counters import Counters
from soak.gateway.http import RequestHead, response
from soak.gateway.restart import Outage

# The admin endpoint that triggers a restart (outages are bounded by config.MAX_OUTAGE).
ADMIN_RESTART_PATH = b"/admin/restart"


class Routes:
    """Answers the HTTP requests that are not a WebSocket upgrade.

    ``stats`` makes the ``/api/stats`` document (for all workers of a
    cluster, hence async); ``restart(outage)`` restarts the gateway and
    returns how many connections it closed; ``workers`` is the number of
    worker processes it also restarts, or None for a gateway of one process.
    """

    def __init__(
        self,
        config: GatewayConfig,
        counters: Counters,
        outage: Outage,
        *,
        stats: Callable[[], Awaitable[dict[str, Any]]],
        restart: Callable[[float], int],
        workers: int | None = None,
    ) -> None:
        self._config = config
        self._counters = counters
        self._outage = outage
        self._stats = stats
        self._restart = restart
        self._workers = workers

    async def answer(self, stream: trio.abc.Stream, head: RequestHead) -> None:
        """Send the response to ``head`` on ``stream``."""
        self._counters.http_requests += 1
        if head.path == ADMIN_RESTART_PATH and self._config.admin:
            reply = self._admin_restart(stream, head)
        elif head.path == b"/api/stats":
            # Served during a restart's outage too: operators poll it.
            if head.method != b"GET":
                reply = response(405, b"method not allowed\n", headers=[(b"Allow", b"GET")])
            else:
                body = json.dumps(await self._stats()).encode()
                reply = response(200, body, b"application/json")
        elif self._outage.refusing(now := trio.current_time()):
            reply = self.refusal(now)
        else:
            reply = response(404, b"not found\n")
        await stream.send_all(reply)

    def refusal(self, now: float) -> bytes:
        """The 503 that a request (or a WebSocket upgrade) gets during a
        restart's outage, counted."""
        self._counters.refused_during_restart += 1
        return self._outage.refusal(now)

    def _admin_restart(self, stream: trio.abc.Stream, head: RequestHead) -> bytes:
        """``POST /admin/restart?outage=SECONDS``: loopback peers only."""
        if not _from_loopback(stream):
            return response(403, b"admin endpoint: loopback clients only\n")
        if head.method != b"POST":
            return response(405, b"admin endpoint: use POST\n", headers=[(b"Allow", b"POST")])
        outage = _parse_outage(head.query, self._config.restart_outage)
        if isinstance(outage, str):
            return response(400, outage.encode() + b"\n")
        closed = self._restart(outage)
        body: dict[str, Any] = {
            "restarting": True,
            "outage_s": outage,
            "connections_closed": closed,
        }
        if self._workers is not None:
            # The other workers restart as they get the word; each closes its own.
            body["workers"] = self._workers
        return response(202, json.dumps(body).encode(), b"application/json")


def _parse_outage(query: bytes, default: float) -> float | str:
    """The admin endpoint's ``outage`` (seconds), or an error message."""
    try:
        params = urllib.parse.parse_qs(
            query.decode("ascii"), keep_blank_values=True, strict_parsing=bool(query)
        )
    except (UnicodeDecodeError, ValueError):
        return f"admin endpoint: cannot parse the query string {query!r}"
    unknown = sorted(set(params) - {"outage"})
    if unknown:
        return f"admin endpoint: unknown parameter(s) {', '.join(unknown)}; expected outage"
    values = params.get("outage", [])
    if len(values) > 1:
        return "admin endpoint: outage: given more than once"
    if not values:
        return default
    text = values[0]
    try:
        outage = float(text)
    except ValueError:
        outage = math.nan
    if not (math.isfinite(outage) and 0 <= outage <= MAX_OUTAGE):
        return f"admin endpoint: outage: expected seconds in 0..{MAX_OUTAGE:g}, got {text!r}"
    return outage


def _from_loopback(stream: trio.abc.Stream) -> bool:
    """True unless ``stream`` is a socket whose peer is not on loopback
    (127.0.0.0/8, ::1, or either as an IPv4-mapped IPv6 address). Streams
    with no socket (in-memory, in tests) and Unix sockets count as local."""
    inner: object = stream
    while not isinstance(inner, trio.SocketStream):
        inner = getattr(inner, "transport_stream", None)  # e.g. trio.SSLStream
        if inner is None:
            return True
    sock = inner.socket
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return True
    try:
        host = sock.getpeername()[0]
    except OSError:
        return False  # peer gone: not provably local
    return is_loopback_address(host)


def is_loopback_address(host: str) -> bool:
    """127.0.0.0/8, ::1, or either as an IPv4-mapped IPv6 address."""
    try:
        addr = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False  # unparsable: not provably local
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


__all__ = ["ADMIN_RESTART_PATH", "Routes", "is_loopback_address"]
