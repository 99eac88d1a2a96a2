"""Sans-IO: the WebSocket upgrade (RFC 6455 4.1, 4.2.2) written and checked
by hand, for the common case only.

wsproto does the upgrade through h11: an h11 connection per client, the
request's headers normalised and validated, the response parsed into
events, the accept key checked. That is about a third of the client's CPU
per handshake (benchmarks/engine.py's ``handshakes_per_s``). Here:

- :func:`request` writes the same request bytes wsproto would (the same
  headers in the same order), when every part of it is one h11 would send
  as it is; otherwise None, and the caller goes through wsproto as before.
- :func:`accepted` reads a complete response head and returns what the
  connection needs (:class:`Accepted`) only when it is the plain success:
  ``HTTP/1.1 101``, ``Upgrade: websocket``, ``Connection`` with the
  ``upgrade`` token, the right ``Sec-WebSocket-Accept``, a subprotocol that
  was offered or none, no extension, no body headers, every line as h11
  would read it. Anything else returns None: the caller then hands the
  bytes to wsproto (with the same key, :func:`replay`), which accepts or
  refuses them exactly as it did before, with the same errors.

So the hand path never refuses anything itself: every failure still comes
from wsproto, with the cause and the message it always had.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import NamedTuple

from wsproto import ConnectionType, WSConnection
from wsproto.events import Request

# RFC 6455 1.3
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# h11 refuses a response head larger than this (wsproto: "Bad HTTP message");
# past it the bytes go to wsproto, which says so
HEAD_MAX = 16 * 1024

# h11's grammar (h11._abnf), compiled for bytes
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_FIELD_VCHAR = rb"[^\x00\s]"
_FIELD_VALUE = rb"(?:" + _FIELD_VCHAR + rb"+(?:[ \t]+" + _FIELD_VCHAR + rb"+)*)?"
HEADER = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _FIELD_VALUE + rb")[ \t]*")
NAME = re.compile(_TOKEN)
VALUE = re.compile(_FIELD_VALUE)
TARGET = re.compile(rb"[\x21-\x7e]+")
STATUS_101 = re.compile(rb"HTTP/1\.1 101(?: (?:[ \t]|" + _FIELD_VCHAR + rb")*)?")
END = re.compile(rb"\n\r?\n")  # where h11 sees the end of a head

# extra headers that send the request to wsproto (h11 checks them against the rest)
_OWN_REQUEST_HEADERS = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade")
)
# headers whose presence sends the response to wsproto (it decides)
_TO_WSPROTO = frozenset((b"sec-websocket-extensions", b"content-length", b"transfer-encoding"))


def new_key() -> bytes:
    """A fresh Sec-WebSocket-Key (as wsproto's generate_nonce)."""
    return base64.b64encode(os.urandom(16))


def accept_token(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept the server must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1(key + ACCEPT_GUID).digest())


def request(
    host: str,
    target: str,
    extra_headers: list[tuple[bytes, bytes]],
    subprotocols: list[str],
    key: bytes,
) -> bytes | None:
    """The upgrade request wsproto would send for these, or None when one
    of them is something h11 would refuse or rewrite (then wsproto writes
    it, and raises as it always did)."""
    try:
        host_b = host.encode("idna")
        target_b = target.encode("ascii")
        protocols = ", ".join(subprotocols).encode("ascii")
    except UnicodeError:
        return None
    if not TARGET.fullmatch(target_b) or not VALUE.fullmatch(host_b) or not host_b:
        return None
    parts = [
        b"GET ",
        target_b,
        b" HTTP/1.1\r\nHost: ",
        host_b,
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ",
        key,
        b"\r\nSec-WebSocket-Version: 13\r\n",
    ]
    if subprotocols:
        if not VALUE.fullmatch(protocols):
            return None
        parts += (b"Sec-WebSocket-Protocol: ", protocols, b"\r\n")
    for name, value in extra_headers:
        if not NAME.fullmatch(name) or not VALUE.fullmatch(value):
            return None
        if name.lower() in _OWN_REQUEST_HEADERS:
            return None  # h11 checks these against the others: its business
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def head_end(buffer: bytes | bytearray, searched: int = 0) -> int:
    """The index just past the end of the response head in ``buffer`` (as
    h11 finds it), or -1 when it has not arrived. ``searched``: how many
    bytes were already looked at without finding it."""
    m = END.search(buffer, max(0, searched - 2))
    return -1 if m is None else m.end()


class Accepted(NamedTuple):
    """The plain success, as the connection needs it."""

    subprotocol: str | None
    server: str | None  # the Server header (the server's version, for some dialects)
    trailing: bytes  # frames that came with the response


def accepted(data: bytes, end: int, key: bytes, offered: list[str]) -> Accepted | None:
    """``data[:end]`` is a complete response head (:func:`head_end`): what
    the connection needs if it is the plain success (see the module), else
    None (wsproto decides)."""
    head = data[:end]
    if not head.endswith(b"\r\n\r\n"):
        return None  # bare LF line endings: h11 copes, leave it to it
    lines = head[:-4].split(b"\r\n")
    if not STATUS_101.fullmatch(lines[0]):
        return None
    seen: dict[bytes, bytes] = {}
    server: bytes | None = None
    for line in lines[1:]:
        m = HEADER.fullmatch(line)
        if m is None:
            return None  # obs-fold, a stray byte: h11 decides
        name = m.group(1).lower()
        value = m.group(2)
        if name in _TO_WSPROTO:
            return None
        if name in (b"connection", b"upgrade", b"sec-websocket-accept", b"sec-websocket-protocol"):
            if name in seen:
                return None  # wsproto keeps the last of each: its call
            seen[name] = value
        elif name == b"server":
            server = value
    tokens = seen.get(b"connection")
    if tokens is None or not any(t.strip().lower() == b"upgrade" for t in tokens.split(b",")):
        return None
    if seen.get(b"upgrade", b"").lower() != b"websocket":
        return None
    if seen.get(b"sec-websocket-accept") != accept_token(key):
        return None
    chosen = seen.get(b"sec-websocket-protocol")
    subprotocol: str | None = None
    if chosen is not None:
        if not chosen.isascii():
            return None
        subprotocol = chosen.decode("ascii")
        if subprotocol not in offered:
            return None
    shown = None if server is None else (server.decode("latin-1").strip() or None)
    return Accepted(subprotocol, shown, data[end:])


def replay(
    host: str,
    target: str,
    extra_headers: list[tuple[bytes, bytes]],
    subprotocols: list[str],
    key: bytes,
) -> WSConnection | None:
    """A wsproto client connection in the state it would be in had it sent
    the request :func:`request` wrote (with ``key``), ready to be given the
    response; None if this wsproto keeps its key elsewhere (then the hand
    path is not used at all, see :data:`CAN_REPLAY`)."""
    ws = WSConnection(ConnectionType.CLIENT)
    ws.send(
        Request(host=host, target=target, extra_headers=extra_headers, subprotocols=subprotocols)
    )
    handshake = ws.handshake
    if not isinstance(getattr(handshake, "_nonce", None), bytes):
        return None
    handshake._nonce = key
    return ws


def _can_replay() -> bool:
    try:
        return replay("localhost", "/", [], [], new_key()) is not None
    except Exception:  # another wsproto: keep to its own path
        return False


CAN_REPLAY = _can_replay()
