"""Request-head parsing for the gateway's shared WebSocket/HTTP port."""

from __future__ import annotations

from soak.gateway.http import RequestHead, head_complete, parse_request_head, response


def test_upgrade_request_is_recognised() -> None:
    head = parse_request_head(
        b"GET /ws?token=x HTTP/1.1\r\nHost: a\r\nUPGRADE:  WebSocket \r\n\r\ntrailing"
    )
    assert head == RequestHead(method=b"GET", path=b"/ws", upgrade=b"websocket")
    assert head.wants_websocket


def test_plain_request_has_no_upgrade() -> None:
    head = parse_request_head(b"GET /api/stats HTTP/1.0\r\n\r\n")
    assert head == RequestHead(method=b"GET", path=b"/api/stats", upgrade=b"")
    assert not head.wants_websocket


def test_malformed_heads_are_none() -> None:
    assert parse_request_head(b"GET /ws HTTP/1.1\r\n") is None  # not complete
    assert parse_request_head(b"hello\r\n\r\n") is None
    assert parse_request_head(b"GET /ws SPDY\r\n\r\n") is None
    assert parse_request_head(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n") is None


def test_head_end_is_found_across_chunks() -> None:
    first = b"GET / HTTP/1.1\r\nHost: a\r\n\r"
    assert not head_complete(first)
    assert head_complete(first + b"\n", scan_from=len(first))


def test_response_closes_the_connection() -> None:
    assert response(404, b"nope") == (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 4\r\nConnection: close\r\n\r\nnope"
    )
