"""The hand-written upgrade (soak.client.upgrade): the plain success is
read by hand; every other response goes to wsproto with the same key and
fails with the cause and message it always had. Each bad response is run
twice, through the hand path and through wsproto alone, and must end the
same way."""

from __future__ import annotations

import base64
import hashlib
import random
import socket
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request, TextMessage

from soak.client import upgrade
from soak.client.handshake import open_connection
from soak.client.shared import Shared
from soak.client.transport import _Conn, _open_numeric, connect_cause, numeric_family
from soak.errors import HandshakeError
from soak.metrics import Metrics
from soak.protocols.base import HeartbeatProtocol
from soak.protocols.json_ping import JsonPing
from soak.wsframe import OP_TEXT
from tests.support.runs import make_profile, one_client

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3's example
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def ok_head(accept: bytes = ACCEPT, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n" + extra + b"\r\n"
    )


# -- pure parts ------------------------------------------------------------------------


def test_the_accept_token_is_rfc_6455s_example() -> None:
    assert upgrade.accept_token(KEY) == ACCEPT


def test_the_request_is_byte_for_byte_what_wsproto_writes() -> None:
    headers = [(b"Authorization", b"Bearer x y"), (b"X-Trace", b"1")]
    mine = upgrade.request("127.0.0.1:8080", "/ws?a=1", headers, ["mqtt", "v2"], KEY)
    ws = WSConnection(ConnectionType.CLIENT)
    theirs = ws.send(
        Request(
            host="127.0.0.1:8080",
            target="/ws?a=1",
            extra_headers=headers,
            subprotocols=["mqtt", "v2"],
        )
    )
    nonce = ws.handshake._nonce
    assert nonce is not None
    assert mine == theirs.replace(nonce, KEY)
    assert upgrade.request("h", "/", [], [], KEY) == (
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("host", "target", "headers"),
    [
        ("h", "/a b", []),  # a space in the target
        ("h", "/é", []),  # not ASCII
        ("h", "/", [(b"X Bad", b"1")]),  # not a token
        ("h", "/", [(b"X", b"a\r\nInjected: 1")]),
        ("h", "/", [(b"X", b" padded ")]),  # h11 would refuse it
        ("h", "/", [(b"Host", b"other")]),  # h11 checks these against its own
        ("h", "/", [(b"Connection", b"close")]),
        ("", "/", []),
    ],
)
def test_a_request_h11_would_refuse_or_rewrite_is_left_to_wsproto(
    host: str, target: str, headers: list[tuple[bytes, bytes]]
) -> None:
    assert upgrade.request(host, target, headers, [], KEY) is None


def test_the_end_of_the_head_is_found_as_h11_finds_it() -> None:
    head = ok_head()
    assert upgrade.head_end(head) == len(head)
    assert upgrade.head_end(head + b"\x81\x00") == len(head)
    assert upgrade.head_end(head[:-1]) == -1
    assert upgrade.head_end(b"HTTP/1.1 101 X\n\n") == len(b"HTTP/1.1 101 X\n\n")
    # found across reads: the search resumes a little before where it stopped
    assert upgrade.head_end(head, len(head) - 1) == len(head)
    assert upgrade.head_end(head, len(head) - 3) == len(head)


def test_the_plain_success_is_read_by_hand_with_its_trailing_frames() -> None:
    data = ok_head(extra=b"Server: gw/1.2\r\nSec-WebSocket-Protocol: mqtt\r\n") + b"\x81\x02hi"
    got = upgrade.accepted(data, upgrade.head_end(data), KEY, ["mqtt"])
    assert got == upgrade.Accepted("mqtt", "gw/1.2", b"\x81\x02hi")
    # header names in any case, Connection with several tokens, no reason phrase
    data = (
        b"HTTP/1.1 101\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, Upgrade\r\n"
        b"sec-websocket-accept:  " + ACCEPT + b"  \r\n\r\n"
    )
    assert upgrade.accepted(data, len(data), KEY, []) == upgrade.Accepted(None, None, b"")


