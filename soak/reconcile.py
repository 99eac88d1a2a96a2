"""Server/client reconciliation: the server's own connection count next to ours.

In the incident the server's "online" count and the clients' own count
disagreed: clients believed they were connected while the server had
dropped them (zombies), or the server still counted connections whose
clients were long gone. Neither side's number alone shows that. When a
profile has ``[target.stats]``, the runner polls that URL once per interval,
reads the number at ``field`` (a dotted path into the JSON document), and
records it next to its own count of open connections.

The numbers (all counts are of open WebSocket connections):

- **gap** = server count - client count, at one poll. Positive: the server
  holds connections the clients no longer believe in (leaked sessions,
  closes it never noticed). Negative: clients think they are connected but
  the server does not count them (zombies, or connections that reach some
  other node). A few during a ramp or churn are normal: handshakes and closes
  are in flight in both directions while the two counts are read. What
  matters is a gap that persists.
- **max_gap** / **max_gap_at**: the gap of the largest absolute size, signed,
  and when it was first seen (``None`` if no poll ever saw a gap).
- **persistence**: a *run* is a sequence of successive successful polls that
  all see a nonzero gap in the same direction; its size may change. A run
  ends at the first successful poll that sees no gap or a gap in the other
  direction (which starts a new run). A failed poll saw nothing, so it
  neither ends nor extends a run. A run's duration is the time from its first
  to its latest poll: a lower bound (a gap seen by a single poll lasted
  "0 s", and with 10 s intervals one seen by three polls lasted at least
  20 s). ``current_gap_s`` is the open run's duration (0 when there is none),
  ``longest_gap_s`` the longest run's (open or not), with its number of polls
  and its start.
- **polls** / **failed_polls**: every poll, and those that produced no count
  (the endpoint refused, timed out, answered non-200 or not JSON, or the
  field was missing). A failed poll never stops the run: its one-line warning
  goes into that interval's record.

Layers, as elsewhere in soak: :func:`fetch_json` is plain I/O with no timeout
of its own (Trio style: the caller owns the deadline); :func:`extract` and
:class:`Drift` are pure; :class:`Poller` is what the runner owns: it applies
the profile's ``timeout`` itself and turns every remote failure into a
warning, so a slow or broken stats endpoint can delay the interval it polls
for by at most that timeout, and can never raise.

No new dependency: the HTTP/1.1 client is ``h11`` (which wsproto already
needs) on any :class:`trio.abc.Stream`. Plain ``http://`` only.
"""

from __future__ import annotations

import errno
import json
import math
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import h11
import trio

from soak import __version__
from soak.config.target import StatsConfig
from soak.config.units import format_duration
from soak.errors import RemoteError, root_cause
from soak.urls import authority, without_userinfo

MAX_BODY = 1 << 20  # a stats document is a few KB; refuse to buffer more than 1 MiB
RECEIVE_BYTES = 65536

OpenTcp = Callable[[str, int], Awaitable[trio.abc.Stream]]


class StatsError(RemoteError):
    """The stats endpoint could not be read, or its document did not have a
    whole number at the field path. The message names the URL or the path."""


# -- HTTP --------------------------------------------------------------------


async def fetch_json(url: str, *, open_stream: OpenTcp | None = None, method: str = "GET") -> Any:
    """GET ``url`` (``http://`` only) and return its JSON document (any 2xx
    status; None for an empty body). ``method="POST"`` sends an empty POST,
    as the storm stage does to a gateway's admin endpoint.

    ``open_stream(host, port)`` connects (default :func:`trio.open_tcp_stream`).
    There is no timeout here: wrap the call in :func:`trio.move_on_after` or
    :func:`trio.fail_after`. Every failure is a :class:`StatsError` naming
    the URL.
    """
    shown = without_userinfo(url)
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError as exc:  # e.g. "Port out of range 0-65535"
        raise StatsError(f"{shown}: not a valid URL ({exc})") from None
    host = parts.hostname
    if parts.scheme != "http" or not host:
        raise StatsError(f"{shown}: expected an http:// URL with a host")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    opener = open_stream or trio.open_tcp_stream
    try:
        stream = await opener(host, port)
    except OSError as exc:
        raise StatsError(f"{shown}: {_connect_failure(exc)}") from exc
    async with stream:
        try:
            status, body = await _exchange(stream, authority(url), target, shown, method)
        except trio.BrokenResourceError as exc:
            raise StatsError(
                f"{shown}: connection lost ({_first_line(exc.__cause__ or exc)})"
            ) from exc
        except h11.RemoteProtocolError as exc:
            raise StatsError(f"{shown}: bad HTTP response ({_first_line(exc)})") from exc
    if not 200 <= status < 300:
        raise StatsError(f"{shown}: HTTP {status}")
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise StatsError(f"{shown}: response is not JSON ({_first_line(exc)})") from exc


