"""Hand framing for the heartbeat's hot path, next to wsproto.

wsproto does the upgrade, every unusual frame and every error. What it costs
per heartbeat (a ``TextMessage`` event, a ``bytearray`` copy of the payload,
a generator per received chunk, an incremental UTF-8 decoder per message,
``os.urandom(4)`` per frame) is most of the client's framing CPU, so the two
frames every heartbeat needs take a shortcut:

- :func:`client_frame` builds a complete, masked client frame (RFC 6455 5.2,
  5.3): a fresh mask per frame from :class:`MaskSource`, which draws
  ``os.urandom`` in batches (the same source wsproto uses, one syscall per
  1,024 masks instead of one per frame).
- :func:`single_text_frame` recognises a received chunk that is exactly one
  complete, unfragmented, unmasked text frame with minimal length encoding
  and valid UTF-8, and returns its text. Anything else, including every
  malformed frame, returns None and goes through wsproto, which raises the
  same errors as before.

The receive shortcut is valid only while wsproto holds nothing: no queued
event, no partial frame, no unfinished fragmented message.
:func:`wsproto_idle` says so; it reads wsproto's internal state, so it
checks once (:data:`CAN_PEEK`) that those attributes exist, and when they do
not (another wsproto version) every chunk simply goes through wsproto.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, Ping, Pong, TextMessage
from wsproto.frame_protocol import LOCAL_ONLY_CLOSE_REASONS, FrameProtocol
from wsproto.frame_protocol import Frame as WsFrame

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

# masks drawn per os.urandom call
MASK_BATCH = 1024


class MaskSource:
    """Fresh 4-byte masking keys from ``os.urandom``, drawn in batches."""

    __slots__ = ("_at", "_pool")

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def next(self) -> bytes:
        at = self._at
        if at >= len(self._pool):
            self._pool = os.urandom(4 * MASK_BATCH)
            at = 0
        self._at = at + 4
        return self._pool[at : at + 4]


MASKS = MaskSource()


def mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``key`` repeated (RFC 6455 5.3)."""
    n = len(payload)
    if not n:
        return b""
    stream = key * (n // 4 + 1)
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream[:n], "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """One final (FIN) masked client frame carrying ``payload``."""
    if key is None:
        key = MASKS.next()
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + key + mask(payload, key)


def single_text_frame(data: bytes) -> str | None:
    """The text of ``data`` if it is exactly one complete server text frame
    that wsproto would accept as a whole message; otherwise None."""
    n = len(data)
    if n < 2 or data[0] != 0x81:  # FIN, no RSV bits, opcode text
        return None
    length = data[1]  # the mask bit must be clear: servers do not mask
    if length < 126:
        start = 2
    elif length == 126:
        if n < 4:
            return None
        length = (data[2] << 8) | data[3]
        if length < 126:
            return None  # not minimal: wsproto refuses it
        start = 4
    elif length == 127:
        if n < 10:
            return None
        length = int.from_bytes(data[2:10], "big")
        if length < 65536 or length >> 63:
            return None
        start = 10
    else:
        return None  # masked
    if n - start != length:
        return None
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _can_peek() -> bool:
    try:
        _idle(Connection(ConnectionType.CLIENT))
    except AttributeError:
        return False
    return True


def _idle(ws: Any) -> bool:
    proto = ws._proto
    dec = proto._frame_decoder
    return bool(
        not ws._events
        and not len(dec.buffer)
        and dec.header is None
        and proto._message_decoder.opcode is None
        and not proto.extensions
    )


CAN_PEEK = _can_peek()


class _EventQueue(list[Any]):
    """wsproto's queue of events waiting for ``events()``, as a list: it
    holds something only around the upgrade and the close, and an empty
    ``deque`` costs 760 bytes per connection, an empty list 56."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


def slim(ws: Connection) -> None:
    """Trim what a long-lived wsproto connection keeps (memory per held
    connection, see benchmarks/engine.py); only where wsproto's internals
    are the ones we know. Also: a close frame with a reserved code is
    read as it was sent (:func:`tolerate_reserved_close`)."""
    if CAN_PEEK and type(ws._events) is deque:
        ws._events = _EventQueue(ws._events)  # type: ignore[assignment]
    tolerate_reserved_close(ws)


# the codes RFC 6455 7.4.1 keeps off the wire (1005, 1006, 1015)
RESERVED_CLOSE = frozenset(int(c) for c in LOCAL_ONLY_CLOSE_REASONS)


def reserved_close(payload: bytes) -> tuple[int, str] | None:
    """A close frame's (code, reason) when its code is one RFC 6455 keeps
    off the wire (nats-server sends 1006 "Stale Connection"), else None."""
    if len(payload) < 2:
        return None
    code = int.from_bytes(payload[:2], "big")
    if code not in RESERVED_CLOSE:
        return None
    return code, payload[2:].decode("utf-8", errors="replace")


class _TolerantFrameProtocol(FrameProtocol):
    """wsproto's frame protocol, reading a close frame with a reserved code
    as it was sent (:func:`tolerate_reserved_close`). Put on a connection's
    frame protocol by changing its class: nothing per connection."""

    def _process_close(self, frame: WsFrame) -> WsFrame:
        found = reserved_close(bytes(frame.payload or b""))  # type: ignore[arg-type]
        if found is None:
            return super()._process_close(frame)
        return WsFrame(frame.opcode, found, frame.frame_finished, frame.message_finished)


def tolerate_reserved_close(ws: Connection) -> None:
    """wsproto refuses a close frame carrying 1005, 1006 or 1015 ("remote
    CLOSE with local-only reason") and reports a 1002 of its own instead:
    the server's code and reason would be lost. Read such a frame as the
    server sent it: a ``CloseConnection`` with that code and its reason (a
    str, never None: wsproto's own 1006 for a lost transport has None).
    Only where wsproto's internals are the ones we know."""
    proto = getattr(ws, "_proto", None)
    if type(proto) is FrameProtocol and callable(getattr(proto, "_process_close", None)):
        proto.__class__ = _TolerantFrameProtocol


def wsproto_idle(ws: Connection) -> bool:
    """True when ``ws`` is open and holds no received bytes or events, so a
    chunk can be parsed by hand as if wsproto had parsed it."""
    return CAN_PEEK and ws.state is ConnectionState.OPEN and _idle(ws)


# -- an idle connection holds no wsproto objects -----------------------------------------


def fresh_client() -> Connection:
    """A client wsproto connection just opened (no extensions, nothing
    received), slimmed: what an idle one is equivalent to."""
    ws = Connection(ConnectionType.CLIENT)
    slim(ws)
    return ws


def release(ws: Connection) -> None:
    """Free an idle connection dropped for good now rather than at the next
    garbage collection: wsproto's frame parser is a generator that refers
    to its own protocol object (a reference cycle)."""
    parser = getattr(getattr(ws, "_proto", None), "_parse_more", None)
    close = getattr(parser, "close", None)
    if close is not None:
        close()


# finished messages, pings and pongs leave a connection's wsproto state as
# it was: one shared open connection frames them for every idle connection
_SENDER = fresh_client()
_STATELESS = (Ping, Pong)


class Holder(Protocol):
    """Whatever keeps a connection's wsproto connection (None while idle)."""

    def held_ws(self) -> Connection | None: ...

    def hold_ws(self, ws: Connection) -> None: ...


class IdleWs:
    """Stands for an idle wsproto client connection (:func:`wsproto_idle`)
    of ``owner``, which holds none meanwhile (~800 bytes per connection:
    wsproto's connection, frame protocol, decoders, buffer and parser
    generator). Reads of the idle state answer as an idle connection does;
    a finished message, a ping or a pong is framed by a shared connection;
    anything else (data received, a close sent, an unfinished message)
    first gives ``owner`` a fresh connection of its own
    (:func:`fresh_client`, equivalent to the idle one it dropped) and goes
    to it."""

    __slots__ = ("owner",)
    state = ConnectionState.OPEN
    _events: tuple[()] = ()
    _proto = _SENDER._proto  # idle: empty buffer, no header, no message

    def __init__(self, owner: Holder) -> None:
        self.owner = owner

    def real(self) -> Connection:
        ws = self.owner.held_ws()
        if ws is None:
            ws = fresh_client()
            self.owner.hold_ws(ws)
        return ws

    def send(self, event: Any) -> bytes:
        if isinstance(event, _STATELESS) or (
            isinstance(event, (TextMessage, BytesMessage)) and event.message_finished
        ):
            return _SENDER.send(event)
        return self.real().send(event)

    def events(self) -> Iterator[Any]:
        return iter(())

    def receive_data(self, data: bytes | None) -> None:
        self.real().receive_data(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)
