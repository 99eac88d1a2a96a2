"""Server/client reconciliation: the field path, the drift bookkeeping (pure),
and the stats poll over real sockets on 127.0.0.1 and in-memory streams."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from soak.config.target import StatsConfig
from soak.errors import RemoteError, SoakError
from soak.gateway import Gateway, GatewayConfig
from soak.reconcile import MAX_BODY, Drift, Poller, StatsError, extract, fetch_json

# -- extract -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "path", "expected"),
    [
        ({"connections": 7}, "connections", 7),
        ({"stats": {"ws": {"connections": 0}}}, "stats.ws.connections", 0),
        ({"nodes": [{"n": 1}, {"n": 2}]}, "nodes.1.n", 2),
        ([[5, 6], [7]], "1.0", 7),
        ({"connections": 12.0}, "connections", 12),
        ({"connections": -3}, "connections", -3),
        ({"0": 9}, "0", 9),  # in an object, a digit segment is a key
    ],
)
def test_extract_finds_whole_numbers(doc: Any, path: str, expected: int) -> None:
    value = extract(doc, path)
    assert value == expected
    assert type(value) is int


@pytest.mark.parametrize(
    ("doc", "path", "message"),
    [
        (
            {"clients": 1, "uptime": 2},
            "connections",
            'field "connections": no key "connections" in the document (keys: clients, uptime)',
        ),
        (
            {"stats": {"active": 1}},
            "stats.connections",
            'field "stats.connections": no key "connections" in "stats" (keys: active)',
        ),
        (
            {"a": {"b": {}}},
            "a.b.c",
            'field "a.b.c": no key "c" in "a.b" (it is empty)',
        ),
        (
            {str(i): i for i in range(10)},
            "x",
            'field "x": no key "x" in the document (keys: 0, 1, 2, 3, 4, 5, 6, 7, ...)',
        ),
        (
            {"nodes": [{"n": 1}, {"n": 2}]},
            "nodes.5.n",
            'field "nodes.5.n": no index 5 in "nodes", a list of 2',
        ),
        (
            {"nodes": []},
            "nodes.0",
            'field "nodes.0": no index 0 in "nodes", an empty list',
        ),
        (
            {"nodes": [1]},
            "nodes.first",
            'field "nodes.first": "first" is not an index into "nodes", a list of 1',
        ),
        (
            {"nodes": [1]},
            "nodes.-1",
            'field "nodes.-1": "-1" is not an index into "nodes", a list of 1',
        ),
        (
            [1, 2, 3],
            "connections",
            'field "connections": "connections" is not an index into the document, a list of 3',
        ),
        (
            {"a": 3},
            "a.b",
            'field "a.b": "a" is 3, not an object or a list',
        ),
        (
            "ok",
            "connections",
            'field "connections": the document is "ok", not an object or a list',
        ),
        (
            {"a": None},
            "a.b",
            'field "a.b": "a" is null, not an object or a list',
        ),
    ],
)
def test_extract_names_what_is_missing(doc: Any, path: str, message: str) -> None:
    with pytest.raises(StatsError) as info:
        extract(doc, path)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("12", '"12"'),
        (1.5, "1.5"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        ({"n": 1}, "an object"),
        ([1, 2], "a list of 2"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ("x" * 50, '"' + "x" * 40 + '..."'),
    ],
)
def test_extract_rejects_what_is_not_a_whole_number(value: Any, shown: str) -> None:
    with pytest.raises(StatsError) as info:
        extract({"stats": {"connections": value}}, "stats.connections")
    assert str(info.value) == f'field "stats.connections": expected a whole number, got {shown}'


def test_stats_error_is_a_remote_error() -> None:
    assert issubclass(StatsError, RemoteError)
    assert issubclass(StatsError, SoakError)


# -- Drift ---------------------------------------------------------------------


def test_drift_before_any_poll() -> None:
    assert Drift().summary() == {
        "polls": 0,
        "failed_polls": 0,
        "last_gap": None,
        "max_gap": None,
        "max_gap_at": None,
        "current_gap_s": 0.0,
        "longest_gap_s": 0.0,
        "longest_gap_polls": 0,
        "longest_gap_at": None,
    }


def test_drift_no_gap_ever() -> None:
    d = Drift()
    for t in (10.0, 20.0, 30.0):
        assert d.observe(t, 50, 50) == 0
    s = d.summary()
    assert (s["polls"], s["last_gap"], s["max_gap"], s["max_gap_at"]) == (3, 0, 0, None)
    assert (s["longest_gap_s"], s["longest_gap_polls"], s["longest_gap_at"]) == (0.0, 0, None)


def test_drift_gap_appears_grows_flips_and_closes() -> None:
    d = Drift()
    assert d.observe(0.0, 100, 100) == 0
    assert d.observe(10.0, 100, 103) == 3  # appears: the server counts 3 more
    assert d.current_gap_s == 0.0
    assert d.observe(20.0, 100, 105) == 5  # grows, same direction: the run goes on
    assert d.current_gap_s == 10.0
    assert (d.longest_gap_s, d.longest_gap_polls, d.longest_gap_at) == (10.0, 2, 10.0)
    assert d.observe(30.0, 100, 98) == -2  # flips: a new run starts here
    assert d.current_gap_s == 0.0
    assert d.observe(40.0, 101, 98) == -3
    assert d.observe(50.0, 100, 96) == -4
    assert d.current_gap_s == 20.0
    assert d.observe(60.0, 100, 100) == 0  # closes
    assert d.current_gap_s == 0.0
    assert d.summary() == {
        "polls": 7,
        "failed_polls": 0,
        "last_gap": 0,
        "max_gap": 5,
        "max_gap_at": 20.0,
        "current_gap_s": 0.0,
        "longest_gap_s": 20.0,
        "longest_gap_polls": 3,
        "longest_gap_at": 30.0,
    }


def test_drift_open_run_counts_as_longest() -> None:
    d = Drift()
    d.observe(0.0, 10, 9)
    d.observe(10.0, 10, 10)
    for t in (20.0, 30.0, 40.0, 50.0):
        d.observe(t, 10, 7)
    s = d.summary()
    assert (s["current_gap_s"], s["longest_gap_s"], s["longest_gap_polls"]) == (30.0, 30.0, 4)
    assert (s["longest_gap_at"], s["max_gap"], s["max_gap_at"]) == (20.0, -3, 20.0)


def test_drift_largest_gap_first_seen_wins_a_tie() -> None:
    d = Drift()
    d.observe(10.0, 5, 8)
    d.observe(20.0, 8, 5)
    assert (d.max_gap, d.max_gap_at) == (3, 10.0)


def test_drift_single_poll_gap_lasted_zero_seconds() -> None:
    d = Drift()
    d.observe(10.0, 5, 6)
    d.observe(20.0, 5, 5)
    s = d.summary()
    assert (s["longest_gap_s"], s["longest_gap_polls"], s["longest_gap_at"]) == (0.0, 1, 10.0)


def test_drift_failed_polls_neither_end_nor_extend_a_run() -> None:
    d = Drift()
    assert d.observe(0.0, 10, 12) == 2
    assert d.observe(10.0, 10, None) is None
    assert d.last_gap == 2  # the latest *successful* gap
    assert d.current_gap_s == 0.0  # a failed poll does not extend the run
    assert d.observe(20.0, 10, 13) == 3
    assert d.current_gap_s == 20.0  # nor end it
    assert d.observe(30.0, 99, None) is None  # the client count is ignored
    assert d.observe(40.0, 10, None) is None
    s = d.summary()
    assert (s["polls"], s["failed_polls"], s["last_gap"]) == (5, 3, 3)
    assert (s["current_gap_s"], s["longest_gap_s"], s["longest_gap_polls"]) == (20.0, 20.0, 2)


def test_drift_only_failed_polls() -> None:
    d = Drift()
    d.observe(10.0, 1, None)
    d.observe(20.0, 1, None)
    s = d.summary()
    assert (s["polls"], s["failed_polls"], s["max_gap"], s["last_gap"]) == (2, 2, None, None)


def test_drift_summary_is_json_and_rounded_to_the_millisecond() -> None:
    d = Drift()
    d.observe(0.1 + 0.2, 1, 2)  # 0.30000000000000004
    d.observe(1.0004, 1, 2)
    s = d.summary()
    assert (s["max_gap_at"], s["longest_gap_at"], s["longest_gap_s"]) == (0.3, 0.3, 0.7)
    assert json.loads(json.dumps(s)) == s


# -- fetch_json and Poller on 127.0.0.1 ----------------------------------------------------


def http_response(
    status: int = 200,
    body: bytes = b'{"connections": 7}',
    *,
    headers: tuple[str, ...] | None = None,
) -> bytes:
    reasons = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}
    head = [f"HTTP/1.1 {status} {reasons.get(status, 'X')}"]
    if headers is None:
        headers = ("Content-Type: application/json", f"Content-Length: {len(body)}")
    head += [*headers, "Connection: close", "", ""]
    return "\r\n".join(head).encode() + body


Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def read_head(stream: trio.abc.ReceiveStream) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def responder(reply: bytes, requests: list[bytes] | None = None) -> Handler:
    """A tiny HTTP server: read the request head, send ``reply``, close."""

    async def handle(stream: trio.SocketStream) -> None:
        head = await read_head(stream)
        if requests is not None:
            requests.append(head)
        try:
            await stream.send_all(reply)
        except trio.BrokenResourceError:
            pass  # the client gave up early (a body too large): fine

    return handle


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """Serve on 127.0.0.1 port 0; yields the base URL."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            yield f"http://127.0.0.1:{port}"
            nursery.cancel_scope.cancel()