async def _exchange(
    stream: trio.abc.Stream, host_header: str, target: str, shown: str, method: str = "GET"
) -> tuple[int, bytes]:
    """One request, one response. Returns the status and the whole body; a
    non-200 answer returns as soon as its head arrives."""
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method=method,
        target=target,
        headers=[
            ("Host", host_header),
            *([("Content-Length", "0")] if method != "GET" else []),
            ("Accept", "application/json"),
            ("User-Agent", f"soak/{__version__}"),
            ("Connection", "close"),
        ],
    )
    # send() returns None only for ConnectionClosed, which is never sent here
    await stream.send_all((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
    body = bytearray()
    status = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            # b"" at EOF: h11 then ends an EOF-delimited body, or raises
            # RemoteProtocolError for a response cut short
            conn.receive_data(bytes(await stream.receive_some(RECEIVE_BYTES)))
        elif isinstance(event, h11.Response):
            status = event.status_code
            if not 200 <= status < 300:
                return status, b""
            length = dict(event.headers).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > MAX_BODY:
                raise StatsError(f"{shown}: body too large ({int(length)} bytes, limit {MAX_BODY})")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise StatsError(f"{shown}: body too large (over {MAX_BODY} bytes)")
        elif isinstance(event, h11.EndOfMessage):
            return status, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):  # pragma: no cover - h11 raises first
            raise StatsError(f"{shown}: connection closed before the response")
        # h11.InformationalResponse (1xx): wait for the real one


def _connect_failure(exc: BaseException) -> str:
    """Why a connection could not be opened, in a few words (from the error
    that says why: :func:`soak.errors.root_cause`)."""
    root = root_cause(exc)
    if (
        isinstance(root, ConnectionRefusedError)
        or getattr(root, "errno", None) == errno.ECONNREFUSED
    ):
        return "connection refused"
    if isinstance(root, socket.gaierror):
        return f"cannot resolve host ({root.strerror or root})"
    return f"cannot connect ({_first_line(root)})"


def _first_line(exc: BaseException, limit: int = 160) -> str:
    """An exception as one short line: warnings go into one JSON line each,
    and a peer's garbage can be 16 KB long."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


# -- the field ---------------------------------------------------------------


def extract(doc: Any, path: str) -> int:
    """The whole number at dotted ``path`` in ``doc``.

    Each segment is a key of an object, or a (non-negative) index into a
    list: ``"nodes.0.connections"``. A float with an integral value is
    accepted (some servers write counts as 12.0); booleans, strings, other
    floats and null are not. Raises :class:`StatsError` naming the path and
    what was found instead.
    """
    node = doc
    seen: list[str] = []
    for seg in path.split("."):
        where = f'"{".".join(seen)}"' if seen else "the document"
        if isinstance(node, dict):
            if seg not in node:
                raise StatsError(f'field "{path}": no key "{seg}" in {where} ({_keys(node)})')
            node = node[seg]
        elif isinstance(node, list):
            if not seg.isdigit():
                raise StatsError(
                    f'field "{path}": "{seg}" is not an index into {where}, {_show(node)}'
                )
            if int(seg) >= len(node):
                raise StatsError(f'field "{path}": no index {seg} in {where}, {_show(node)}')
            node = node[int(seg)]
        else:
            raise StatsError(f'field "{path}": {where} is {_show(node)}, not an object or a list')
        seen.append(seg)
    if isinstance(node, int) and not isinstance(node, bool):
        return node
    if isinstance(node, float) and math.isfinite(node) and node.is_integer():
        return int(node)
    raise StatsError(f'field "{path}": expected a whole number, got {_show(node)}')


def _keys(obj: dict[Any, Any]) -> str:
    if not obj:
        return "it is empty"
    names = [str(k) for k in obj]
    more = ", ..." if len(names) > 8 else ""
    return "keys: " + ", ".join(names[:8]) + more


def _show(value: Any) -> str:
    """A short description of a JSON value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 40 else value[:40] + "...")
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}" if value else "an empty list"
    return repr(value)


