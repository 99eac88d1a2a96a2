"""protocol = "socket.io", pure: what a CONNECT_ERROR's payload says in
the refusal a user reads, whatever shape the server gave it, and a
DISCONNECT that carries data. The packets, the handshake and the verdicts
are tests/test_socketio.py."""

from __future__ import annotations

import pytest

from soak.config.socketio import SocketIOConfig
from soak.config.target import TargetConfig
from soak.protocols.socketio import SocketIO, SocketIOState, error_message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("5", "5"),  # a bare number: shown as JSON
        ("[1,2]", "[1, 2]"),
        ("true", "true"),
        ("null", "(no message)"),
        ('{"message":5}', '{"message": 5}'),  # no text message: the object
        ('{"message":"no","data":null}', "no"),  # null data: nothing to add
        ('{"message":"no","data":0}', "no (0)"),
    ],
)
def test_a_connect_error_of_any_shape_says_what_it_can(data: str, message: str) -> None:
    assert error_message(data) == message


def test_a_disconnect_with_data_in_it_is_still_our_namespaces() -> None:
    cfg = SocketIOConfig(namespace="/chat")
    p = SocketIO("c1", SocketIOState(TargetConfig(protocol="socket.io", socketio=cfg)))
    assert p.pong_text('41/chat,{"reason":"a,b","more":"c,d"}') is None
    assert p.farewell == (None, "Socket.IO DISCONNECT")
    assert p.state.disconnects == 1
    assert p.state.messages == 0
