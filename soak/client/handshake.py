"""I/O: opening one connection, from TCP to the protocol's own handshake.

Each failure becomes a :class:`~soak.errors.HandshakeError` whose ``cause``
counts it (``refused``, ``tls``, ``http_503``, ``close_4001``, ...) and whose
message names the target as shown (no credentials). A refusal the server
marks as final (OpenClaw's wrong token) comes back with ``permanent`` set;
what the run makes of that is the reconnect loop's business.
"""

from __future__ import annotations

import math
import ssl
from typing import cast

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection as WsConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from soak.classify import SERVER, CloseInfo
from soak.client import upgrade
from soak.client.closing import retry_hint
from soak.client.shared import Shared
from soak.client.transport import RECEIVE_SIZE, _Conn, connect_cause, target_address
from soak.config.profile import Profile
from soak.errors import HandshakeError
from soak.limits import limit_message
from soak.protocols.base import HeartbeatProtocol
from soak.wsframe import slim


async def open_connection(sh: Shared, proto: HeartbeatProtocol) -> _Conn:
    """The upgrade, then the protocol's own handshake if it has one."""
    conn = await _upgrade(sh, proto, server_header=not proto.has_handshake)
    proto.opened()
    if not proto.has_handshake:
        return conn
    url = sh.config.shown_url
    try:
        await proto.handshake(_HandshakeIO(conn, url, conn.subprotocol))
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(conn.stream)
        raise HandshakeError("reset", f"{url}: {exc}") from exc
    except RemoteProtocolError as exc:
        await trio.aclose_forcefully(conn.stream)
        raise HandshakeError("protocol", f"{url}: {exc}") from exc
    except BaseException:
        await trio.aclose_forcefully(conn.stream)
        raise
    if sh.gauges.server_version is None:
        sh.gauges.server_version = proto.server_version
    # the connection's age counts from here, as the server's does (its
    # heartbeat timer starts when it authenticates the client)
    conn.opened_at = trio.current_time()
    return conn


async def _upgrade(sh: Shared, proto: HeartbeatProtocol, *, server_header: bool = False) -> _Conn:
    """TCP (and TLS), then the HTTP upgrade to WebSocket, offering the
    dialect's subprotocols (the server must pick one). ``server_header``:
    the server's version is its upgrade response's Server header (for a
    dialect whose own handshake does not tell it)."""
    cfg = sh.config
    url = cfg.shown_url
    try:
        stream = await sh.services.open_stream()
    except OSError as exc:
        message = describe_os_error(exc, cfg.profile)
        raise HandshakeError(connect_cause(exc), f"{url}: {message}") from exc
    except trio.BrokenResourceError as exc:
        cause = "tls" if isinstance(exc.__cause__, ssl.SSLError) else "reset"
        raise HandshakeError(cause, f"{url}: {exc.__cause__ or exc}") from exc
    try:
        offered = list(proto.subprotocols())
        host, target, headers = cfg.host_header, proto.resource(cfg.resource), cfg.extra_headers
        key = upgrade.new_key()
        data = upgrade.request(host, target, headers, offered, key) if upgrade.CAN_REPLAY else None
        if data is None:  # something only wsproto writes: it does the whole upgrade
            ws = WSConnection(ConnectionType.CLIENT)
            request = Request(host=host, target=target, extra_headers=headers, subprotocols=offered)
            await stream.send_all(ws.send(request))
        else:
            await stream.send_all(data)
            head = await _read_head(stream, url)
            end = upgrade.head_end(head)
            if end >= 0:
                ok = upgrade.accepted(head, end, key, offered)
                if ok is not None:
                    if offered and ok.subprotocol is None:
                        raise _no_subprotocol(url, offered, None)
                    if server_header and sh.gauges.server_version is None:
                        sh.gauges.server_version = ok.server
                    # nothing came after the head (the usual case): no wsproto
                    # connection until a frame needs one (_Conn.ws)
                    frames = (
                        WsConnection(ConnectionType.CLIENT, None, ok.trailing)
                        if ok.trailing
                        else None
                    )
                    return _opened(stream, frames, ok.subprotocol)
            # not the plain success: wsproto reads it, as it always did
            replayed = upgrade.replay(host, target, headers, offered, key)
            assert replayed is not None  # CAN_REPLAY
            ws = replayed
            ws.receive_data(head)
        while True:
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    # Keep only the frame-level connection: the finished
                    # HTTP handshake (h11 state, ~1.5 KB) would otherwise
                    # live as long as the connection. Frames that came
                    # with the upgrade response are already queued in it.
                    assert ws.connection is not None
                    if offered and event.subprotocol not in offered:
                        raise _no_subprotocol(url, offered, event.subprotocol)
                    if server_header and sh.gauges.server_version is None:
                        sh.gauges.server_version = _server(event)
                    return _opened(stream, ws.connection, event.subprotocol)
                if isinstance(event, RejectConnection):
                    raise _rejected(url, event)
            chunk = await stream.receive_some(RECEIVE_SIZE)
            if not chunk:
                raise HandshakeError("eof", f"{url}: connection closed during the upgrade")
            ws.receive_data(cast(bytes, chunk))
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(stream)
        raise HandshakeError("reset", f"{url}: {exc}") from exc
    except RemoteProtocolError as exc:
        await trio.aclose_forcefully(stream)
        if "subprotocol" in str(exc).lower():
            # wsproto refuses a subprotocol that was not offered
            raise HandshakeError(
                "subprotocol", f"{url}: the server chose a subprotocol soak did not offer: {exc}"
            ) from exc
        raise HandshakeError("protocol", f"{url}: bad upgrade response: {exc}") from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


