"""The proxy's I/O: moves bytes between a client and its upstream at the
times :class:`soak.proxy.impair.Link` decides.

Each direction is a reader task and a writer task joined by a small queue:
the reader stamps each chunk with its release time, the writer sleeps until
then (``trio.sleep_until``) and forwards it. A watchdog task applies the
connection-wide impairments when they fall due.

A silent drop (NAT idle timeout, black hole) stops forwarding but keeps both
sockets open and keeps reading and discarding, so neither side gets a FIN or
an RST, or a full window that would hint at trouble: a true half-open
connection. A reset closes both sides with SO_LINGER(1, 0), which makes the
kernel send an RST instead of a FIN.
"""

from __future__ import annotations

import json
import math
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import IO

import trio

from soak.proxy.config import ImpairmentConfig
from soak.proxy.impair import Event, Link

# chunks read ahead per direction while the oldest waits for its release time
QUEUE_CHUNKS = 64
RECEIVE_SIZE = 65536

Connect = Callable[[], Awaitable[trio.abc.Stream]]
Item = tuple[float, bytes] | str  # a chunk and its release time, or "eof" / "broken"


async def reset_stream(stream: trio.abc.Stream) -> None:
    """Close ``stream`` with an RST if it is a socket, else just close it."""
    sock = getattr(stream, "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already gone: closing is all that is left
    await trio.aclose_forcefully(stream)


class Proxy:
    """Impairs every connection it handles according to ``config``.

    Impairment events go to ``on_event`` and, one JSON line each (flushed per
    event), to ``log``. Event times are seconds since ``start`` (by default
    the first time the proxy is used), on Trio's clock.
    """

    def __init__(
        self,
        config: ImpairmentConfig,
        *,
        on_event: Callable[[Event], None] | None = None,
        log: IO[str] | None = None,
        start: float | None = None,
    ) -> None:
        self.config = config
        self.on_event = on_event
        self.log = log
        self.start = start
        self.connections = 0  # accepted so far: the next connection's number
        self.live = 0  # open now

    def now(self) -> float:
        if self.start is None:
            self.start = trio.current_time()
        return trio.current_time() - self.start

    def _at(self, t: float) -> float:
        assert self.start is not None
        return self.start + t

    def _emit(self, link: Link) -> None:
        for event in link.events():
            if self.on_event is not None:
                self.on_event(event)
            if self.log is not None:
                self.log.write(json.dumps(event) + "\n")
                self.log.flush()

    async def serve(
        self,
        listen_host: str,
        listen_port: int,
        upstream_host: str,
        upstream_port: int,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen, and proxy every connection to the upstream. Reports the
        bound port (useful with port 0) through ``task_status.started``."""
        listeners = await trio.open_tcp_listeners(listen_port, host=listen_host)
        port: int = listeners[0].socket.getsockname()[1]
        self.now()

        async def connect() -> trio.abc.Stream:
            return await trio.open_tcp_stream(upstream_host, upstream_port)

        async def handler(stream: trio.SocketStream) -> None:
            await self.handle(stream, connect)

        task_status.started(port)
        await trio.serve_listeners(handler, listeners)

    async def handle(self, client_stream: trio.abc.Stream, connect_upstream: Connect) -> None:
        """Proxy one client connection until both sides are done with it."""
        conn = self.connections
        self.connections += 1
        self.live += 1
        try:
            await self._handle(conn, client_stream, connect_upstream)
        finally:
            self.live -= 1

    async def _handle(
        self, conn: int, client_stream: trio.abc.Stream, connect_upstream: Connect
    ) -> None:
        link = Link(self.config, conn, self.now())
        self._emit(link)
        try:
            upstream = await connect_upstream()
        except OSError as exc:
            # what a client behind a real proxy sees: accepted, then reset
            link.note(self.now(), "upstream_unreachable", error=str(exc))
            self._emit(link)
            await reset_stream(client_stream)
            return
        ends = {"up": (client_stream, upstream), "down": (upstream, client_stream)}
        broken = False
        reset = False
        try:
            async with trio.open_nursery() as nursery:

                def abort() -> None:
                    # one side is gone mid-stream: so is the connection, as
                    # on a real network, and the other side gets an RST
                    nonlocal broken
                    broken = True
                    nursery.cancel_scope.cancel()

                nursery.start_soon(self._watch, link, nursery.cancel_scope)
                async with trio.open_nursery() as pumps:
                    for direction, (src, dst) in ends.items():
                        pumps.start_soon(self._pump, link, direction, src, dst, abort)
                nursery.cancel_scope.cancel()
            reset = broken or link.state == "reset"
        finally:
            for stream in (client_stream, upstream):
                if reset:
                    await reset_stream(stream)
                else:
                    await trio.aclose_forcefully(stream)

    async def _watch(self, link: Link, scope: trio.CancelScope) -> None:
        """Apply connection-wide impairments when due; end it on a reset."""
        while True:
            deadline = link.next_deadline()
            if math.isinf(deadline):
                await trio.sleep_forever()
            await trio.sleep_until(self._at(deadline))
            state = link.check(self.now())
            self._emit(link)
            if state == "reset":
                scope.cancel()
                return

    async def _pump(
        self,
        link: Link,
        direction: str,
        src: trio.abc.Stream,
        dst: trio.abc.Stream,
        abort: Callable[[], None],
    ) -> None:
        if not self.config.latency and not self.config.bandwidth:
            # nothing delays a chunk: forward it from the reading task
            await self._forward(link, direction, src, dst, abort)
            return
        send, receive = trio.open_memory_channel[Item](QUEUE_CHUNKS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write, link, receive, dst, abort)
            async with send:
                await self._read(link, direction, src, send)

    async def _forward(
        self,
        link: Link,
        direction: str,
        src: trio.abc.Stream,
        dst: trio.abc.Stream,
        abort: Callable[[], None],
    ) -> None:
        """Read and forward at once, in one task: what ``_read`` and
        ``_write`` do when every release time is the arrival time. It saves
        a queue and a task switch per chunk (the proxy's CPU per chunk), and
        keeps the same drops, resets, EOFs and events."""
        while True:
            try:
                data = await src.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data, broken = b"", True
            else:
                broken = False
            if not data:
                if link.forwarding:
                    if broken:
                        abort()
                    else:
                        await _send_eof(dst)
                return
            now = self.now()
            forward = link.filter(direction, now, bytes(data))
            if not forward:
                link.touch(direction, now)
                self._emit(link)
                continue
            due = link.release_time(direction, now, len(forward)) is not None
            self._emit(link)
            if due:
                try:
                    await dst.send_all(forward)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    abort()
                    return

    async def _read(
        self,
        link: Link,
        direction: str,
        src: trio.abc.Stream,
        queue: trio.MemorySendChannel[Item],
    ) -> None:
        while True:
            try:
                data = await src.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
                broken = True
            else:
                broken = False
            item: Item | None = None
            if not data:
                if link.forwarding:
                    item = "broken" if broken else "eof"
            else:
                now = self.now()
                forward = link.filter(direction, now, bytes(data))
                if forward:
                    release = link.release_time(direction, now, len(forward))
                    if release is not None:
                        item = (release, forward)
                else:
                    link.touch(direction, now)
                self._emit(link)
            if item is not None:
                try:
                    await queue.send(item)
                except trio.BrokenResourceError:
                    return  # the writer gave up: the connection is ending
            if not data:
                return

    async def _write(
        self,
        link: Link,
        queue: trio.MemoryReceiveChannel[Item],
        dst: trio.abc.Stream,
        abort: Callable[[], None],
    ) -> None:
        async with queue:
            async for item in queue:
                if isinstance(item, str):
                    if link.forwarding:
                        # a FIN goes through like the data before it; a
                        # broken source breaks the whole connection
                        if item == "eof":
                            await _send_eof(dst)
                        else:
                            abort()
                    return
                release, data = item
                at = self._at(release)
                if at > trio.current_time():
                    # (sleep_until a time already past would raise and catch
                    # a Cancelled: the main cost of an unimpaired chunk)
                    await trio.sleep_until(at)
                if not link.forwarding:
                    continue  # the mapping is gone: so is what was in flight
                try:
                    await dst.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    abort()
                    return


async def _send_eof(stream: trio.abc.Stream) -> None:
    try:
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        else:
            await stream.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
