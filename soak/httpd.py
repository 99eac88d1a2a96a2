"""A small HTTP/1.1 server that runs in a run's own Trio event loop, for
what a run shows while it runs: ``/metrics`` for Prometheus
(``soak run --metrics-port``, soak.prom), and later pages of a live view.

The interface, for a feature that adds a page:

- :class:`HttpServer` ``(host="127.0.0.1", port=0)``; :meth:`HttpServer.bind`
  binds and listens at once (synchronously, before the run starts, so a port
  in use is bad input, not a failure halfway through) and returns the port.
- :meth:`HttpServer.route` ``(path, handler)`` registers an exact path (no
  patterns). A ``handler`` takes the :class:`Request` and returns a
  :class:`Response`; it runs in the event loop that measures the run, so it
  must be quick (build the page from figures the run already keeps; never
  block, never await I/O). Handlers may be added until the server starts.
- ``await nursery.start(server.serve)`` serves until cancelled; or
  :func:`serving` ``(server, main)`` runs ``main()`` (the Runner's ``run``)
  with the server beside it and stops the server when ``main`` returns.

Only ``GET`` and ``HEAD`` are answered (405 otherwise); an unknown path gets
404 with the known ones listed. Every connection is bounded: a request head
of at most 16 KiB, at most :data:`MAX_CONNECTIONS` at once (the rest are
closed), and :data:`REQUEST_TIMEOUT` seconds for each request to arrive, so a
stuck scraper cannot pile up. A handler that raises gets a 500 with the
error's first line, and the run goes on.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import h11
import trio

MAX_CONNECTIONS = 32
REQUEST_TIMEOUT = 10.0
MAX_HEAD = 16 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query
    query: str
    headers: dict[str, str]  # names lower-cased


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)


Handler = Callable[[Request], Response]


class HttpServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.routes: dict[str, Handler] = {}
        self._sock: socket.socket | None = None
        self._open = 0

    def route(self, path: str, handler: Handler) -> None:
        if not path.startswith("/"):
            raise ValueError(f"a route is an absolute path, got {path!r}")
        self.routes[path] = handler

    def bind(self) -> int:
        """Bind and listen now; returns the port. Raises OSError."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        return self.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self._sock))
        self._sock = None
        async with listener, trio.open_nursery() as nursery:
            task_status.started(self.port)
            while True:
                stream = await listener.accept()
                if self._open >= MAX_CONNECTIONS:
                    await stream.aclose()
                    continue
                nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        self._open += 1
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            async with stream:
                while True:
                    with trio.move_on_after(REQUEST_TIMEOUT):
                        request = await self._next_request(stream, conn)
                        if request is None:
                            return
                        await self._answer(stream, conn, request)
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            self._open -= 1

    async def _next_request(
        self, stream: trio.SocketStream, conn: h11.Connection
    ) -> Request | None:
        head: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data or b"")
                continue
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                target = head.target.decode("latin-1")
                path, _, query = target.partition("?")
                headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers
                }
                return Request(head.method.decode("ascii", "replace"), path, query, headers)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    def handle(self, request: Request) -> Response:
        """The answer to one request (without I/O: tests call it directly)."""
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"only GET and HEAD\n", headers=(("allow", "GET, HEAD"),))
        handler = self.routes.get(request.path)
        if handler is None:
            known = ", ".join(sorted(self.routes)) or "none"
            return Response(404, f"not found: {request.path} (known: {known})\n".encode())
        try:
            return handler(request)
        except Exception as exc:  # a page's bug must not end the run
            first = (str(exc).splitlines() or [""])[0]
            return Response(500, f"{type(exc).__name__}: {first}\n".encode())

    async def _answer(self, stream: trio.SocketStream, conn: h11.Connection, req: Request) -> None:
        resp = self.handle(req)
        headers = [
            ("content-type", resp.content_type),
            ("content-length", str(len(resp.body))),
            ("cache-control", "no-store"),
            *resp.headers,
        ]
        out = conn.send(h11.Response(status_code=resp.status, headers=headers))
        if req.method != "HEAD":
            out = (out or b"") + (conn.send(h11.Data(data=resp.body)) or b"")
        out = (out or b"") + (conn.send(h11.EndOfMessage()) or b"")
        await stream.send_all(out)


async def serving(server: HttpServer, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` with ``server`` serving beside it, in this event loop;
    the server stops when ``main`` returns (or raises)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            return await main()
        finally:
            nursery.cancel_scope.cancel()