def stats(url: str, field: str = "connections", timeout: float = 5.0) -> StatsConfig:
    return StatsConfig(url=url, field=field, timeout=timeout)


@pytest.mark.process
async def test_fetch_json_sends_a_plain_get_and_reads_the_document() -> None:
    requests: list[bytes] = []
    doc = {"stats": {"connections": 7}, "nodes": [1, 2]}
    async with serving(responder(http_response(body=json.dumps(doc).encode()), requests)) as base:
        url = f"{base}/api/stats?node=a"
        assert await fetch_json(url) == doc
        assert await Poller(stats(url, "stats.connections")).poll() == (7, None)
    head = requests[0].decode().lower()
    assert head.startswith("get /api/stats?node=a http/1.1\r\n")
    assert f"\r\nhost: {base.removeprefix('http://')}\r\n" in head
    assert "\r\nconnection: close\r\n" in head


@pytest.mark.process
async def test_fetch_json_root_path_and_eof_delimited_body() -> None:
    requests: list[bytes] = []
    reply = http_response(body=b'{"connections": 3}', headers=("Content-Type: application/json",))
    async with serving(responder(reply, requests)) as base:
        assert await fetch_json(base) == {"connections": 3}
    assert requests[0].startswith(b"GET / HTTP/1.1\r\n")


