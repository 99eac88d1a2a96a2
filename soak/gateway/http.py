"""The little HTTP/1.1 the gateway speaks before (or instead of) WebSocket.

One port serves both the WebSocket upgrade and ``GET /api/stats``, so the
gateway reads the request head itself and decides by path and ``Upgrade``
header. Only that decision is made here; the WebSocket handshake proper is
validated by wsproto (which uses h11), so this parser can stay lenient.
Pure functions on bytes, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# A browser's upgrade request is well under 2 KiB. The bound keeps a client
# that never sends the blank line from making us buffer without limit.
MAX_HEAD_BYTES = 16 * 1024

# The blank line that ends a request head.
HEAD_END = b"\r\n\r\n"

_REASONS = {
    200: b"OK",
    202: b"Accepted",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    503: b"Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What the gateway needs from a request head."""

    method: bytes
    path: bytes
    upgrade: bytes
    """The ``Upgrade`` header's value, lowercased; ``b""`` when absent."""
    query: bytes = field(default=b"", compare=False)
    """What followed ``?`` in the request target (``b""`` when none). Only the
    admin endpoint reads it; left out of comparisons, which are about routing."""

    @property
    def wants_websocket(self) -> bool:
        return self.upgrade == b"websocket"


def head_complete(buf: bytes | bytearray, scan_from: int = 0) -> bool:
    """True once ``buf`` holds the blank line that ends a request head.

    ``scan_from`` lets a reader that appends chunks rescan only the new bytes
    (minus 3, since the terminator may straddle two chunks).
    """
    return buf.find(HEAD_END, max(0, scan_from - 3)) >= 0


def parse_request_head(buf: bytes | bytearray) -> RequestHead | None:
    """Parse the request line and the ``Upgrade`` header; None if malformed."""
    end = buf.find(HEAD_END)
    if end < 0:
        return None
    lines = bytes(buf[:end]).split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return None
    method, target, _version = parts
    upgrade = b""
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            return None
        if name.strip().lower() == b"upgrade":
            upgrade = value.strip().lower()
    path, _sep, query = target.partition(b"?")
    return RequestHead(method=method, path=path, upgrade=upgrade, query=query)


def response(
    status: int,
    body: bytes = b"",
    content_type: bytes = b"text/plain",
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> bytes:
    """A complete HTTP/1.1 response that closes the connection afterwards.

    ``headers`` (name, value) go after ``Content-Length``, before ``Connection``.
    """
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"")),
            b"Content-Type: %s\r\n" % content_type,
            b"Content-Length: %d\r\n" % len(body),
            *(b"%s: %s\r\n" % (name, value) for name, value in headers),
            b"Connection: close\r\n\r\n",
            body,
        ]
    )
