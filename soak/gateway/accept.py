"""One accepted stream: read its request head, then answer HTTP or open a WebSocket.

One port serves both (see :mod:`soak.gateway.http`). A plain request goes
to :class:`soak.gateway.routes.Routes`; an upgrade goes through wsproto's
handshake and the open connection to :class:`soak.gateway.pump.Pump`.
During a restart's outage an upgrade gets the 503 instead.
"""

from __future__ import annotations

import logging

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import AcceptConnection, Request
from wsproto.utilities import RemoteProtocolError

from soak import __version__
from soak.gateway.config import GatewayConfig
from soak.gateway.connections import Connections
from soak.gateway.counters import Counters
from soak.gateway.http import (
    HEAD_END,
    MAX_HEAD_BYTES,
    head_complete,
    parse_request_head,
    response,
)
from soak.gateway.pump import RECEIVE_BYTES, Pump
from soak.gateway.restart import Outage
from soak.gateway.routes import Routes

logger = logging.getLogger(__name__)

SERVER = f"soak-gateway/{__version__}".encode()


class Acceptor:
    """Serves each stream the listener accepts, from request head to close."""

    def __init__(
        self,
        config: GatewayConfig,
        counters: Counters,
        conns: Connections,
        outage: Outage,
        routes: Routes,
        pump: Pump,
    ) -> None:
        self._config = config
        self._counters = counters
        self._conns = conns
        self._outage = outage
        self._routes = routes
        self._pump = pump

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one connection (WebSocket or plain HTTP) on any Trio stream.

        Never raises except :class:`trio.Cancelled`: one broken connection
        must not take the other 19,000 down with it.
        """
        self._conns.mark_started(trio.current_time())
        try:
            await self._dispatch(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # Lost before the WebSocket was open (after, Pump.serve accounts
            # for it as a close).
            self._counters.handshake_failures += 1
        except Exception:
            # Our bug, not the peer's: log it (rare, so logging is cheap) and
            # keep serving everyone else. Not silent: it is counted in stats.
            self._counters.internal_errors += 1
            logger.exception("gateway: connection handler failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _dispatch(self, stream: trio.abc.Stream) -> None:
        # A restart kills every connection it finds, even one still in its
        # handshake: if one came meanwhile, this connection (unless refused
        # with 503) closes with 1012 as soon as it opens.
        restarts = self._counters.restarts
        ws = await self._handshake(stream)
        if ws is not None:
            await self._pump.serve(stream, ws, restarted=self._counters.restarts != restarts)

    async def _handshake(self, stream: trio.abc.Stream) -> Connection | None:
        """Read the request head and answer it. Returns the open WebSocket, or
        None once a plain HTTP request has been answered or refused.

        A separate function so that the head buffer and wsproto's h11
        handshake state die when it returns, instead of living in a caller's
        frame for the connection's whole life (measured: ~1.5 KB each).
        """
        buf = await self._read_head(stream)
        if buf is None:
            self._counters.handshake_failures += 1
            return None
        head = parse_request_head(buf)
        if head is None:
            self._counters.handshake_failures += 1
            await stream.send_all(response(400, b"bad request\n"))
            return None
        if not head.wants_websocket:
            await self._routes.answer(stream, head)
            return None
        now = trio.current_time()
        if self._outage.refusing(now):
            await stream.send_all(self._routes.refusal(now))
            return None
        # Only the head goes through wsproto's handshake: on the server side
        # wsproto 1.3 drops whatever followed the head (it hands trailing data
        # to the new Connection only on the client side). A GET upgrade has no
        # body, so every byte after the head is already WebSocket frames.
        head_len = buf.find(HEAD_END) + len(HEAD_END)
        handshake = WSConnection(ConnectionType.SERVER)
        try:
            handshake.receive_data(bytes(buf[:head_len]))
            request = next((e for e in handshake.events() if isinstance(e, Request)), None)
        except RemoteProtocolError:
            request = None
        if request is None:
            self._counters.handshake_failures += 1
            await stream.send_all(response(400, b"bad websocket handshake\n"))
            return None
        # the Server header tells a client (soak's run.json) which gateway it met
        reply = handshake.send(AcceptConnection(extra_headers=[(b"server", SERVER)]))
        ws = handshake.connection  # created by wsproto when the accept was sent
        assert ws is not None
        if head_len < len(buf):
            ws.receive_data(bytes(buf[head_len:]))
        await stream.send_all(reply)
        return ws

    async def _read_head(self, stream: trio.abc.Stream) -> bytearray | None:
        """The request head plus any bytes after it; None if the client went
        away, was slower than ``handshake_timeout`` or sent too much."""
        buf = bytearray()
        with trio.move_on_after(self._config.handshake_timeout):
            while len(buf) <= MAX_HEAD_BYTES:
                chunk = await stream.receive_some(RECEIVE_BYTES)
                if not chunk:
                    return None
                scan_from = len(buf)
                buf += chunk
                if head_complete(buf, scan_from):
                    return buf
        return None


__all__ = ["Acceptor"]
