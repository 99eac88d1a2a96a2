"""protocol = "openclaw", pure: the frames of docs/openclaw.md as plain
text, the handshake over a scripted connection (no sockets), what a
refusal says and whether it is final, and the ticks' figures in
summary.json. The run-level behaviour (a fake gateway under MockClock) is
tests/test_openclaw.py."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import pytest
import trio
import trio.testing

from soak import __version__
from soak.config.openclaw import OpenClawConfig
from soak.config.target import Secret, TargetConfig
from soak.errors import HandshakeError, ProtocolError
from soak.protocols.openclaw import (
    PERMANENT_CODES,
    OpenClaw,
    OpenClawState,
    frame,
    refusal,
)
from tests.support.scripted import URL, ScriptedIO

CHALLENGE = '{"type":"event","event":"connect.challenge","payload":{"nonce":"n-1","ts":1}}'


def claw(token: str | None = "tok", **cfg: Any) -> OpenClaw:
    target = TargetConfig(
        protocol="openclaw",
        token=None if token is None else Secret(token),
        openclaw=OpenClawConfig(**cfg) if cfg else None,
    )
    return OpenClaw("soak-000001", OpenClawState(target))


def hello(request_id: str, **payload: Any) -> str:
    body = {"type": "hello-ok", "protocol": 4, **payload}
    return json.dumps({"type": "res", "id": request_id, "ok": True, "payload": body})


class Gateway(ScriptedIO):
    """A scripted gateway that answers the connect request by its id:
    ``answer(request_id)`` gives the frames after the request."""

    def __init__(self, *before: str, answer: Any) -> None:
        super().__init__(*before)
        self.answer = answer

    async def send_text(self, text: str) -> None:
        await super().send_text(text)
        request = json.loads(text)
        self.incoming.extend(self.answer(request["id"]))


# -- the connect request ---------------------------------------------------------------


def test_the_connect_request_says_protocol_4_who_the_client_is_and_the_token() -> None:
    p = claw("s3cret", client_id="cli", mode="probe", role="node", scopes=("a.b", "c"))
    req = json.loads(p.connect_request("id-1"))
    assert req == {
        "type": "req",
        "id": "id-1",
        "method": "connect",
        "params": {
            "minProtocol": 4,
            "maxProtocol": 4,
            "client": {
                "id": "cli",
                "version": __version__,
                "platform": sys.platform,
                "mode": "probe",
            },
            "role": "node",
            "scopes": ["a.b", "c"],
            "caps": [],
            "auth": {"token": "s3cret"},
            "locale": "en-US",
            "userAgent": f"soak/{__version__}",
        },
    }
    assert p.connect_request("x") == p.connect_request("x")  # compact, one line
    assert " " not in p.connect_request("x").replace(sys.platform, "")


def test_without_a_token_the_request_has_no_auth() -> None:
    params = json.loads(claw(None).connect_request("i"))["params"]
    assert "auth" not in params
    assert params["client"]["id"] == "gateway-client"
    assert params["role"] == "operator"
    assert params["scopes"] == ["operator.read"]
    assert params["client"]["mode"] == "backend"


# -- frames ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"event","event":"tick","payload":{"ts":1}}',
        '{"type":"res","id":"a","ok":false}',
        '{"type":"req","id":"a","method":"x"}',
    ],
)
def test_a_frame_of_the_protocol_is_read_as_it_is(text: str) -> None:
    assert frame(text, 1024) == json.loads(text)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json", "malformed frame (not JSON): 'not json'"),
        ("[1,2]", "malformed frame (not a JSON object): '[1,2]'"),
        ('{"type":"hello"}', "malformed frame (type 'hello' is not event, res or req)"),
        ('{"event":"tick"}', "malformed frame (type None is not event, res or req)"),
        ('{"type":"event"}', "malformed frame (an event without an event name)"),
        ('{"type":"event","event":7}', "malformed frame (an event without an event name)"),
        ('{"type":"res","ok":true}', "malformed frame (a res without an id)"),
        ('{"type":"req","id":3}', "malformed frame (a req without an id)"),
        ('{"type":"res","id":"a"}', "malformed frame (a res without ok)"),
        ('{"type":"res","id":"a","ok":1}', "malformed frame (a res without ok)"),
    ],
)
def test_what_is_no_frame_says_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="frame") as info:
        frame(text, 1024)
    assert str(info.value) == says


def test_the_size_cap_counts_characters_and_the_cap_itself_is_allowed() -> None:
    text = '{"type":"event","event":"tick","pad":"' + "x" * 60 + '"}'
    assert frame(text, len(text))["event"] == "tick"
    with pytest.raises(ValueError, match="frame") as info:
        frame(text, len(text) - 1)
    assert str(info.value) == (
        f"frame of {len(text)} characters exceeds max_frame ({len(text) - 1})"
    )


def test_a_long_bad_frame_is_shown_cut_at_40_characters() -> None:
    with pytest.raises(ValueError, match="frame") as info:
        frame("y" * 41, 1024)
    assert str(info.value) == "malformed frame (not JSON): '" + "y" * 40 + "...'"
    with pytest.raises(ValueError, match="frame") as exact:
        frame("y" * 40, 1024)
    assert str(exact.value) == "malformed frame (not JSON): '" + "y" * 40 + "'"


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "cause", "text", "permanent"),
    [
        (
            {"code": "INVALID_REQUEST", "details": {"code": "AUTH_TOKEN_MISMATCH"}},
            "auth",
            "authentication failed (AUTH_TOKEN_MISMATCH)",
            True,
        ),
        (
            {
                "code": "INVALID_REQUEST",
                "message": "unauthorized: token mismatch",
                "details": {"code": "AUTH_TOKEN_MISSING"},
            },
            "auth",
            "authentication failed (AUTH_TOKEN_MISSING): unauthorized: token mismatch",
            True,
        ),
        ({"code": "AUTH_RATE_LIMITED"}, "auth", "authentication failed (AUTH_RATE_LIMITED)", False),
        ({"code": "PAIRING_REQUIRED"}, "auth", "authentication failed (PAIRING_REQUIRED)", True),
        (
            {"code": "DEVICE_IDENTITY_REQUIRED"},
            "auth",
            "authentication failed (DEVICE_IDENTITY_REQUIRED)",
            True,
        ),
        (
            {"details": {"code": "PROTOCOL_MISMATCH"}},
            "protocol",
            "protocol version not accepted (PROTOCOL_MISMATCH) (soak speaks OpenClaw protocol 4)",
            True,
        ),
        (
            {"code": "CLIENT_VERSION_MISMATCH", "message": "too old"},
            "protocol",
            "protocol version not accepted (CLIENT_VERSION_MISMATCH): too old "
            "(soak speaks OpenClaw protocol 4)",
            True,
        ),
        ({"code": "UNAVAILABLE"}, "unavailable", "gateway unavailable (UNAVAILABLE)", False),
        ({"code": "INVALID_REQUEST"}, "rejected", "connect rejected (INVALID_REQUEST)", False),
        ({}, "rejected", "connect rejected (UNKNOWN)", False),
        ({"code": ""}, "rejected", "connect rejected (UNKNOWN)", False),
        # an empty or non-string details.code: the generic code is the reason
        (
            {"code": "UNAVAILABLE", "details": {"code": ""}},
            "unavailable",
            "gateway unavailable (UNAVAILABLE)",
            False,
        ),
        (
            {"code": "UNAVAILABLE", "details": {"code": 3}},
            "unavailable",
            "gateway unavailable (UNAVAILABLE)",
            False,
        ),
        (
            {"code": "UNAVAILABLE", "details": "AUTH_TOKEN_MISMATCH"},
            "unavailable",
            "gateway unavailable (UNAVAILABLE)",
            False,
        ),
        # the server says it may be retried: not final, whatever the code
        (
            {"code": "AUTH_TOKEN_MISMATCH", "retryable": True},
            "auth",
            "authentication failed (AUTH_TOKEN_MISMATCH)",
            False,
        ),
        (
            {"code": "AUTH_TOKEN_MISMATCH", "retryable": "yes"},
            "auth",
            "authentication failed (AUTH_TOKEN_MISMATCH)",
            True,
        ),
    ],
)
def test_a_refusal_is_named_by_its_precise_code(
    error: dict[str, Any], cause: str, text: str, permanent: bool
) -> None:
    exc = refusal(error, URL)
    assert exc.cause == cause
    assert str(exc) == f"{URL}: {text}"
    assert exc.permanent is permanent
    assert exc.retry_after is None


@pytest.mark.parametrize("code", sorted(PERMANENT_CODES))
def test_every_non_recoverable_code_is_final(code: str) -> None:
    assert refusal({"code": code}, URL).permanent
    assert refusal({"code": code}, URL).cause in ("auth", "protocol")


@pytest.mark.parametrize(
    ("ms", "after"),
    [
        (1500, 1.5),
        (250.5, 0.2505),
        (0, 0.0),
        (-20, 0.0),  # never a negative wait
        (True, None),
        ("1500", None),
        (math.inf, None),
        (math.nan, None),
        (None, None),
    ],
)
def test_retry_after_ms_becomes_the_backoffs_floor(ms: Any, after: float | None) -> None:
    exc = refusal({"code": "UNAVAILABLE", "retryAfterMs": ms}, URL)
    assert exc.retry_after == after


# -- the handshake ---------------------------------------------------------------------


async def test_the_handshake_waits_for_the_challenge_and_the_answer_to_its_own_id() -> None:
    p = claw()
    p.silence_timeout = 99.0
    io = Gateway(
        '{"type":"event","event":"presence","payload":{}}',  # not the challenge
        '{"type":"res","id":"early","ok":true}',
        CHALLENGE,
        answer=lambda rid: [
            '{"type":"res","id":"someone-else","ok":false}',  # not ours: skipped
            '{"type":"event","event":"tick"}',
            hello(rid, server={"version": "2026.9.6"}, policy={"tickIntervalMs": 15000}),
        ],
    )
    await p.handshake(io)
    assert len(io.sent) == 1
    assert json.loads(str(io.sent[0]))["method"] == "connect"
    assert p.server_version == "2026.9.6"
    assert p.tick_interval == 15.0
    assert p.silence_timeout == 30.0  # 2 x tickIntervalMs, as the official client


@pytest.mark.parametrize(
    "policy",
    [
        None,
        {},
        {"tickIntervalMs": 0},
        {"tickIntervalMs": -5},
        {"tickIntervalMs": True},
        {"tickIntervalMs": "15000"},
        "15000",
    ],
)
async def test_without_a_tick_interval_there_is_no_silence_rule(policy: Any) -> None:
    p = claw()
    p.tick_interval, p.silence_timeout = 1.0, 2.0  # from an earlier connection
    extra = {} if policy is None else {"policy": policy}
    await p.handshake(Gateway(CHALLENGE, answer=lambda rid: [hello(rid, **extra)]))
    assert p.tick_interval is None
    assert p.silence_timeout is None
    assert p.server_version is None


async def test_a_fractional_tick_interval_is_kept() -> None:
    p = claw()
    policy = {"tickIntervalMs": 2500.5}
    await p.handshake(Gateway(CHALLENGE, answer=lambda rid: [hello(rid, policy=policy)]))
    assert p.tick_interval == 2.5005
    assert p.silence_timeout == 5.001


@pytest.mark.parametrize("server", [{"version": 7}, "2026.9.6", {}])
async def test_a_server_version_that_is_no_string_is_not_shown(server: Any) -> None:
    p = claw()
    await p.handshake(Gateway(CHALLENGE, answer=lambda rid: [hello(rid, server=server)]))
    assert p.server_version is None


async def test_a_refused_connect_is_the_refusal_of_its_error() -> None:
    err = {
        "code": "INVALID_REQUEST",
        "details": {"code": "AUTH_TOKEN_MISMATCH"},
        "retryAfterMs": 2000,
    }

    def answer(rid: str) -> list[str]:
        return [json.dumps({"type": "res", "id": rid, "ok": False, "error": err})]

    with pytest.raises(HandshakeError) as info:
        await claw().handshake(Gateway(CHALLENGE, answer=answer))
    assert info.value.cause == "auth"
    assert info.value.permanent
    assert info.value.retry_after == 2.0
    assert str(info.value) == f"{URL}: authentication failed (AUTH_TOKEN_MISMATCH)"


@pytest.mark.parametrize("error", [None, "denied", [1]])
async def test_a_refusal_without_an_error_object_is_a_plain_rejection(error: Any) -> None:
    def answer(rid: str) -> list[str]:
        body: dict[str, Any] = {"type": "res", "id": rid, "ok": False}
        if error is not None:
            body["error"] = error
        return [json.dumps(body)]

    with pytest.raises(HandshakeError) as info:
        await claw().handshake(Gateway(CHALLENGE, answer=answer))
    assert info.value.cause == "rejected"
    assert not info.value.permanent
    assert str(info.value) == f"{URL}: connect rejected (UNKNOWN)"


@pytest.mark.parametrize(
    "payload",
    [None, "hello-ok", {"type": "hello"}, {"protocol": 4}],
)
async def test_an_answer_without_hello_ok_is_a_protocol_failure(payload: Any) -> None:
    def answer(rid: str) -> list[str]:
        body: dict[str, Any] = {"type": "res", "id": rid, "ok": True}
        if payload is not None:
            body["payload"] = payload
        return [json.dumps(body)]

    with pytest.raises(HandshakeError) as info:
        await claw().handshake(Gateway(CHALLENGE, answer=answer))
    assert info.value.cause == "protocol"
    assert not info.value.permanent
    assert str(info.value) == f"{URL}: connect answered without hello-ok"


@pytest.mark.parametrize(
    ("version", "shown"), [(3, "3"), (5, "5"), (True, "True"), ("4", "'4'"), (None, "None")]
)
async def test_another_protocol_version_is_final(version: Any, shown: str) -> None:
    def answer(rid: str) -> list[str]:
        body = {"type": "hello-ok", "protocol": version}
        return [json.dumps({"type": "res", "id": rid, "ok": True, "payload": body})]

    with pytest.raises(HandshakeError) as info:
        await claw().handshake(Gateway(CHALLENGE, answer=answer))
    assert info.value.cause == "protocol"
    assert info.value.permanent
    assert str(info.value) == (
        f"{URL}: the gateway speaks OpenClaw protocol {shown}; soak speaks protocol 4"
    )


async def test_protocol_4_written_as_a_float_is_protocol_4() -> None:
    p = claw()

    def answer(rid: str) -> list[str]:
        body = {"type": "hello-ok", "protocol": 4.0}
        return [json.dumps({"type": "res", "id": rid, "ok": True, "payload": body})]

    await p.handshake(Gateway(CHALLENGE, answer=answer))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("garbage", f"{URL}: malformed frame (not JSON): 'garbage' in the handshake"),
        (
            '{"type":"ping"}',
            f"{URL}: malformed frame (type 'ping' is not event, res or req) in the handshake",
        ),
        # another dialect's greeting says what the server speaks
        (
            '0{"sid":"x","pingInterval":25000,"pingTimeout":20000}',
            f'{URL}: the server sent an Engine.IO open packet (\'0{{"sid":"x","pingInterval":'
            '25000,"pingTimeout":20000}\'): it speaks Socket.IO (Engine.IO), not protocol = '
            '"openclaw" (try protocol = "socket.io")',
        ),
    ],
)
async def test_a_bad_first_frame_is_a_protocol_failure_that_says_what_came(
    text: str, says: str
) -> None:
    with pytest.raises(HandshakeError) as info:
        await claw().handshake(ScriptedIO(text))
    assert info.value.cause == "protocol"
    assert str(info.value) == says


async def test_a_bad_frame_after_the_request_is_a_protocol_failure_too() -> None:
    with pytest.raises(HandshakeError) as info:
        await claw().handshake(Gateway(CHALLENGE, answer=lambda rid: ["[]"]))
    assert str(info.value) == (f"{URL}: malformed frame (not a JSON object): '[]' in the handshake")


async def test_the_handshakes_frames_are_held_to_max_frame() -> None:
    p = claw(max_frame=1024)
    big = '{"type":"event","event":"connect.challenge","pad":"' + "x" * 1024 + '"}'
    with pytest.raises(HandshakeError) as info:
        await p.handshake(ScriptedIO(big))
    assert "exceeds max_frame (1024) in the handshake" in str(info.value)


async def test_a_new_handshake_forgets_the_last_connections_ticks_and_notice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    p = claw()
    await p.handshake(Gateway(CHALLENGE, answer=lambda rid: [hello(rid)]))
    p.pong_text('{"type":"event","event":"tick"}')
    p.pong_text('{"type":"event","event":"shutdown","payload":{"restartExpectedMs":900}}')
    assert p.ticks_seen == 1
    await p.handshake(Gateway(CHALLENGE, answer=lambda rid: [hello(rid)]))
    assert p.ticks_seen == 0
    assert p.last_tick_at is None
    assert p.first_tick_at is None
    assert p.restart_expected is None
    assert p.shutdown_notice is None
    assert p.close_hint() is None


# -- live frames -------------------------------------------------------------------------


async def test_ticks_count_and_their_gaps_and_lateness_are_recorded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = OpenClawState(TargetConfig(protocol="openclaw"))
    p = OpenClaw("c1", state)
    p.tick_interval = 2.0
    tick = '{"type":"event","event":"tick","payload":{"ts":1}}'
    assert p.pong_text(tick) is None  # at 0: the schedule's start
    await trio.sleep(2.5)
    assert p.pong_text(tick) is None  # 0.5 s late
    await trio.sleep(1.0)
    assert p.pong_text(tick) is None  # at 3.5: 0.5 s early
    other = OpenClaw("c2", state)
    other.pong_text(tick)
    assert state.ticks == 4
    assert p.ticks_seen == 3
    summary = state.summary()
    assert summary["ticks"] == 4
    assert summary["clients_ticked"] == 2
    assert summary["protocol_errors"] == 0
    # gaps 2.5 s and 1.0 s; lateness +0.5 s and 0 (an early tick records 0)
    assert state.tick_gap.get_total_count() == 2
    assert state.tick_gap.get_max_value() == pytest.approx(2_500_000, rel=0.001)
    assert state.tick_gap.get_min_value() == pytest.approx(1_000_000, rel=0.001)
    assert state.tick_lateness.get_total_count() == 2
    assert state.tick_lateness.get_max_value() == pytest.approx(500_000, rel=0.001)
    assert state.tick_lateness.get_min_value() == 0
    assert summary["tick_gap_ms"]["max"] == pytest.approx(2500, rel=0.001)


def test_a_tick_gap_is_rounded_to_the_microsecond() -> None:
    state = OpenClawState(TargetConfig(protocol="openclaw"))
    p = OpenClaw("c1", state)
    p.on_tick(10.0)
    p.on_tick(10.0000016)  # 1.6 us: 2 us
    p.on_tick(10.0000020)  # 0.4 us: 0 us
    assert state.tick_gap.get_max_value() == 2
    assert state.tick_gap.get_min_value() == 0


def test_without_a_tick_interval_only_the_gap_is_recorded() -> None:
    state = OpenClawState(TargetConfig(protocol="openclaw"))
    p = OpenClaw("c1", state)
    p.on_tick(1.0)
    p.on_tick(4.0)
    assert state.tick_gap.get_total_count() == 1
    assert state.tick_lateness.get_total_count() == 0
    assert p.last_tick_at == 4.0
    assert p.first_tick_at == 1.0


@pytest.mark.parametrize(
    ("payload", "hint", "notice"),
    [
        (
            {"restartExpectedMs": 1500, "reason": "update"},
            1.5,
            {"restartExpectedMs": 1500, "reason": "update"},
        ),
        ({"restartExpectedMs": -1}, 0.0, {"restartExpectedMs": -1}),
        ({"restartExpectedMs": True}, None, {"restartExpectedMs": True}),
        ({"restartExpectedMs": "1500"}, None, {"restartExpectedMs": "1500"}),
        ({}, None, {}),
        ("soon", None, {}),
        (None, None, {}),
    ],
)
def test_a_shutdown_event_is_the_restart_hint_and_the_notice(
    payload: Any, hint: float | None, notice: dict[str, Any]
) -> None:
    p = claw()
    body: dict[str, Any] = {"type": "event", "event": "shutdown"}
    if payload is not None:
        body["payload"] = payload
    assert p.pong_text(json.dumps(body)) is None
    assert p.shutdown_notice == notice
    assert p.close_hint() == hint
    assert p.close_hint() is None  # once: the next connection starts without it


def test_a_non_finite_restart_hint_is_ignored() -> None:
    p = claw()
    p.pong_text('{"type":"event","event":"shutdown","payload":{"restartExpectedMs":Infinity}}')
    assert p.close_hint() is None
    assert p.shutdown_notice == {"restartExpectedMs": math.inf}


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"res","id":"a","ok":true}',
        '{"type":"req","id":"a","method":"node.invoke"}',
        '{"type":"event","event":"presence","payload":{}}',
    ],
)
def test_other_frames_are_not_about_the_heartbeat(text: str) -> None:
    p = claw()
    assert p.pong_text(text) is None
    assert p.state.ticks == 0
    assert p.shutdown_notice is None


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{oops", 1002),
        ('{"type":"event"}', 1002),
        ('{"type":"event","event":"x","p":"' + "z" * 1100 + '"}', 1009),
    ],
)
def test_a_bad_live_frame_is_a_protocol_error_counted_once(text: str, code: int) -> None:
    p = claw(max_frame=1024)
    with pytest.raises(ProtocolError) as info:
        p.pong_text(text)
    assert info.value.close_code == code
    assert p.state.protocol_errors == 1
    assert p.state.summary()["protocol_errors"] == 1


def test_a_frame_of_exactly_max_frame_is_no_error() -> None:
    p = claw(max_frame=1024)
    text = '{"type":"event","event":"x","p":"' + "z" * (1024 - 35) + '"}'
    assert len(text) == 1024
    assert p.pong_text(text) is None
    assert p.state.protocol_errors == 0


def test_the_heartbeat_is_the_rfc6455_ping_of_ws_ping() -> None:
    p = claw()
    assert p.ping_frame(258, 0) == (0x9, b"\x00\x00\x00\x00\x00\x00\x01\x02")
    assert p.pong_control(b"\x00\x00\x00\x00\x00\x00\x01\x02") == 258
