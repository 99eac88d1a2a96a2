"""The NATS dialect without sockets: its parsing of the wire examples
(captured from nats-server 2.9.10 on loopback), its verdicts, its
[target.nats] table, wsproto reading NATS's close frame with code 1006, and
runs under MockClock against an in-memory server that follows the
protocol: INFO, CONNECT + PING -> PONG, PING/PONG both ways, the server's
PINGs every ping_interval when it heard nothing, and after ping_max
unanswered ``-ERR 'Stale Connection'`` and a close frame with 1006."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request

from soak.classify import SERVER, CloseInfo, Evidence, Verdict
from soak.errors import ProfileError
from soak.protocols.base import OLDEST, SERVER_PING
from soak.protocols.nats import Nats, error_text, info, nats_verdict, operations
from soak.proxy.frames import kinds_of
from soak.wsframe import reserved_close, tolerate_reserved_close
from tests.support.runs import events, make_profile, one_client, run_in_memory, serving

INFO = (
    b'INFO {"server_id":"NAEL","server_name":"NAEL","version":"2.9.10","proto":1,'
    b'"go":"go1.19.8","host":"127.0.0.1","port":14998,"headers":true,'
    b'"max_payload":1048576,"client_id":4,"client_ip":"127.0.0.1"} \r\n'
)
STALE = b"-ERR 'Stale Connection'\r\n"
# the close frame nats-server 2.9.10 sent after it (captured): 1006 + reason
STALE_CLOSE = b"\x88\x12\x03\xeeStale Connection"
VERDICT = Verdict("server_1006", "server")


def test_operations_split_a_message_and_skip_payloads() -> None:
    assert operations(b"PING\r\n") == ["PING"]
    assert operations(b"PONG\r\nPING\r\n") == ["PONG", "PING"]
    assert operations(b"MSG a 1 5\r\nPING\r\n\r\nPONG\r\n") == ["MSG a 1 5", "PONG"]
    assert operations(STALE) == ["-ERR 'Stale Connection'"]
    assert error_text("-ERR 'Stale Connection'") == "Stale Connection"


def test_info_is_read_and_a_wrong_greeting_is_said() -> None:
    assert info(operations(INFO)[0])["version"] == "2.9.10"
    with pytest.raises(ValueError, match="expected INFO, got 'CONNECTED'"):
        info("CONNECTED")
    with pytest.raises(ValueError, match="INFO is not JSON"):
        info("INFO {nope")


def _nats(table: str = "", environ: dict[str, str] | None = None) -> Nats:
    profile = make_profile(
        one_client(),
        protocol="nats",
        target_extra=table,
        environ=environ,
    )
    return Nats("soak-000007", Nats.shared_state(profile.target))


def test_the_recognisers_of_pong_ping_and_the_farewell() -> None:
    n = _nats()
    assert n.ping_frame(1, 0) == (0x2, b"PING\r\n")
    assert n.pong_binary(b"PONG\r\n") == OLDEST
    assert n.replies == 1
    assert n.pong_binary(b"PONG\r\nPONG\r\n") == OLDEST
    assert n.replies == 2
    assert n.pong_binary(b"PING\r\n") == SERVER_PING
    assert n.answer() == (0x2, b"PONG\r\n")
    assert n.pong_binary(b"+OK\r\n") is None
    assert n.pong_binary(b'INFO {"ldm":true}\r\n') is None
    assert n.farewell is None
    assert n.pong_binary(STALE) is None
    assert n.farewell == (1006, "Stale Connection")
    assert n.state.errors == {"Stale Connection": 1}


def test_connect_carries_the_name_and_the_credentials() -> None:
    n = _nats('[target.nats]\nuser = "u"\npassword_env = "PW"\n', {"PW": "s3cret"})
    text = n.state.connect_text(n.client_id)
    assert text.startswith('CONNECT {"verbose":false,"pedantic":false,"protocol":1,')
    assert '"name":"soak-000007"' in text
    assert '"user":"u","pass":"s3cret"' in text
    assert text.endswith("}\r\nPING\r\n")
    t = _nats('[target.nats]\ntoken_env = "TK"\nname = ""\n', {"TK": "tok"})
    text = t.state.connect_text(t.client_id)
    assert '"auth_token":"tok"' in text
    assert '"name"' not in text


def _info(age: float, last_pong: float | None, missed: int = 0) -> CloseInfo:
    ev = Evidence(
        age=age,
        last_pong_age=last_pong,
        last_frame_age=0.5,
        last_sent_age=0.1,
        consecutive_missed=missed,
        pings_pending=0,
    )
    return CloseInfo(SERVER, 1006, "Stale Connection", evidence=ev)


def test_stale_is_justified_after_ping_max_intervals_without_a_pong() -> None:
    v = nats_verdict(VERDICT, _info(10.0, 2.08, 3), (1006, "Stale Connection"), (1.0, 2))
    assert v.key == "justified_timeout"
    assert v.why == (
        "-ERR 'Stale Connection': no PONG for 2.080s >= ping_max x ping_interval = 2s; "
        "3 heartbeats missed"
    )


def test_stale_soon_after_a_pong_is_a_false_timeout() -> None:
    v = nats_verdict(VERDICT, _info(10.0, 0.5), (1006, "Stale Connection"), (1.0, 2))
    assert v.key == "false_timeout"
    assert "the last PONG came 0.500s ago < ping_max x ping_interval = 2s" in v.why


def test_wsprotos_1002_after_the_farewell_is_still_judged_stale() -> None:
    # without soak.wsframe's tolerance wsproto reports its own 1002
    info = CloseInfo(SERVER, 1002, "remote CLOSE with local-only reason", evidence=None)
    v = nats_verdict(VERDICT, info, (1006, "Stale Connection"), (1.0, 2))
    assert v.key == "justified_timeout"


def test_other_errors_are_the_servers_close_by_their_text() -> None:
    info = CloseInfo(SERVER, 1000, "", evidence=None)
    v = nats_verdict(VERDICT, info, (None, "Slow Consumer"), (1.0, 2))
    assert (v.key, v.category, v.why) == (
        "server_nats_slow_consumer",
        "server",
        "-ERR 'Slow Consumer'",
    )


def test_a_profiles_own_server_heartbeat_is_left_to_judge() -> None:
    v = nats_verdict(VERDICT, _info(10.0, 0.5), (1006, "Stale Connection"), None)
    assert v is VERDICT


def test_wsproto_reads_the_1006_close_frame_as_the_server_sent_it() -> None:
    assert reserved_close(STALE_CLOSE[2:]) == (1006, "Stale Connection")
    assert reserved_close(struct.pack("!H", 1000)) is None
    plain = _client_after_upgrade()
    plain.receive_data(STALE_CLOSE)
    (event,) = list(plain.events())
    assert isinstance(event, CloseConnection)
    assert (event.code, event.reason) == (1002, "remote CLOSE with local-only reason")
    tolerant = _client_after_upgrade()
    assert tolerant.connection is not None
    tolerate_reserved_close(tolerant.connection)
    tolerant.receive_data(STALE_CLOSE)
    (event,) = list(tolerant.events())
    assert isinstance(event, CloseConnection)
    assert (event.code, event.reason) == (1006, "Stale Connection")
    # the answer goes out as 1000: 1006 is never put on the wire by soak
    frame = tolerant.send(event.response())
    key = frame[2:6]
    assert bytes(b ^ key[i] for i, b in enumerate(frame[6:8])) == struct.pack("!H", 1000)


def _client_after_upgrade() -> WSConnection:
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="x", target="/")))
    (request,) = list(server.events())
    assert isinstance(request, Request)
    client.receive_data(server.send(AcceptConnection()))
    assert isinstance(next(iter(client.events())), AcceptConnection)
    return client


def test_the_proxy_knows_nats_heartbeats() -> None:
    kind = kinds_of("nats")
    assert kind(0x2, True, b"PING\r\n") == "ping"
    assert kind(0x2, True, b"PONG\r\n") == "pong"
    assert kind(0x2, True, b"PUB a 1\r\nx\r\n") is None


@pytest.mark.parametrize(
    ("table", "environ", "message"),
    [
        ('password_env = "PW"', {}, "target.nats.password_env: expected a user with it"),
        ('user = "u"', {}, "target.nats.user: expected password_env with it"),
        ('user = "u"\npassword_env = "PW"', {}, "environment variable PW is not set"),
        ('token_env = "TK"', {}, "environment variable TK is not set"),
        ('ping_interval = "0s"', {}, "target.nats.ping_interval"),
        ("ping_max = 0", {}, "target.nats.ping_max"),
        ('name = "fixed"', {}, "expected a template with {client_id} in it"),
        ("pedantic = true", {}, "pedantic"),
    ],
)
def test_bad_tables_are_refused_naming_the_field(
    table: str, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ProfileError, match=message.replace("{", r"\{").replace("}", r"\}")):
        _nats("[target.nats]\n" + table + "\n", environ)


def test_the_table_on_another_protocol_names_both() -> None:
    with pytest.raises(ProfileError, match=r'target\.nats: is only used with protocol = "nats"'):
        make_profile(one_client(), protocol="json", target_extra="[target.nats]\nping_max = 2\n")


def test_the_password_never_reaches_the_results() -> None:
    p = make_profile(
        one_client(),
        protocol="nats",
        target_extra='[target.nats]\nuser = "u"\npassword_env = "PW"\n',
        environ={"PW": "s3cret"},
    )
    assert "s3cret" not in repr(p.target)
    assert "s3cret" not in repr(p.redacted())


# -- runs under MockClock --------------------------------------------------------------


@dataclass
class FakeNats:
    """nats-server's behaviour, for every connection of a run."""

    ping_interval: float = 1.0
    ping_max: int = 2
    refuse: str | None = None  # -ERR text for CONNECT
    deaf_after: float = float("inf")  # the client's PING/PONG after this never arrive
    stale: list[float] = field(default_factory=list)

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
        out = [0]
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(bytes(data))
            for event in ws.events():
                now = trio.current_time()
                if isinstance(event, Request):
                    await stream.send_all(ws.send(AcceptConnection()))
                    await stream.send_all(ws.send(BytesMessage(INFO)))
                elif isinstance(event, CloseConnection):
                    return
                elif isinstance(event, BytesMessage):
                    ops = operations(bytes(event.data))
                    if now >= self.deaf_after and ops in (["PING"], ["PONG"]):
                        continue  # lost on the way, as drop_heartbeat does
                    heard[0] = now
                    for op in ops:
                        if op.startswith("CONNECT "):
                            if self.refuse is not None:
                                err = f"-ERR '{self.refuse}'\r\n".encode()
                                await stream.send_all(ws.send(BytesMessage(err)))
                                await stream.aclose()
                                return
                            nursery.start_soon(self._pinger, stream, ws, heard, out)
                        elif op == "PING":
                            await stream.send_all(ws.send(BytesMessage(b"PONG\r\n")))
                        elif op == "PONG":
                            out[0] = 0

    async def _pinger(
        self, stream: trio.abc.Stream, ws: WSConnection, heard: list[float], out: list[int]
    ) -> None:
        while True:
            await trio.sleep(self.ping_interval)
            now = trio.current_time()
            if now - heard[0] < self.ping_interval:
                out[0] = 0
                continue  # it heard from the client lately: no PING
            if out[0] + 1 > self.ping_max:
                self.stale.append(now)
                await stream.send_all(ws.send(BytesMessage(STALE)))
                await stream.send_all(STALE_CLOSE)  # wsproto would not send 1006
                await stream.aclose()
                return
            out[0] += 1
            await stream.send_all(ws.send(BytesMessage(b"PING\r\n")))