@pytest.mark.process
async def test_fetch_json_chunked_body() -> None:
    body = b'{"connections": 11}'
    chunks = b"5\r\n" + body[:5] + b"\r\n" + b"e\r\n" + body[5:] + b"\r\n0\r\n\r\n"
    reply = http_response(body=chunks, headers=("Transfer-Encoding: chunked",))
    async with serving(responder(reply)) as base:
        assert await fetch_json(base + "/s") == {"connections": 11}


@pytest.mark.process
async def test_non_200_is_an_error_and_a_warning() -> None:
    async with serving(responder(http_response(503, b"busy\n"))) as base:
        url = base + "/api/stats"
        with pytest.raises(StatsError) as info:
            await fetch_json(url)
        assert str(info.value) == f"{url}: HTTP 503"
        assert await Poller(stats(url)).poll() == (None, f"{url}: HTTP 503")


@pytest.mark.process
async def test_not_json_is_an_error_and_a_warning() -> None:
    async with serving(responder(http_response(body=b"<html>hi</html>"))) as base:
        url = base + "/api/stats"
        expected = f"{url}: response is not JSON (Expecting value: line 1 column 1 (char 0))"
        with pytest.raises(StatsError) as info:
            await fetch_json(url)
        assert str(info.value) == expected
        assert await Poller(stats(url)).poll() == (None, expected)


@pytest.mark.process
async def test_missing_field_is_a_warning_naming_url_and_path() -> None:
    async with serving(responder(http_response(body=b'{"connections": 7}'))) as base:
        url = base + "/api/stats"
        count, warning = await Poller(stats(url, "stats.clients")).poll()
    assert count is None
    assert warning == (
        f'{url}: field "stats.clients": no key "stats" in the document (keys: connections)'
    )


@pytest.mark.process
async def test_non_number_field_is_a_warning() -> None:
    async with serving(responder(http_response(body=b'{"connections": "many"}'))) as base:
        url = base + "/api/stats"
        assert await Poller(stats(url)).poll() == (
            None,
            f'{url}: field "connections": expected a whole number, got "many"',
        )


@pytest.mark.process
async def test_body_too_large_by_content_length() -> None:
    reply = http_response(body=b"{}", headers=(f"Content-Length: {MAX_BODY + 1}",))
    async with serving(responder(reply)) as base:
        with pytest.raises(StatsError) as info:
            await fetch_json(base)
    assert str(info.value) == f"{base}: body too large ({MAX_BODY + 1} bytes, limit {MAX_BODY})"


@pytest.mark.process
async def test_body_too_large_without_content_length() -> None:
    reply = http_response(body=b" " * (MAX_BODY + 10), headers=())
    async with serving(responder(reply)) as base:
        with pytest.raises(StatsError) as info:
            await fetch_json(base)
    assert str(info.value) == f"{base}: body too large (over {MAX_BODY} bytes)"


@pytest.mark.process
async def test_truncated_and_garbled_responses() -> None:
    short = http_response(body=b'{"conn', headers=("Content-Length: 100",))
    async with serving(responder(short)) as base:
        with pytest.raises(StatsError) as info:
            await fetch_json(base)
    assert str(info.value).startswith(f"{base}: bad HTTP response (")
    async with serving(responder(b"hello\r\n\r\n")) as base:
        count, warning = await Poller(stats(base)).poll()
    assert count is None
    assert warning is not None
    assert warning.startswith(f"{base}: bad HTTP response (")
    assert "\n" not in warning