# -- the drift ---------------------------------------------------------------


class Drift:
    """Pure bookkeeping of server - client gaps; see the module docstring for
    what each number means. ``now`` is the caller's clock (the runner passes
    seconds since the run started) and must not go backwards."""

    def __init__(self) -> None:
        self.polls = 0
        self.failed_polls = 0
        self.last_gap: int | None = None  # at the latest successful poll
        self.max_gap: int | None = None  # None until a successful poll
        self.max_gap_at: float | None = None  # None while max_gap is 0 or None
        # the open run: its direction (-1, 0 = none, +1), first and latest poll
        self._sign = 0
        self._run_start = 0.0
        self._run_last = 0.0
        self._run_polls = 0
        self.longest_gap_s = 0.0
        self.longest_gap_polls = 0
        self.longest_gap_at: float | None = None

    @property
    def current_gap_s(self) -> float:
        return self._run_last - self._run_start if self._sign else 0.0

    def observe(self, now: float, client_count: int, server_count: int | None) -> int | None:
        """Record one poll. ``server_count`` None: the poll failed (the client
        count is then ignored). Returns the gap, or None for a failed poll."""
        self.polls += 1
        if server_count is None:
            self.failed_polls += 1
            return None
        gap = server_count - client_count
        self.last_gap = gap
        if self.max_gap is None or abs(gap) > abs(self.max_gap):
            self.max_gap = gap
            self.max_gap_at = now if gap else None
        sign = (gap > 0) - (gap < 0)
        if sign != self._sign:
            self._sign = sign
            self._run_start = now
            self._run_polls = 0
        if sign:
            self._run_last = now
            self._run_polls += 1
            duration = self._run_last - self._run_start
            if (duration, self._run_polls) > (self.longest_gap_s, self.longest_gap_polls):
                self.longest_gap_s = duration
                self.longest_gap_polls = self._run_polls
                self.longest_gap_at = self._run_start
        return gap

    def summary(self) -> dict[str, Any]:
        """JSON-ready; times rounded to the millisecond."""
        return {
            "polls": self.polls,
            "failed_polls": self.failed_polls,
            "last_gap": self.last_gap,
            "max_gap": self.max_gap,
            "max_gap_at": _ms(self.max_gap_at),
            "current_gap_s": _ms(self.current_gap_s),
            "longest_gap_s": _ms(self.longest_gap_s),
            "longest_gap_polls": self.longest_gap_polls,
            "longest_gap_at": _ms(self.longest_gap_at),
        }


def _ms(t: float | None) -> float | None:
    return None if t is None else round(t, 3)


# -- the poller ----------------------------------------------------------------


class Poller:
    """Reads the server's count for the runner, once per interval.

    It applies ``config.timeout`` itself (rather than leaving it to the
    caller) because a timeout is a result here, with its own warning, not a
    cancellation to propagate. Cancellation from outside still propagates.
    """

    def __init__(self, config: StatsConfig, *, open_stream: OpenTcp | None = None) -> None:
        self.config = config
        self._open_stream = open_stream
        self._shown = without_userinfo(config.url)

    async def poll(self) -> tuple[int | None, str | None]:
        """``(count, None)``, or ``(None, warning)`` with a one-line warning
        naming the URL. Never raises for remote problems; returns within
        ``config.timeout``."""
        cfg = self.config
        with trio.move_on_after(cfg.timeout):
            try:
                doc = await fetch_json(cfg.url, open_stream=self._open_stream)
                return extract(doc, cfg.field), None
            except StatsError as exc:
                text = str(exc)
                if not text.startswith(self._shown):  # extract's messages name the path only
                    text = f"{self._shown}: {text}"
                return None, text
        return None, f"{self._shown}: timeout after {format_duration(cfg.timeout)}"