BODY = """
[run]
label = "nats"
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
interval = "{interval}"
# not 500 ms: a pong timeout that ends in the early window of the next slot
# while that slot is held (max_in_flight 1) spins the engine under MockClock
timeout = "400ms"
max_missed = 100
phase = "spread"
[reconnect]
jitter = "none"
initial_delay = "1s"
max_attempts = 3
"""


async def run_nats(server: FakeNats, tmp_path: Path, **kw: Any) -> dict[str, Any]:
    values = {"clients": 3, "hold": "10s", "interval": "500ms", **kw}
    table = '[target.nats]\nping_interval = "1s"\nping_max = 2\n'
    profile = make_profile(
        BODY.format(**values), results=tmp_path, protocol="nats", target_extra=table
    )
    outcome, _ = await run_in_memory(profile, tmp_path, serving(server.serve))
    summary: dict[str, Any] = outcome.summary
    return summary


def _closes(tmp_path: Path) -> list[dict[str, Any]]:
    return [e for e in events(tmp_path) if e.get("event") == "close"]


async def test_clients_are_held_with_pongs_and_no_server_pings(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    server = FakeNats()
    s = await run_nats(server, tmp_path)
    tot = s["totals"]
    assert tot["connects"] == 3
    assert tot["missed"] == 0
    assert tot["pongs"] >= 3 * 19
    assert tot["closes"] == {"client_shutdown": 3}
    assert s["protocol"]["connected"] == 3
    assert s["protocol"]["server_pings"] == 0  # soak's own PINGs keep the server quiet
    assert server.stale == []


async def test_a_quiet_client_answers_the_servers_pings(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    # soak's own PINGs every 30 s: the server pings every second, soak answers
    server = FakeNats()
    s = await run_nats(server, tmp_path, interval="30s", hold="8s")
    assert s["totals"]["closes"] == {"client_shutdown": 3}
    assert s["protocol"]["server_pings"] >= 3 * 6
    assert server.stale == []


async def test_deaf_server_goes_stale_and_the_close_is_justified_with_1006(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    server = FakeNats(deaf_after=3.0)
    await run_nats(server, tmp_path, clients=1, hold="9s")
    stale = [c for c in _closes(tmp_path) if c["reason"] != "client_shutdown"]
    assert stale, _closes(tmp_path)
    first = stale[0]
    assert first["reason"] == "justified_timeout"
    assert (first["initiator"], first["code"], first["text"]) == (
        "server",
        1006,
        "Stale Connection",
    )
    assert first["why"].startswith("-ERR 'Stale Connection': no PONG for ")


async def test_a_refused_connect_is_permanent_for_bad_credentials(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    server = FakeNats(refuse="Authorization Violation")
    s = await run_nats(server, tmp_path, clients=2)
    tot = s["totals"]
    assert tot["connects"] == 0
    assert set(tot["handshake_failures"]) == {"auth"}
    assert "-ERR 'Authorization Violation'" in tot["permanent_failure"]["error"]
