"""What a refusal in a dialect's handshake says, pure: the cause it is
counted under, the line a user reads, and whether soak stops retrying.
NATS's -ERR, Pusher's pusher:error and close codes (4000-4099 never
reconnect, 4100-4199 back off, 4200-4299 reconnect at once), Centrifugo's
disconnect codes (3500-3999 and 4500-4999 terminal) and graphql-ws's
close codes, over a scripted connection."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from soak.errors import HandshakeError
from soak.protocols.centrifugo import Centrifugo
from soak.protocols.graphql_ws import named_refusal as graphql_named
from soak.protocols.nats import Nats
from soak.protocols.pusher import Pusher
from tests.support.scripted import URL, ScriptedIO, close

INFO = 'INFO {"server_id":"N1","version":"2.9.10","max_payload":1048576}\r\n'
NATS_HINT = " (credentials from [target.nats] user/password_env or token_env)"


@pytest.mark.parametrize(
    ("error", "cause", "hint", "permanent"),
    [
        ("Authorization Violation", "auth", NATS_HINT, True),
        ("User Authentication Expired", "auth", NATS_HINT, True),
        ("Authorization Timeout", "auth", NATS_HINT, False),
        ("Authentication Timeout", "auth", NATS_HINT, True),
        ("user authentication revoked", "auth", NATS_HINT, True),
        ("Maximum Connections Exceeded", "rejected", "", False),
        ("Unknown Protocol Operation", "rejected", "", False),
    ],
)
async def test_a_nats_err_in_the_handshake_is_a_refusal(
    error: str, cause: str, hint: str, permanent: bool, autojump_clock: trio.testing.MockClock
) -> None:
    n = Nats("soak-000001")
    with pytest.raises(HandshakeError) as info:
        await n.handshake(ScriptedIO(INFO, f"-ERR '{error}'\r\n"))
    assert info.value.cause == cause
    assert str(info.value) == f"{URL}: the server refused CONNECT: -ERR '{error}'{hint}"
    assert info.value.permanent is permanent
    assert n.state.summary()["refusals"] == {cause: 1}
    assert n.state.summary()["connected"] == 0


async def test_nats_refusals_are_counted_each(autojump_clock: trio.testing.MockClock) -> None:
    n = Nats("soak-000001")
    for error in ("Authorization Violation", "Authorization Violation", "busy"):
        with pytest.raises(HandshakeError):
            await n.handshake(ScriptedIO(INFO, f"-ERR '{error}'\r\n"))
    assert n.state.summary()["refusals"] == {"auth": 2, "rejected": 1}


def test_a_nats_text_frame_is_read_as_the_same_operations() -> None:
    n = Nats("soak-000001")
    assert n.pong_text("PONG\r\nPONG\r\n") == n.pong_binary(b"PONG\r\nPONG\r\n")
    assert n.replies == 2
    assert n.pong_text("-ERR 'Slow Consumer'\r\n") is None
    assert n.farewell == (None, "Slow Consumer")


# -- Pusher -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "cause", "action", "permanent"),
    [
        (
            4001,
            "App does not exist",
            "4001_app_does_not_exist",
            "do not reconnect (4000-4099)",
            True,
        ),
        (4050, "", "4050_no_reconnect", "do not reconnect (4000-4099)", True),
        (
            4100,
            "Over capacity",
            "4100_over_capacity",
            "reconnect after a backoff (4100-4199)",
            False,
        ),
        (4201, "", "4201_pong_not_received", "reconnect at once (4200-4299)", False),
    ],
)
async def test_a_pusher_close_during_the_handshake_says_what_the_client_should_do(
    code: int,
    reason: str,
    cause: str,
    action: str,
    permanent: bool,
    autojump_clock: trio.testing.MockClock,
) -> None:
    closed = close(code, reason)
    with pytest.raises(HandshakeError) as info:
        await Pusher("c").handshake(ScriptedIO(closed))
    assert info.value.cause == cause
    assert str(info.value) == f"{closed} (pusher: {action})"
    assert info.value.permanent is permanent


@pytest.mark.parametrize("raised", [close(1011, "boom"), close(4300), HandshakeError("eof", "x")])
async def test_another_end_of_a_pusher_handshake_is_left_as_it_is(
    raised: HandshakeError, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(HandshakeError) as info:
        await Pusher("c").handshake(ScriptedIO(raised))
    assert info.value is raised


@pytest.mark.parametrize(
    ("code", "cause", "said", "permanent"),
    [
        (
            4009,
            "4009_unauthorized",
            "pusher:error 4009: nope (pusher: do not reconnect (4000-4099))",
            True,
        ),
        (
            4100,
            "4100_over_capacity",
            "pusher:error 4100: nope (pusher: reconnect after a backoff (4100-4199))",
            False,
        ),
        (None, "pusher_error", "pusher:error None: nope", False),
        (True, "pusher_error", "pusher:error True: nope", False),
        ("4001", "pusher_error", "pusher:error 4001: nope", False),
        (1006, "pusher_error", "pusher:error 1006: nope", False),
    ],
)
async def test_a_pusher_error_event_is_a_refusal_named_by_its_code(
    code: Any, cause: str, said: str, permanent: bool, autojump_clock: trio.testing.MockClock
) -> None:
    import json

    error = json.dumps({"event": "pusher:error", "data": {"code": code, "message": "nope"}})
    with pytest.raises(HandshakeError) as info:
        await Pusher("c").handshake(ScriptedIO(error))
    assert info.value.cause == cause
    assert str(info.value) == f"{URL}: {said}"
    assert info.value.permanent is permanent


# -- Centrifugo --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "cause", "permanent"),
    [
        (3501, "3501_bad_request", True),  # a known terminal code
        (3600, "close_3600", True),  # terminal, though centrifuge names no such code
        (4501, "close_4501", True),
        (3001, "3001_shutdown", False),  # known, reconnects
        (3012, "3012_no_pong", False),
    ],
)
async def test_a_centrifugo_disconnect_during_connect_is_named_and_terminal_codes_final(
    code: int, cause: str, permanent: bool, autojump_clock: trio.testing.MockClock
) -> None:
    closed = close(code, "why")
    with pytest.raises(HandshakeError) as info:
        await Centrifugo("c").handshake(ScriptedIO(closed))
    assert info.value.cause == cause
    assert str(info.value) == str(closed)
    assert info.value.permanent is permanent


@pytest.mark.parametrize("raised", [close(4000), close(1000), HandshakeError("eof", "gone")])
async def test_another_centrifugo_end_is_left_as_it_is(
    raised: HandshakeError, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(HandshakeError) as info:
        await Centrifugo("c").handshake(ScriptedIO(raised))
    assert info.value is raised


# -- graphql-ws ----------------------------------------------------------------------------


def test_a_graphql_ws_refusal_keeps_the_servers_retry_hint() -> None:
    exc = HandshakeError(
        "close_4429", f"{URL}: closed with 4429 during the handshake", retry_after=2.5
    )
    named = graphql_named(exc)
    assert named.cause == "close_4429_too_many_initialisation_requests"
    assert named.retry_after == 2.5
    assert named.permanent
    assert str(named) == (
        f"{URL}: closed with 4429 during the handshake (graphql-ws: too many initialisation "
        "requests)"
    )
