"""The STOMP dialect without sockets: the wire examples
(captured from RabbitMQ 3.10.8), the heart-beat negotiation, refusals, its
verdicts, [target.stomp], and runs under MockClock against an in-memory
broker that follows STOMP 1.2: CONNECT -> CONNECTED with heart-beat, EOL
beats both ways, 1000 "STOMP died" for a silent client."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from soak.classify import SERVER, CloseInfo, Evidence, Verdict
from soak.errors import HandshakeError, ProfileError
from soak.protocols.base import SERVER_BEAT
from soak.protocols.stomp import (
    Stomp,
    StompFrame,
    heart_beat,
    negotiate,
    parse_frames,
    stomp_verdict,
)
from soak.proxy.frames import kinds_of
from tests.support.runs import events, make_profile, one_client, run_in_memory, serving

CONNECTED = (
    "CONNECTED\nserver:RabbitMQ/3.10.8\nsession:session-x\nheart-beat:2000,2000\n"
    "version:1.2\n\n\x00\n"
)
VERDICT = Verdict("server_1000_normal", "server")


def _stomp(table: str = "", environ: dict[str, str] | None = None) -> Stomp:
    profile = make_profile(one_client(), protocol="stomp", target_extra=table, environ=environ)
    return Stomp("soak-000001", Stomp.shared_state(profile.target))


def test_connected_is_parsed_with_the_eol_after_its_nul() -> None:
    frames, beats = parse_frames(CONNECTED)
    (frame,) = frames
    assert frame.command == "CONNECTED"
    assert frame.headers["heart-beat"] == "2000,2000"
    assert frame.headers["server"] == "RabbitMQ/3.10.8"
    assert beats == 1
    assert parse_frames("\n") == ([], 1)
    assert parse_frames("\r\n\n")[1] == 2
    frames, _ = parse_frames("MESSAGE\nk:a\\cb\\nc\n\nbody\x00")
    assert (frames[0].headers["k"], frames[0].body) == ("a:b\nc", "body")
    with pytest.raises(ValueError, match="without its terminating NUL"):
        parse_frames("CONNECTED\n\n")


def test_the_heart_beat_negotiation() -> None:
    assert heart_beat("2000,2000") == (2000, 2000)
    assert heart_beat(None) == (0, 0)
    with pytest.raises(ValueError, match="expected two whole numbers"):
        heart_beat("2000")
    assert negotiate(1000, 5000, 2000, 3000) == (3000, 5000)
    assert negotiate(1000, 0, 2000, 3000) == (3000, 0)
    assert negotiate(1000, 1000, 0, 0) == (0, 0)


def test_connect_says_the_heart_beat_and_the_credentials() -> None:
    s = _stomp(
        '[target.stomp]\nlogin = "guest"\npasscode_env = "PC"\nincoming = "5s"\n', {"PC": "pw"}
    )
    assert s.state.connect_text() == (
        "CONNECT\naccept-version:1.2,1.1,1.0\nhost:/\nheart-beat:1000,5000\n"
        "login:guest\npasscode:pw\n\n\x00"
    )


def test_connected_sets_the_beats_and_the_silence_rule() -> None:
    s = _stomp('[target.stomp]\nincoming = "1s"\n')
    s._answer(parse_frames(CONNECTED)[0][0], "ws://x")
    assert (s.client_ms, s.server_ms) == (2000, 2000)
    assert s.client_pings is True
    assert s.expects_reply is False
    assert s.silence_timeout == 4.0
    assert s.server_version == "RabbitMQ/3.10.8"
    assert s.ping_frame(1, 0) == (0x1, b"\n")
    assert s.pong_text("\n") == SERVER_BEAT


def test_an_error_frame_is_a_refusal_bad_credentials_for_good() -> None:
    s = _stomp()
    bad = StompFrame("ERROR", {"message": "Bad CONNECT"}, "Access refused for user 'guest'\n")
    with pytest.raises(HandshakeError) as info:
        s._answer(bad, "ws://x")
    assert info.value.cause == "auth"
    assert info.value.permanent
    other = StompFrame("ERROR", {"message": "busy"}, "")
    with pytest.raises(HandshakeError) as info:
        s._answer(other, "ws://x")
    assert (info.value.cause, info.value.permanent) == ("rejected", False)


def _info(age: float, sent: float | None = 0.1) -> CloseInfo:
    ev = Evidence(
        age=age,
        last_pong_age=None,
        last_frame_age=0.2,
        last_sent_age=sent,
        consecutive_missed=0,
        pings_pending=0,
    )
    return CloseInfo(SERVER, 1000, "STOMP died", evidence=ev)


def test_stomp_died_verdicts() -> None:
    assert stomp_verdict(VERDICT, _info(5.0), 1.0, None).key == "justified_timeout"
    early = stomp_verdict(VERDICT, _info(0.5), 1.0, None)
    assert early.key == "false_timeout"
    assert "< the negotiated client heart-beat 1s" in early.why
    assert stomp_verdict(VERDICT, _info(5.0), 0.0, None) is VERDICT
    other = CloseInfo(SERVER, 1000, "", evidence=None)
    v = stomp_verdict(VERDICT, other, 1.0, (None, "ERROR boom"))
    assert (v.key, v.why) == ("server_stomp_error", "ERROR boom")


def test_the_proxy_knows_stomp_beats() -> None:
    assert kinds_of("stomp")(0x1, True, b"\n") == "ping"
    assert kinds_of("stomp")(0x1, True, b"SEND\n\n\x00") is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('passcode_env = "PC"', "target.stomp.passcode_env: expected a login with it"),
        ('login = "g"\npasscode_env = "PC"', "environment variable PC is not set"),
        ('vhost = "a:b"', "target.stomp.vhost: expected a virtual host name"),
        ('accept_version = "2.0"', "target.stomp.accept_version: expected versions"),
        ('accept_version = "1.0"', "STOMP 1.0 has no heart-beat"),
        ("tolerance = 0.5", "target.stomp.tolerance"),
        ('incoming = "soon"', "target.stomp.incoming"),
    ],
)
def test_bad_tables_are_refused_naming_the_field(table: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        _stomp("[target.stomp]\n" + table + "\n")


def test_the_passcode_never_reaches_the_results() -> None:
    p = make_profile(
        one_client(),
        protocol="stomp",
        target_extra='[target.stomp]\nlogin = "g"\npasscode_env = "PC"\n',
        environ={"PC": "s3cret"},
    )
    assert "s3cret" not in repr(p.target)
    assert "s3cret" not in repr(p.redacted())


# -- runs under MockClock --------------------------------------------------------------


@dataclass
class FakeBroker:
    sx: int = 1000
    sy: int = 1000
    deaf_after: float = float("inf")  # soak's beats after this never arrive
    connects: list[str] = field(default_factory=list)

    async def serve(self, stream: trio.abc.Stream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            async with trio.open_nursery() as nursery:
                await self._serve(stream, ws, nursery)
                nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _serve(self, stream: trio.abc.Stream, ws: WSConnection, nursery: Any) -> None:
        heard = [trio.current_time()]
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(bytes(data))
            for event in ws.events():
                now = trio.current_time()
                if isinstance(event, Request):
                    assert event.subprotocols == ["v12.stomp", "v11.stomp", "v10.stomp"]
                    await stream.send_all(ws.send(AcceptConnection(subprotocol="v12.stomp")))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        await stream.send_all(ws.send(event.response()))
                    return
                elif isinstance(event, TextMessage):
                    if event.data == "\n":
                        if now < self.deaf_after:
                            heard[0] = now
                        continue
                    self.connects.append(event.data)
                    hb = f"heart-beat:{self.sx},{self.sy}"
                    await stream.send_all(
                        ws.send(TextMessage(f"CONNECTED\nversion:1.2\n{hb}\n\n\x00\n"))
                    )
                    heard[0] = now
                    nursery.start_soon(self._beats, stream, ws, heard)

    async def _beats(self, stream: trio.abc.Stream, ws: WSConnection, heard: list[float]) -> None:
        period = self.sx / 1000
        while True:
            await trio.sleep(period)
            if trio.current_time() - heard[0] > 2 * period:
                await stream.send_all(ws.send(CloseConnection(1000, "STOMP died")))
                return
            await stream.send_all(ws.send(TextMessage("\n")))


BODY = """
[run]
label = "stomp"
report_interval = "10s"
[clients]
[[clients.stages]]
kind = "ramp"
to = {clients}
duration = "0s"
[[clients.stages]]
kind = "hold"
duration = "{hold}"
[heartbeat]
interval = "1s"
phase = "spread"
[reconnect]
jitter = "none"
initial_delay = "1s"
max_attempts = 3
"""


async def run_stomp(
    broker: FakeBroker, tmp_path: Path, clients: int = 3, hold: str = "10s"
) -> dict[str, Any]:
    table = '[target.stomp]\nincoming = "1s"\n'
    profile = make_profile(
        BODY.format(clients=clients, hold=hold),
        results=tmp_path,
        protocol="stomp",
        target_extra=table,
    )
    outcome, _ = await run_in_memory(profile, tmp_path, serving(broker.serve))
    summary: dict[str, Any] = outcome.summary
    return summary


async def test_clients_are_held_with_beats_both_ways(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    broker = FakeBroker()
    s = await run_stomp(broker, tmp_path)
    tot = s["totals"]
    assert tot["closes"] == {"client_shutdown": 3}
    assert tot["pings"] >= 3 * 9
    assert tot["missed"] == 0
    assert tot["server_pings"] >= 3 * 9
    assert s["protocol"]["negotiated"] == {"1000,1000": 3}
    assert all("heart-beat:1000,1000" in c for c in broker.connects)


async def test_a_deaf_broker_says_stomp_died_justified(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    await run_stomp(FakeBroker(deaf_after=3.0), tmp_path, clients=1, hold="6s")
    closes = [e for e in events(tmp_path) if e.get("event") == "close"]
    first = closes[0]
    assert (first["reason"], first["code"], first["text"]) == (
        "justified_timeout",
        1000,
        "STOMP died",
    )


async def test_a_silent_broker_is_a_zombie_after_tolerance_intervals(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    # the server says it beats every second but never does: 2 x 1 s of silence
    broker = FakeBroker(sx=1000)
    broker._beats = _never  # type: ignore[method-assign, assignment]
    await run_stomp(broker, tmp_path, clients=1, hold="5s")
    first = next(e for e in events(tmp_path) if e.get("event") == "close")
    assert first["reason"] == "client_zombie"
    assert 1.9 <= first["evidence"]["last_frame_age_s"] <= 2.1


async def _never(*args: Any) -> None:
    await trio.sleep_forever()
