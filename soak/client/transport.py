"""I/O: reaching the target (TCP, TLS, source addresses) and moving one
connection's bytes (:class:`_Conn`)."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import itertools
import os
import socket
import ssl
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import urlsplit

import trio
from wsproto.connection import Connection as WsConnection
from wsproto.events import Event

from soak.addresses import IP_BIND_ADDRESS_NO_PORT
from soak.client.connection import Connection
from soak.config.target import TargetConfig
from soak.errors import LocalError, root_cause
from soak.wire import (
    ANCILLARY_SIZE,
    ERRQUEUE_SIZE,
    MAX_TX_WAITING,
    SO_TIMESTAMPING,
    SO_TIMESTAMPNS,
    SOL_SOCKET,
    TX_TIMESTAMPING,
    kernel_time,
    transmit_time,
)
from soak.wsframe import IdleWs, release, wsproto_idle

# Heartbeat frames are ~100 bytes. recv(n) allocates n bytes before it
# shrinks them, so a small size is cheaper on the hot path; a larger burst
# simply takes more reads.
RECEIVE_SIZE = 16384
# bytes handed to a connection between checkpoints (see Live._received);
# a larger chunk the batch receiver leaves to the client's task (soak.client.batch)
RECEIVE_SLICE = 2048

OpenStream = Callable[[], Awaitable[trio.abc.Stream]]


def tls_context(target: TargetConfig) -> ssl.SSLContext:
    """The client's TLS settings for a ``wss://`` target."""
    try:
        ctx = ssl.create_default_context(cafile=target.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise LocalError(f"target.ca_file: cannot load {target.ca_file}: {exc}") from exc
    if not target.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def target_address(target: TargetConfig) -> tuple[str, int]:
    parts = urlsplit(target.url)
    return parts.hostname or "", parts.port or (443 if target.secure else 80)


def url_opener(target: TargetConfig, connect_to: tuple[str, int] | None = None) -> OpenStream:
    """The default way to reach a target: TCP, plus TLS for ``wss://``.
    ``connect_to`` sends the TCP connection elsewhere (soak's impairment
    proxy) while TLS still verifies the target's own name.

    Connections spread over ``target.source_ips`` (each bound to its source
    before connecting, with IP_BIND_ADDRESS_NO_PORT so the port is chosen at
    connect time) and ``target.connect_to``, round-robin: connection ``n``
    uses source ``n % S`` and target ``(n // S) % T``, so every pair is used.
    A failure to connect carries ``source`` and ``target`` attributes, for
    :func:`soak.limits.limit_message`."""
    host, port = target_address(target)
    dials = (connect_to,) if connect_to is not None else target.connect_to or ((host, port),)
    sources = target.source_ips
    ctx = tls_context(target) if target.secure else None
    counter = itertools.count()
    numeric = {h: numeric_family(h) for h, _p in dials}

    async def open_tcp() -> trio.abc.Stream:
        n = next(counter)
        dial_host, dial_port = dials[(n // max(1, len(sources))) % len(dials)]
        source = sources[n % len(sources)] if sources else None
        try:
            if source is None:
                family = numeric[dial_host]
                if family is not None:
                    return await _open_numeric(family, dial_host, dial_port)
                return await trio.open_tcp_stream(dial_host, dial_port)
            return await _open_from(source, dial_host, dial_port)
        except OSError as exc:
            exc.source = source  # type: ignore[attr-defined]
            exc.target = f"{dial_host}:{dial_port}"  # type: ignore[attr-defined]
            raise

    async def open_stream() -> trio.abc.Stream:
        tcp = await open_tcp()
        if ctx is None:
            return tcp
        tls = trio.SSLStream(tcp, ctx, server_hostname=host, https_compatible=True)
        try:
            await tls.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(tcp)
            raise
        return tls

    return open_stream


def numeric_family(host: str) -> socket.AddressFamily | None:
    """The address family of a numeric IP address, None for a name."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


async def _open_numeric(family: socket.AddressFamily, host: str, port: int) -> trio.SocketStream:
    """What ``trio.open_tcp_stream`` does for one numeric address, without
    its name lookup and its happy-eyeballs nursery (a task and a cancel
    scope per connection: a tenth of a handshake's CPU). It fails as that
    does: ``all attempts to connect to HOST:PORT failed``, from a group of
    the one error (soak.errors.root_cause reads it)."""
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        await sock.connect((host, port))
    except OSError as exc:
        sock.close()
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        message = f"all attempts to connect to {shown} failed"
        raise OSError(message) from ExceptionGroup(message, [exc])
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def _open_from(source: str, host: str, port: int) -> trio.SocketStream:
    """A TCP connection from ``source`` (an address of this host) to ``host:port``."""
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    infos = await trio.socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform == "linux":
            with contextlib.suppress(OSError):  # an old kernel: bind() picks the port
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        await sock.bind((source, 0))
        await sock.connect(infos[0][4])
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


def connect_cause(exc: BaseException) -> str:
    """A short tag for why a connection could not be opened: ``dns``,
    ``refused``, ``timeout``, ``tls``, ``fd_limit``, ``no_ports`` or
    ``connect_error``. The error itself says so, or the one that caused it
    (:func:`soak.errors.root_cause`: trio's "all attempts to connect ...
    failed" comes from a group of per-address errors)."""
    return _cause_tag(exc) or _cause_tag(root_cause(exc)) or "connect_error"


def _cause_tag(exc: BaseException) -> str | None:
    if not isinstance(exc, OSError):
        return None
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return "refused"
    if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
        return "timeout"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return "fd_limit"
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EADDRINUSE):  # EADDRINUSE: bind, no NO_PORT
        return "no_ports"
    return None


# the slot Connection keeps wsproto's connection in (_Conn.ws reads it)
_WS_SLOT: Any = Connection.__dict__["ws"]


def reset(stream: trio.abc.Stream) -> None:
    """Make the coming close send a TCP RST instead of a FIN (SO_LINGER 0),
    as a crashed client or a dropped NAT mapping looks to the server."""
    sock = getattr(stream, "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # already gone: closing is all that is left to do


class _Conn(Connection):
    """One open WebSocket on its stream: the state and reactions of
    :class:`~soak.client.connection.Connection`, plus moving the bytes.

    On a plain TCP stream (``trio.SocketStream``) the hot path reads and
    writes the socket's descriptor itself: ``wait_readable`` then one
    ``os.read``, and ``os.write`` with ``send_all`` taking over only what the
    kernel did not accept. trio's own calls add a generator context manager,
    a failed ``recv`` (EAGAIN) and a scheduler round trip to every call. The
    descriptor is only used while the connection is open; the client closes
    the stream last. TLS and in-memory streams go through the stream."""

    __slots__ = (
        "busy",
        "fd",
        "parked",
        "pending",
        "raw",
        "stream",
        "subprotocol",
        "tx_bytes",
        "tx_ids",
    )

    def __init__(self, stream: trio.abc.Stream, ws: WsConnection | None, opened_at: float) -> None:
        # ws None: an open connection with nothing received yet (see ws below)
        super().__init__(cast(WsConnection, ws), opened_at)
        self.stream = stream
        self.fd = stream.socket.fileno() if type(stream) is trio.SocketStream else -1
        # the pacer's side (soak.client.pacer): bytes of a ping the kernel did
        # not take yet, whether the client's task is in a send_all, and
        # whether the pacer left this connection to its task for that reason
        self.pending: bytes | None = None
        self.busy = False
        self.parked = False
        self.subprotocol: str | None = None  # what the server chose at the upgrade
        # the socket read with recvmsg for the kernel's receive times (None:
        # plain os.read); see use_kernel_timestamps()
        self.raw: socket.socket | None = None
        # with kernel timestamps: bytes written so far, and the heartbeats
        # waiting for the kernel's transmit time, by their last byte's offset
        self.tx_bytes = 0
        self.tx_ids: dict[int, int] | None = None

    # -- wsproto's connection, only while it holds something ------------------------

    @property
    def ws(self) -> WsConnection:
        """wsproto's connection; while it is idle (:func:`wsproto_idle`: open,
        nothing received and unparsed) it is dropped and an
        :class:`~soak.wsframe.IdleWs` stands for it (memory per held
        connection, benchmarks/engine.py's ``rss_per_conn``)."""
        ws: WsConnection | None = _WS_SLOT.__get__(self, _Conn)
        if ws is not None:
            if not wsproto_idle(ws):
                return ws
            _WS_SLOT.__set__(self, None)
            release(ws)
        return cast(WsConnection, IdleWs(self))

    @ws.setter
    def ws(self, ws: WsConnection) -> None:
        _WS_SLOT.__set__(self, ws)

    def held_ws(self) -> WsConnection | None:
        held: WsConnection | None = _WS_SLOT.__get__(self, _Conn)
        return held

    def hold_ws(self, ws: WsConnection) -> None:
        _WS_SLOT.__set__(self, ws)

    def use_kernel_timestamps(self) -> bool:
        """Read this connection with the kernel's receive times (soak.wire).
        False where the stream cannot give them: TLS (the kernel's time is
        of the TLS record, not of the message), in-memory streams, a kernel
        without SO_TIMESTAMPNS."""
        if self.fd < 0:
            return False
        sock = getattr(self.stream, "socket", None)
        raw = getattr(sock, "_sock", None)  # the socket trio wraps
        if not isinstance(raw, socket.socket):
            return False
        try:
            raw.setsockopt(SOL_SOCKET, SO_TIMESTAMPNS, 1)
            raw.setsockopt(SOL_SOCKET, SO_TIMESTAMPING, TX_TIMESTAMPING)
        except OSError:
            return False
        self.raw = raw
        self.tx_ids = {}
        return True

    def tx_sent(self, seq: int) -> None:
        """Heartbeat ``seq`` was written whole: its last byte is the last one
        written, whose transmit time the kernel will put in the error queue."""
        ids = self.tx_ids
        if ids is not None:
            ids[self.tx_bytes - 1] = seq
            if len(ids) > MAX_TX_WAITING:  # the kernel stopped stamping: forget the oldest
                del ids[next(iter(ids))]

    async def send(self, event: Event) -> None:
        await self.write(self.ws.send(event))

    async def write(self, data: bytes) -> None:
        if self.pending is not None:  # the pacer's ping goes first
            data = self.pending + data
            self.pending = None
        fd = self.fd
        if fd >= 0:
            try:
                n = os.write(fd, data)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
            self.tx_bytes += n
            if n == len(data):
                return
            data = data[n:]
        self.busy = True
        try:
            await self.stream.send_all(data)
            self.tx_bytes += len(data)
        finally:
            self.busy = False

    def write_now(self, data: bytes) -> bool:
        """Write without waiting (the pacer's path). False when bytes are
        left over: they stay in ``pending`` for the client's task, whose
        write sends them or, on a broken socket, raises as it would have."""
        if self.pending is not None:
            self.pending += data
            return False
        try:
            n = os.write(self.fd, data)
        except OSError:  # BlockingIOError included
            n = 0
        self.tx_bytes += n
        if n == len(data):
            return True
        self.pending = data[n:]
        return False

    async def receive(self) -> bytes | bytearray | None:
        """The next chunk (b"" at the end of the stream), or None when the
        descriptor woke without data (then simply wait again)."""
        fd = self.fd
        if fd < 0:
            return await self.stream.receive_some(RECEIVE_SIZE)
        await trio.lowlevel.wait_readable(fd)
        raw = self.raw
        try:
            if raw is None:
                return os.read(fd, RECEIVE_SIZE)
            trusted = self._observe()
            self._transmitted(raw, trusted)
            data, ancdata, _flags, _addr = raw.recvmsg(RECEIVE_SIZE, ANCILLARY_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
        self._stamp(ancdata, trusted)
        return data

    def _observe(self) -> bool:
        """The run's clock map, brought up to date at this read; False when
        the wall clock stepped (this read's kernel times are not trusted)."""
        wire = self.wire
        assert wire is not None
        if wire.observe(time.time(), trio.current_time()):
            return True
        self.metrics.count("clock_steps")
        return False

    def _transmitted(self, raw: socket.socket, trusted: bool) -> None:
        """Drain the error queue: the kernel's transmit times of what was
        written (each write leaves one, and wakes the reader until it is
        read), the heartbeats' among them given to the engine."""
        ids = self.tx_ids
        assert ids is not None
        assert self.wire is not None
        while True:
            try:
                _d, ancdata, _f, _a = raw.recvmsg(0, ERRQUEUE_SIZE, socket.MSG_ERRQUEUE)
            except BlockingIOError:
                return
            stamped = transmit_time(ancdata)
            if stamped is None:
                continue
            offset, when = stamped
            seq = ids.pop(offset, None)
            if seq is not None and trusted:
                left = self.wire.to_monotonic(when)
                sent = self.hb.written(seq, left)
                if sent is not None:
                    self.metrics.count("tx_timestamped")
                    self.metrics.record("tx_delay", left - sent)

    def _stamp(self, ancdata: list[tuple[int, int, bytes]], trusted: bool) -> None:
        """The kernel's receive time of what was just read, on the run's
        clock (soak.wire), or why there is none."""
        wire = self.wire
        assert wire is not None
        kernel = kernel_time(ancdata)
        self.rx_step = False
        if kernel is None:
            self.rx_at = None
        elif trusted:
            self.rx_at = wire.to_monotonic(kernel)
        else:
            self.rx_at = None
            self.rx_step = True