@pytest.mark.parametrize(
    "head",
    [
        ok_head(accept=b"wrong"),
        ok_head().replace(b"Upgrade: websocket\r\n", b""),
        ok_head().replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        ok_head().replace(b"Connection: Upgrade\r\n", b""),
        ok_head().replace(b"Connection: Upgrade", b"Connection: close"),
        ok_head().replace(b"HTTP/1.1 101", b"HTTP/1.1 200"),
        ok_head().replace(b"HTTP/1.1 101", b"HTTP/1.0 101"),
        ok_head(extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n"),
        ok_head(extra=b"Sec-WebSocket-Protocol: other\r\n"),
        ok_head(extra=b"Content-Length: 5\r\n"),
        ok_head(extra=b"Upgrade: websocket\r\n"),  # twice: wsproto keeps the last
        ok_head(extra=b"X-Folded: a\r\n b\r\n"),  # obs-fold
        ok_head().replace(b"\r\n", b"\n"),  # bare LF
    ],
)
def test_anything_else_is_left_to_wsproto(head: bytes) -> None:
    assert upgrade.accepted(head, upgrade.head_end(head), KEY, []) is None


def test_replay_gives_wsproto_the_same_key() -> None:
    assert upgrade.CAN_REPLAY
    ws = upgrade.replay("h", "/", [], [], KEY)
    assert ws is not None
    ws.receive_data(ok_head())
    assert [type(e).__name__ for e in ws.events()] == ["AcceptConnection"]


# -- through open_connection, against scripted servers -------------------------------------

Respond = Callable[[trio.abc.Stream, bytes], Awaitable[None]]


def sends(*parts: bytes, gap: float = 0.0) -> Respond:
    """A server that answers the request with ``parts`` (``{accept}`` in a
    part: the right accept token), ``gap`` seconds apart, then stays open."""

    async def respond(stream: trio.abc.Stream, request: bytes) -> None:
        accept = accept_for(request)
        for part in parts:
            await stream.send_all(part.replace(b"{accept}", accept))
            await trio.sleep(gap)
        await trio.sleep_forever()

    return respond


def accept_for(request: bytes) -> bytes:
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    return base64.b64encode(hashlib.sha1(key + upgrade.ACCEPT_GUID).digest())


def dribbles(size: int, gap: float) -> Respond:
    """The right answer, ``size`` bytes at a time, ``gap`` seconds apart."""

    async def respond(stream: trio.abc.Stream, request: bytes) -> None:
        head = ok_head(accept_for(request))
        for i in range(0, len(head), size):
            await stream.send_all(head[i : i + size])
            await trio.sleep(gap)
        await trio.sleep_forever()

    return respond


async def handshake(
    respond: Respond, proto: HeartbeatProtocol | None = None, bound: float = 10.0
) -> _Conn | HandshakeError | str:
    """open_connection against ``respond``; the connection, its error, or
    "timeout" (under MockClock)."""
    result: list[_Conn | HandshakeError | str] = []
    async with trio.open_nursery() as nursery:

        async def serve(stream: trio.abc.Stream) -> None:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await stream.receive_some(65536)
            try:
                await respond(stream, request)
            except trio.BrokenResourceError:
                pass  # the client gave up and closed

        async def opener() -> trio.abc.Stream:
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(serve, server)
            return client

        sh = Shared(
            make_profile(one_client()),
            Metrics(),
            opener,
            lambda e: None,
            t0=0.0,
            wall0=0.0,
            rng=random.Random(1),
        )
        with trio.move_on_after(bound):
            try:
                result.append(await open_connection(sh, proto or JsonPing("c")))
            except HandshakeError as exc:
                result.append(exc)
        if not result:
            result.append("timeout")
        nursery.cancel_scope.cancel()
    return result[0]


async def both_ways(
    respond: Respond, monkeypatch: pytest.MonkeyPatch, bound: float = 10.0
) -> tuple[object, object]:
    """The outcome through the hand path and through wsproto alone."""
    lean = await handshake(respond, bound=bound)
    with monkeypatch.context() as m:
        m.setattr(upgrade, "CAN_REPLAY", False)
        old = await handshake(respond, bound=bound)
    return lean, old


def outcome(result: object) -> object:
    if isinstance(result, HandshakeError):
        return (result.cause, str(result), result.retry_after)
    return result if isinstance(result, str) else "connected"


BAD = {
    "wrong accept key": (
        sends(ok_head(accept=b"AAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
        "protocol",
        "Bad accept token",
    ),
    "missing Upgrade": (
        sends(ok_head(b"{accept}").replace(b"Upgrade: websocket\r\n", b"")),
        "protocol",
        "Missing header, 'Upgrade: websocket'",
    ),
    "missing Connection": (
        sends(ok_head(b"{accept}").replace(b"Connection: Upgrade\r\n", b"")),
        "protocol",
        "Missing header, 'Connection: Upgrade'",
    ),
    "HTTP 503 with Retry-After": (
        sends(b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n"),
        "http_503",
        "upgrade rejected with HTTP 503",
    ),
    "200 OK": (sends(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"), "http_200", "HTTP 200"),
    "header overflow": (
        sends(b"HTTP/1.1 101 Switching Protocols\r\n", *[b"X-Pad: " + b"p" * 90 + b"\r\n"] * 400),
        "protocol",
        "Bad HTTP message",
    ),
    "not HTTP": (sends(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), "protocol", "Bad HTTP message"),
    "extension not offered": (
        sends(ok_head(b"{accept}", b"Sec-WebSocket-Extensions: permessage-deflate\r\n")),
        "protocol",
        "unrecognized extension permessage-deflate",
    ),
    "subprotocol not offered": (
        sends(ok_head(b"{accept}", b"Sec-WebSocket-Protocol: mqtt\r\n")),
        "subprotocol",
        "unrecognized subprotocol mqtt",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
async def test_a_bad_response_fails_with_the_cause_and_message_it_always_had(
    name: str, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    respond, cause, says = BAD[name]
    lean, old = await both_ways(respond, monkeypatch)
    assert isinstance(lean, HandshakeError), lean
    assert lean.cause == cause
    assert says in str(lean)
    assert outcome(lean) == outcome(old)
    if name.startswith("HTTP 503"):
        assert lean.retry_after == 7.0


async def test_the_connection_closing_inside_the_head_is_eof(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    async def half(stream: trio.abc.Stream, request: bytes) -> None:
        await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgr")
        await stream.aclose()

    lean, old = await both_ways(half, monkeypatch)
    assert isinstance(lean, HandshakeError)
    assert lean.cause == "eof"
    assert outcome(lean) == outcome(old)


async def test_slowloris_one_byte_a_second_is_bounded_by_the_callers_timeout(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    # whole, one byte a second: it takes ~130 s; a 10 s bound stops both paths
    lean, old = await both_ways(dribbles(1, 1.0), monkeypatch, bound=10.0)
    assert lean == old == "timeout"
    # and a head in many small reads is still read by hand when it completes
    conn, old_conn = await both_ways(dribbles(7, 0.01), monkeypatch)
    assert isinstance(conn, _Conn)
    assert isinstance(old_conn, _Conn)


async def test_the_plain_success_skips_h11_and_keeps_frames_sent_with_it(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    def no_replay(*args: object) -> None:
        raise AssertionError("the plain success went through wsproto's handshake")

    monkeypatch.setattr(upgrade, "replay", no_replay)
    frame = bytes((0x80 | OP_TEXT, 5)) + b"hello"
    conn = await handshake(sends(ok_head(b"{accept}", b"Server: gw/9\r\n") + frame))
    assert isinstance(conn, _Conn)
    assert conn.subprotocol is None
    events = list(conn.ws.events())
    assert len(events) == 1
    assert isinstance(events[0], TextMessage)
    assert events[0].data == "hello"


# -- the TCP connection to a numeric address ------------------------------------------------


def test_a_numeric_address_is_dialled_without_a_name_lookup() -> None:
    assert numeric_family("127.0.0.1") == socket.AF_INET
    assert numeric_family("::1") == socket.AF_INET6
    assert numeric_family("localhost") is None
    assert numeric_family("gateway.example") is None


@pytest.mark.process
async def test_a_refused_numeric_connection_fails_as_trios_own_does() -> None:
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(OSError, match="all attempts to connect") as mine:
            await _open_numeric(socket.AF_INET, "127.0.0.1", port)
        with pytest.raises(OSError, match="all attempts to connect") as theirs:
            await trio.open_tcp_stream("127.0.0.1", port)
    assert (
        str(mine.value)
        == str(theirs.value)
        == f"all attempts to connect to 127.0.0.1:{port} failed"
    )
    assert connect_cause(mine.value) == connect_cause(theirs.value) == "refused"