def closed_port() -> int:
    """A port that was just free: nothing listens there now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.process
async def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{closed_port()}/api/stats"
    with trio.fail_after(10):
        with pytest.raises(StatsError) as info:
            await fetch_json(url)
        assert str(info.value) == f"{url}: connection refused"
        assert await Poller(stats(url)).poll() == (None, f"{url}: connection refused")


@pytest.mark.process
async def test_credentials_in_the_url_never_reach_a_message() -> None:
    port = closed_port()
    with trio.fail_after(10):
        _, warning = await Poller(stats(f"http://admin:s3cret@127.0.0.1:{port}/s")).poll()
    assert warning == f"http://127.0.0.1:{port}/s: connection refused"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://127.0.0.1/s", "https://127.0.0.1/s: expected an http:// URL with a host"),
        ("http:///s", "http:///s: expected an http:// URL with a host"),
        ("http://127.0.0.1:99999/s", "http://127.0.0.1:99999/s: not a valid URL ("),
    ],
)
async def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(StatsError) as info:
        await fetch_json(url)
    assert str(info.value).startswith(message)


@pytest.mark.process
async def test_a_server_that_never_answers_times_out_on_real_sockets() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await trio.sleep_forever()

    async with serving(silent) as base:
        url = base + "/api/stats"
        start = trio.current_time()
        assert await Poller(stats(url, timeout=0.2)).poll() == (None, f"{url}: timeout after 200ms")
        assert trio.current_time() - start >= 0.2


# -- in-memory streams under the mock clock ------------------------------------------


def memory_opener(
    serve: Callable[[trio.abc.Stream], Awaitable[None]] | None, nursery: trio.Nursery
) -> Callable[[str, int], Awaitable[trio.abc.Stream]]:
    """An ``open_stream`` hook: each connection is an in-memory pair whose
    server side ``serve`` handles (None: nobody ever reads it)."""
    seen: list[tuple[str, int]] = []

    async def open_stream(host: str, port: int) -> trio.abc.Stream:
        seen.append((host, port))
        client, server = trio.testing.memory_stream_pair()
        if serve is not None:
            nursery.start_soon(serve, server)
        return client

    open_stream.seen = seen  # type: ignore[attr-defined]
    return open_stream


async def test_a_silent_server_costs_exactly_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        opener = memory_opener(None, nursery)
        poller = Poller(stats("http://stats.invalid/api/stats", timeout=2.0), open_stream=opener)
        start = trio.current_time()
        result = await poller.poll()
        assert trio.current_time() == start + 2.0
    assert result == (None, "http://stats.invalid/api/stats: timeout after 2s")
    assert opener.seen == [("stats.invalid", 80)]  # type: ignore[attr-defined]


async def test_cancellation_from_outside_is_not_swallowed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        poller = Poller(stats("http://s/x", timeout=5.0), open_stream=memory_opener(None, nursery))
        with trio.move_on_after(1.0) as outer:
            await poller.poll()
        assert outer.cancelled_caught
        assert trio.current_time() == 1.0


async def test_gateway_over_memory_streams_under_the_mock_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway = Gateway(GatewayConfig())
    async with trio.open_nursery() as nursery:
        opener = memory_opener(gateway.handle_stream, nursery)
        poller = Poller(stats("http://gw:8080/api/stats"), open_stream=opener)
        assert await poller.poll() == (0, None)
        assert trio.current_time() == 0.0
        missing = Poller(stats("http://gw:8080/nope"), open_stream=opener)
        assert await missing.poll() == (None, "http://gw:8080/nope: HTTP 404")
    assert gateway.http_requests == 2


# -- the reference gateway on 127.0.0.1 ---------------------------------------------


@pytest.mark.process
async def test_reference_gateway_stats_poll_to_zero() -> None:
    gateway = Gateway(GatewayConfig(host="127.0.0.1", port=0))
    drift = Drift()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(gateway.serve)
            url = f"http://127.0.0.1:{port}/api/stats"
            doc = await fetch_json(url)
            assert doc["connections"] == 0
            count, warning = await Poller(stats(url)).poll()
            nursery.cancel_scope.cancel()
    assert (count, warning) == (0, None)
    assert drift.observe(10.0, 0, count) == 0
    assert drift.summary()["max_gap"] == 0


@pytest.mark.process
async def test_a_long_garbage_status_line_makes_a_short_warning() -> None:
    async with serving(responder(b"x" * 10_000 + b"\r\n\r\n")) as base:
        _, warning = await Poller(stats(base)).poll()
    assert warning is not None
    assert warning.startswith(f"{base}: bad HTTP response (")
    assert len(warning) < len(base) + 200