async def _read_head(stream: trio.abc.Stream, url: str) -> bytes:
    """The response's bytes up to the end of its head (and whatever came
    with it), or the first :data:`upgrade.HEAD_MAX` and more when the head
    is longer (wsproto then refuses it)."""
    data = await stream.receive_some(RECEIVE_SIZE)
    if data and upgrade.head_end(data) >= 0:
        return bytes(data)  # the usual case: the whole head in one read
    head = bytearray(data)
    while True:
        if not data:
            raise HandshakeError("eof", f"{url}: connection closed during the upgrade")
        if len(head) > upgrade.HEAD_MAX:
            return bytes(head)
        data = await stream.receive_some(RECEIVE_SIZE)
        searched = len(head)
        head += data
        if data and upgrade.head_end(head, searched) >= 0:
            return bytes(head)


def _opened(stream: trio.abc.Stream, ws: WsConnection | None, subprotocol: str | None) -> _Conn:
    """The connection once upgraded: only its frame-level part is kept."""
    if ws is not None:
        slim(ws)
    conn = _Conn(stream, ws, trio.current_time())
    conn.subprotocol = subprotocol
    return conn


def _no_subprotocol(url: str, offered: list[str], chosen: str | None) -> HandshakeError:
    what = "none" if chosen is None else repr(chosen)
    return HandshakeError(
        "subprotocol",
        f"{url}: the server chose subprotocol {what}; soak offered "
        + ", ".join(repr(p) for p in offered),
        permanent=False,
    )


def _server(event: AcceptConnection) -> str | None:
    """The upgrade response's Server header, if it has one."""
    for name, value in event.extra_headers:
        if bytes(name).lower() == b"server":
            return bytes(value).decode("latin-1").strip() or None
    return None


class _HandshakeIO:
    """A protocol handshake's view of a freshly upgraded connection
    (:class:`soak.protocols.base.HandshakeIO`)."""

    def __init__(self, conn: _Conn, url: str, subprotocol: str | None = None) -> None:
        self.conn = conn
        self.url = url
        self.subprotocol = subprotocol

    async def send_text(self, text: str) -> None:
        await self.conn.send(TextMessage(data=text))

    async def send_bytes(self, data: bytes) -> None:
        await self.conn.send(BytesMessage(data=data))

    async def receive_text(self) -> str:
        while True:
            message = await self.receive()
            if isinstance(message, str):
                return message

    async def receive(self) -> str | bytes:
        conn = self.conn
        buffer = conn.buffer
        while True:
            # frames already received come first (some arrive with the
            # upgrade); events() parses lazily, so frames after the one
            # returned stay queued for the live connection
            for event in conn.ws.events():
                if isinstance(event, TextMessage):
                    buffer.append(event.data)
                    if event.message_finished:
                        text = "".join(b for b in buffer if isinstance(b, str))
                        buffer.clear()
                        return text
                elif isinstance(event, BytesMessage):
                    buffer.append(bytes(event.data))
                    if event.message_finished:
                        message = b"".join(b for b in buffer if isinstance(b, bytes))
                        buffer.clear()
                        return message
                elif isinstance(event, Ping):
                    await conn.send(event.response())
                elif isinstance(event, CloseConnection):
                    raise self._closed(event)
            data = await conn.stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise HandshakeError("eof", f"{self.url}: connection closed during the handshake")
            conn.ws.receive_data(cast(bytes, data))

    def _closed(self, event: CloseConnection) -> HandshakeError:
        reason = event.reason or ""
        info = CloseInfo(SERVER, event.code, reason)
        shown = f' "{reason}"' if reason else ""
        return HandshakeError(
            f"close_{event.code}",
            f"{self.url}: closed with {event.code}{shown} during the handshake",
            retry_after=retry_hint(info),
        )


def describe_os_error(exc: OSError, profile: Profile) -> str:
    """The error as shown and recorded: for descriptors or ports running out,
    the limit, the number needed and the fix (never a bare OSError)."""
    t = profile.target
    host, port = target_address(t)
    return limit_message(
        exc,
        needed=profile.peak_clients,
        target=getattr(exc, "target", None) or f"{host}:{port}",
        sources=t.source_ips,
        targets=max(1, len(t.connect_to)),
    ) or str(exc)


def _rejected(url: str, event: RejectConnection) -> HandshakeError:
    retry_after: float | None = None
    for name, value in event.headers:
        if name.lower() == b"retry-after":
            try:
                retry_after = max(0.0, float(value.decode()))
            except ValueError:
                retry_after = None  # an HTTP date; not honoured yet
            if retry_after is not None and not math.isfinite(retry_after):
                retry_after = None
    return HandshakeError(
        f"http_{event.status_code}",
        f"{url}: upgrade rejected with HTTP {event.status_code}",
        retry_after=retry_after,
    )
