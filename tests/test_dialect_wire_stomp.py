"""protocol = "stomp", pure: STOMP 1.2's frames and heart-beat header as
the specification writes them (section "Heart-beating"), CONNECT and what
the server's answer does to the connection, the refusals a user reads, and
the judgement of RabbitMQ's "STOMP died". No sockets: the handshake goes
over a scripted connection (tests/support/scripted.py)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from soak.classify import CLIENT, SERVER, TRANSPORT, CloseInfo, Evidence, Verdict
from soak.config.heartbeat import ServerHeartbeat
from soak.config.stomp import StompConfig
from soak.config.target import TargetConfig
from soak.errors import HandshakeError, ProtocolError
from soak.protocols.base import SERVER_BEAT
from soak.protocols.stomp import (
    BEAT,
    SUBPROTOCOLS,
    Stomp,
    StompState,
    heart_beat,
    negotiate,
    parse_frames,
    stomp_verdict,
    unescape,
)
from tests.support.scripted import URL, ScriptedIO

VERDICT = Verdict("server_1000_normal", "server")


def stomp(**cfg: Any) -> Stomp:
    sh = cfg.pop("server_heartbeat", None)
    outgoing = cfg.pop("outgoing", 2.0)
    target = TargetConfig(
        protocol="stomp", stomp=StompConfig(outgoing=outgoing, **cfg), server_heartbeat=sh
    )
    return Stomp("soak-000001", StompState(target))


# -- frames ------------------------------------------------------------------------------


def test_a_frame_is_its_command_headers_and_body() -> None:
    frames, beats = parse_frames("MESSAGE\ndestination:/queue/a\ncontent-type:text/plain\n\nhi\x00")
    (f,) = frames
    assert (f.command, f.body, beats) == ("MESSAGE", "hi", 0)
    assert f.headers == {"destination": "/queue/a", "content-type": "text/plain"}


def test_crlf_lines_and_beats_between_frames() -> None:
    text = "\r\n\nRECEIPT\r\nreceipt-id:7\r\n\r\n\x00\r\n\n\nERROR\nmessage:x\n\n\x00"
    frames, beats = parse_frames(text)
    assert [f.command for f in frames] == ["RECEIPT", "ERROR"]
    assert frames[0].headers == {"receipt-id": "7"}
    assert frames[0].body == ""
    assert beats == 5  # \r\n, \n before; \r\n, \n, \n between


def test_the_first_of_a_repeated_header_wins_and_escapes_are_undone() -> None:
    (f,), _ = parse_frames("MESSAGE\nfoo:World\nfoo:Hello\nk\\c1:a\\\\b\\rc\n\n\x00")
    assert f.headers == {"foo": "World", "k:1": "a\\b\rc"}


def test_a_frame_without_a_blank_line_has_no_body() -> None:
    (f,), _ = parse_frames("CONNECTED\nversion:1.2\n\x00")
    assert f.command == "CONNECTED"
    assert f.headers == {"version": "1.2"}
    assert f.body == ""
    (g,), _ = parse_frames("CONNECTED\x00")
    assert (g.command, g.headers, g.body) == ("CONNECTED", {}, "")


def test_empty_header_lines_are_skipped_and_a_body_keeps_its_newlines() -> None:
    (f,), _ = parse_frames("SEND\n\ndest:x\n\nline 1\n\nline 2\x00")
    # the first blank line ends the headers: "dest:x" is body
    assert f.headers == {}
    assert f.body == "dest:x\n\nline 1\n\nline 2"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("CONNECTED\nversion:1.2\n\n", "a STOMP frame without its terminating NUL"),
        ("\x00", "not a STOMP frame: ''"),
        ("123\n\n\x00", "not a STOMP frame: '123\\n\\n'"),
        ("HELLO WORLD\n\n\x00", "not a STOMP frame: 'HELLO WORLD\\n\\n'"),
        ("CONNECTED\nversion\n\n\x00", "a header without a colon: 'version'"),
        ("CONNECTED\nk:a\\tb\n\n\x00", "undefined escape \\t in a header"),
        ("CONNECTED\nk:a\\\n\n\x00", "undefined escape \\ in a header"),
        ("{" + "x" * 50 + "\x00", "not a STOMP frame: '{" + "x" * 39 + "...'"),
    ],
)
def test_what_is_no_frame_says_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=r"STOMP|header|escape") as info:
        parse_frames(text)
    assert str(info.value) == says


def test_unescape_leaves_plain_text_alone() -> None:
    assert unescape("plain:value") == "plain:value"
    assert unescape("a\\nb") == "a\nb"
    assert unescape("\\c\\c") == "::"


# -- the heart-beat header, STOMP 1.2 "Heart-beating" -----------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("0,0", (0, 0)), ("10000,10000", (10000, 10000)), (" 100 , 200 ", (100, 200)), (None, (0, 0))],
)
def test_the_heart_beat_header(value: str | None, parsed: tuple[int, int]) -> None:
    assert heart_beat(value) == parsed


@pytest.mark.parametrize("value", ["", "1000", "1,2,3", "-1,0", "1.5,2", "a,b", "1000,"])
def test_a_bad_heart_beat_header_says_what_was_expected(value: str) -> None:
    with pytest.raises(ValueError, match="heart-beat") as info:
        heart_beat(value)
    assert str(info.value) == (
        f"heart-beat {value!r}: expected two whole numbers of ms like 10000,10000"
    )


@pytest.mark.parametrize(
    ("cx", "cy", "sx", "sy", "out", "inbound"),
    [
        # the spec: the client sends every MAX(cx, sy), the server every MAX(sx, cy)
        (4000, 5000, 6000, 7000, 7000, 6000),
        (7000, 5000, 6000, 1000, 7000, 6000),
        (1000, 9000, 9000, 1000, 1000, 9000),
        # 0 on either side of a direction: no beats that way
        (0, 5000, 6000, 7000, 0, 6000),
        (4000, 0, 6000, 7000, 7000, 0),
        (4000, 5000, 0, 7000, 7000, 0),
        (4000, 5000, 6000, 0, 0, 6000),
        (0, 0, 0, 0, 0, 0),
    ],
)
def test_the_negotiation_of_the_specification(
    cx: int, cy: int, sx: int, sy: int, out: int, inbound: int
) -> None:
    assert negotiate(cx, cy, sx, sy) == (out, inbound)


# -- CONNECT and the answer ---------------------------------------------------------------


def test_connect_offers_the_heartbeat_interval_and_incoming_in_ms() -> None:
    s = stomp(outgoing=2.5, incoming=0.75, vhost="prod", accept_version="1.2")
    assert s.state.connect_text() == (
        "CONNECT\naccept-version:1.2\nhost:prod\nheart-beat:2500,750\n\n\x00"
    )
    assert s.subprotocols() == SUBPROTOCOLS == ("v12.stomp", "v11.stomp", "v10.stomp")
    assert s.state.summary()["heart_beat_offered"] == "2500,750"


def test_without_an_interval_connect_offers_30_seconds() -> None:
    s = stomp(outgoing=None)
    assert "heart-beat:30000,10000\n" in s.state.connect_text()


def test_a_login_without_a_passcode_sends_the_login_only() -> None:
    text = stomp(login="guest").state.connect_text()
    assert "login:guest\n" in text
    assert "passcode" not in text


async def test_connected_negotiates_and_sets_the_silence_rule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = stomp(outgoing=4.0, incoming=5.0, tolerance=3.0)
    io = ScriptedIO(
        "\n",  # a beat before CONNECTED: no frame yet, keep reading
        b"CONNECTED\nversion:1.1\nheart-beat:6000,7000\nserver:ActiveMQ/6\n\n\x00",
    )
    await s.handshake(io)
    assert io.sent == [s.state.connect_text()]
    assert (s.client_ms, s.server_ms) == (7000, 6000)
    assert s.client_pings is True
    assert s.silence_timeout == 18.0  # 3 x the server's 6 s
    assert s.server_version == "ActiveMQ/6"
    summary = s.state.summary()
    assert summary["connected"] == 1
    assert summary["negotiated"] == {"7000,6000": 1}
    assert summary["versions"] == {"1.1": 1}


async def test_connected_without_heart_beats_sends_none_and_judges_no_silence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = stomp()
    s.farewell = (None, "ERROR old")  # from the connection before
    await s.handshake(ScriptedIO("CONNECTED\n\n\x00"))
    assert (s.client_ms, s.server_ms) == (0, 0)
    assert s.client_pings is False
    assert s.silence_timeout is None
    assert s.server_version is None
    assert s.farewell is None
    assert s.state.summary()["versions"] == {"1.0": 1}  # no version header: STOMP 1.0
    assert s.state.summary()["negotiated"] == {"0,0": 1}


async def test_an_empty_server_header_shows_no_version(
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = stomp()
    await s.handshake(ScriptedIO("CONNECTED\nserver:\nheart-beat:0,0\n\n\x00"))
    assert s.server_version is None


async def test_no_connected_within_the_timeout_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = stomp(connect_timeout=1.5)
    start = trio.current_time()
    with pytest.raises(HandshakeError) as info:
        await s.handshake(ScriptedIO("\n", "\r\n"))
    assert trio.current_time() - start == pytest.approx(1.5)
    assert info.value.cause == "connect_timeout"
    assert not info.value.permanent
    assert str(info.value) == (
        f"{URL}: no CONNECTED within 1.5s of CONNECT (target.stomp.connect_timeout)"
    )


@pytest.mark.parametrize(
    ("answer", "cause", "says"),
    [
        ("MESSAGE\n\nhi\x00", "protocol", f"{URL}: expected CONNECTED, got MESSAGE"),
        (
            "CONNECTED\nheart-beat:fast\n\n\x00",
            "protocol",
            f"{URL}: CONNECTED's heart-beat 'fast': expected two whole numbers of ms like "
            "10000,10000",
        ),
        (
            '{"type":"welcome"}',
            "protocol",
            f"{URL}: a STOMP frame without its terminating NUL (is this a STOMP server?)",
        ),
        ("welcome\x00", "protocol", f"{URL}: expected CONNECTED, got welcome"),
        (
            "hello 1\x00",
            "protocol",
            f"{URL}: not a STOMP frame: 'hello 1' (is this a STOMP server?)",
        ),
    ],
)
async def test_an_answer_that_is_not_connected_is_a_protocol_failure(
    answer: str, cause: str, says: str, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(HandshakeError) as info:
        await stomp().handshake(ScriptedIO(answer))
    assert info.value.cause == cause
    assert str(info.value) == says
    assert not info.value.permanent


@pytest.mark.parametrize(
    ("headers", "body", "cause", "hint", "permanent"),
    [
        (
            "message:Bad CONNECT\n",
            "Access refused for user 'guest'\n",
            "auth",
            " (login from [target.stomp] login, passcode from passcode_env)",
            True,
        ),
        (
            "message:Login failed\n",
            "",
            "auth",
            " (login from [target.stomp] login, passcode from passcode_env)",
            True,
        ),
        (
            "message:bad passcode\n",
            "",
            "auth",
            " (login from [target.stomp] login, passcode from passcode_env)",
            True,
        ),
        (
            "",
            "invalid credentials",
            "auth",
            " (login from [target.stomp] login, passcode from passcode_env)",
            True,
        ),
        (
            "message:Bad CONNECT\n",
            "Virtual host '/x' access denied",
            "vhost",
            " (the host header from [target.stomp] vhost)",
            True,
        ),
        (
            "message:unknown vhost\n",
            "",
            "vhost",
            " (the host header from [target.stomp] vhost)",
            True,
        ),
        (
            "message:Supported protocol versions are 1.2\n",
            "",
            "protocol",
            " ([target.stomp] accept_version)",
            True,
        ),
        ("message:server busy\n", "", "rejected", "", False),
    ],
)
async def test_an_error_frame_is_a_refusal_named_by_what_it_says(
    headers: str,
    body: str,
    cause: str,
    hint: str,
    permanent: bool,
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = stomp()
    with pytest.raises(HandshakeError) as info:
        await s.handshake(ScriptedIO(f"ERROR\n{headers}\n{body}\x00"))
    message = headers.removeprefix("message:").strip()
    said = " ".join(p for p in (message, body.strip()) if p)
    assert info.value.cause == cause
    assert info.value.permanent is permanent
    assert str(info.value) == f"{URL}: the server refused CONNECT: ERROR {said!r}{hint}"
    assert s.state.summary()["refusals"] == {cause: 1}
    assert s.state.summary()["connected"] == 0


# -- live frames ---------------------------------------------------------------------------


def test_beats_go_out_as_one_eol_and_any_server_frame_is_proof_of_life() -> None:
    s = stomp()
    assert s.ping_frame(1, 0) == BEAT == (0x1, b"\n")
    assert s.expects_reply is False
    assert s.pong_text("\n") == SERVER_BEAT
    assert s.pong_text("\r\n") == SERVER_BEAT
    assert s.pong_text("MESSAGE\ndestination:/q\n\nx\x00") == SERVER_BEAT
    assert s.pong_binary(b"\n") == SERVER_BEAT
    assert s.farewell is None


def test_an_error_on_a_live_connection_is_the_servers_farewell() -> None:
    s = stomp()
    assert s.pong_text("ERROR\nmessage:queue deleted\n\ndetails\x00") == SERVER_BEAT
    assert s.farewell == (None, "ERROR queue deleted")
    assert s.pong_binary(b"ERROR\n\nonly a body\n\x00") == SERVER_BEAT
    assert s.farewell == (None, "ERROR only a body")
    long = "m" * 100
    s.pong_text(f"ERROR\nmessage:{long}\n\n\x00")
    assert s.state.summary()["errors"] == {"queue deleted": 1, "only a body": 1, "m" * 80: 1}


def test_a_malformed_live_frame_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError) as info:
        stomp().pong_text("MESSAGE\n\nno nul")
    assert str(info.value) == "malformed STOMP frame: a STOMP frame without its terminating NUL"
    assert info.value.close_code == 1002


# -- "STOMP died" ---------------------------------------------------------------------------


def ev(age: float, sent: float | None = 0.1) -> Evidence:
    return Evidence(
        age=age,
        last_pong_age=None,
        last_frame_age=0.2,
        last_sent_age=sent,
        consecutive_missed=0,
        pings_pending=0,
    )


def died(age: float, sent: float | None = 0.1, reason: str = "STOMP died") -> CloseInfo:
    return CloseInfo(SERVER, 1000, reason, evidence=ev(age, sent))


def test_stomp_died_sooner_than_one_interval_is_false() -> None:
    # the window is 10 s less 0.05 s and 2% of it: 9.75 s
    early = stomp_verdict(VERDICT, died(9.74), 10.0, None)
    assert early.key == "false_timeout"
    assert early.category == "heartbeat_timeout"
    assert early.why == (
        'close 1000 "STOMP died" after 9.740s, < the negotiated client heart-beat 10s: '
        "too soon to have missed soak's beats"
    )
    assert stomp_verdict(VERDICT, died(9.75), 10.0, None).key == "justified_timeout"


def test_stomp_died_later_is_justified_with_the_last_beats_age() -> None:
    v = stomp_verdict(VERDICT, died(25.0, sent=2.0), 2.0, None)
    assert (v.key, v.category) == ("justified_timeout", "heartbeat_timeout")
    assert v.why == (
        'close 1000 "STOMP died": no beat from soak reached the server within its check '
        "period (the negotiated 2s); soak's last beat went 2.000s ago"
    )
    late = stomp_verdict(VERDICT, died(25.0, sent=2.06), 2.0, None)
    assert late.why.endswith("went 2.060s ago (later than the interval: soak fell behind)")
    never = stomp_verdict(VERDICT, died(25.0, sent=None), 2.0, None)
    assert never.why.endswith("soak's last beat went never")


def test_stomp_died_is_recognised_in_any_case_but_only_from_the_server() -> None:
    assert stomp_verdict(VERDICT, died(25.0, reason="stomp DIED"), 2.0, None).key == (
        "justified_timeout"
    )
    lost = CloseInfo(TRANSPORT, None, "STOMP died", evidence=ev(25.0))
    assert stomp_verdict(VERDICT, lost, 2.0, None) is VERDICT
    ours = CloseInfo(CLIENT, 1000, "STOMP died", evidence=ev(25.0))
    assert stomp_verdict(VERDICT, ours, 2.0, (None, "ERROR x")) is VERDICT


def test_without_evidence_or_client_beats_the_verdict_stays() -> None:
    bare = CloseInfo(SERVER, 1000, "STOMP died")
    assert stomp_verdict(VERDICT, bare, 2.0, None) is VERDICT
    assert stomp_verdict(VERDICT, died(25.0), 0.0, None) is VERDICT
    assert stomp_verdict(VERDICT, died(25.0), -1.0, None) is VERDICT


def test_a_farewell_error_then_a_close_is_the_servers_stomp_error() -> None:
    after = CloseInfo(TRANSPORT, None, "")
    v = stomp_verdict(VERDICT, after, 2.0, (None, "ERROR queue deleted"))
    assert (v.key, v.category, v.why) == ("server_stomp_error", "server", "ERROR queue deleted")
    assert stomp_verdict(VERDICT, after, 2.0, None) is VERDICT


async def test_judge_uses_the_negotiated_client_interval_unless_the_profile_judges(
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = stomp(outgoing=2.0)
    await s.handshake(ScriptedIO("CONNECTED\nheart-beat:0,3000\n\n\x00"))
    assert s.client_ms == 3000
    assert s.judge(VERDICT, died(2.8)).key == "false_timeout"  # < 3 s
    assert s.judge(VERDICT, died(2.95)).key == "justified_timeout"
    own = ServerHeartbeat(interval=5.0, timeout=10.0, reason_pattern="gone")
    t = stomp(outgoing=2.0, server_heartbeat=own)
    await t.handshake(ScriptedIO("CONNECTED\nheart-beat:0,3000\n\n\x00"))
    assert t.judge(VERDICT, died(2.8)) is VERDICT  # the profile's own rule judges
    implied = ServerHeartbeat(interval=5.0, timeout=10.0, reason_pattern="STOMP died")
    u = stomp(outgoing=2.0, server_heartbeat=implied)
    await u.handshake(ScriptedIO("CONNECTED\nheart-beat:0,3000\n\n\x00"))
    assert u.judge(VERDICT, died(2.8)).key == "false_timeout"


async def test_each_refusal_is_counted_by_its_cause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    s = stomp()
    for _ in range(2):
        with pytest.raises(HandshakeError):
            await s.handshake(ScriptedIO("ERROR\nmessage:Access refused\n\n\x00"))
    with pytest.raises(HandshakeError):
        await s.handshake(ScriptedIO("ERROR\n\nbusy\x00"))
    assert s.state.summary()["refusals"] == {"auth": 2, "rejected": 1}


def test_a_binary_frame_with_bytes_that_are_no_utf8_is_still_proof_of_life() -> None:
    s = stomp()
    assert s.pong_binary(b"MESSAGE\n\n\xff\xfe\x00") == SERVER_BEAT
    assert s.pong_binary(b"ERROR\nmessage:caf\xe9\n\n\x00") == SERVER_BEAT
    assert s.farewell == (None, "ERROR caf\ufffd")
