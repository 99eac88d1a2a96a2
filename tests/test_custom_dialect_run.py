"""protocol = "custom" under MockClock: the real Runner on memory streams,
against the reference gateway and small in-memory servers that speak the
shapes of the dialect model."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from trio._core import _run as trio_run
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Request,
    TextMessage,
)

from soak.gateway import Gateway, GatewayConfig
from soak.gateway.bugs import DropHeartbeat, NoPong
from tests.support.runs import (
    events,
    gateway_opener,
    make_profile,
    one_client,
    run_in_memory,
    serving,
)

# the built-in json dialect, said as a [target.dialect] table
JSON_AS_TABLE = """
[target.dialect]
send = '{"type":"ping","timestamp":{ts_ms},"clientId":"{client_id}","seq":{seq}}'
format = "json"
reply = '/type == "pong"'
match = "pointer"
seq_pointer = "/seq"
"""

BUSY = """
[run]
label = "same"
report_interval = "5s"
seed = 7
[clients]
[[clients.stages]]
kind = "ramp"
to = 6
duration = "2.25s"
[[clients.stages]]
kind = "hold"
duration = "12s"
[[clients.stages]]
kind = "churn"
rate = 1.0
duration = "6s"
[[clients.stages]]
kind = "hold"
duration = "10s"
[heartbeat]
interval = "1s"
timeout = "500ms"
max_missed = 2
phase = "spread"
[reconnect]
initial_delay = "1s"
max_attempts = 0
jitter = "full"
"""


def _gateway() -> Gateway:
    return Gateway(
        GatewayConfig(hb_interval=1.0, hb_timeout=3.0, bugs=(NoPong(0.25), DropHeartbeat(3)))
    )


async def _run(protocol: str, extra: str, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    # trio runs a batch of ready tasks in a random order (so that no test
    # leans on one); the same seed gives both runs the same order
    trio_run._r.seed(14)
    profile = make_profile(BUSY, results=tmp_path, protocol=protocol, target_extra=extra)
    outcome, path = await run_in_memory(profile, tmp_path, gateway_opener(_gateway()))
    return outcome.summary, path


_RSS = re.compile(rb',"rss_bytes":[0-9]+')


def _files(run_dir: Path) -> dict[str, bytes]:
    """The results files; intervals without the process's own memory (rss)."""
    return {
        p.name: _RSS.sub(b"", p.read_bytes())
        for p in sorted(run_dir.iterdir())
        if p.suffix in (".jsonl", ".hlog") and p.is_file()
    }


async def test_json_and_a_table_describing_it_give_identical_results(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trio_run, "_ALLOW_DETERMINISTIC_SCHEDULING", True)
    built_in, a = await _run("json", "", tmp_path / "json")
    described, b = await _run("custom", JSON_AS_TABLE, tmp_path / "custom")
    files_a, files_b = _files(a), _files(b)
    assert sorted(files_a) == sorted(files_b)
    assert {"intervals.jsonl", "events.jsonl"} <= set(files_a)
    assert any(name.endswith(".hlog") for name in files_a)
    # the run saw closes of several kinds, misses and reconnects: a real comparison
    tot = built_in["totals"]
    assert tot["missed"] > 0
    assert tot["reconnects"] > 0
    assert len(tot["closes"]) >= 3, tot["closes"]
    for name in files_a:
        a_lines, b_lines = files_a[name].splitlines(), files_b[name].splitlines()
        if name == "events.jsonl":
            # events of one instant (the closes at the end) come in the
            # order trio happens to run the clients: compare them as a set
            a_lines, b_lines = sorted(a_lines), sorted(b_lines)
        assert a_lines == b_lines, f"{name} differs"
    for key in ("totals", "latency_ms", "availability"):
        assert built_in[key] == described[key], key


# -- small servers ---------------------------------------------------------------------

Handler = Callable[[WSConnection, trio.abc.Stream], Awaitable[None]]


def ws_server(
    handler: Callable[[WSConnection, trio.abc.Stream, Request], Awaitable[None]],
) -> Callable[[trio.abc.Stream], Awaitable[None]]:
    async def serve(stream: trio.abc.Stream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        request: Request | None = None
        while request is None:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, Request):
                    request = event
        chosen = request.subprotocols[0] if request.subprotocols else None
        await stream.send_all(ws.send(AcceptConnection(subprotocol=chosen)))
        try:
            await handler(ws, stream, request)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    return serve


async def messages(ws: WSConnection, stream: trio.abc.Stream) -> Any:
    """Each complete text or binary message the client sends."""
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return
        ws.receive_data(bytes(data))
        for event in ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                yield event.data
            elif isinstance(event, CloseConnection):
                return


async def send(ws: WSConnection, stream: trio.abc.Stream, event: Event) -> None:
    await stream.send_all(ws.send(event))


def profile(tmp_path: Path, table: str, hold: str = "10s", attempts: int = 0) -> Any:
    return make_profile(
        one_client(hold=hold, attempts=attempts),
        results=tmp_path,
        protocol="custom",
        target_extra=table,
    )


# -- the shapes ------------------------------------------------------------------------


async def test_fifo_replies_without_an_id(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """NATS-like: PING / PONG in binary frames, one in flight."""

    async def nats(ws: WSConnection, stream: trio.abc.Stream, _r: Request) -> None:
        async for msg in messages(ws, stream):
            assert msg == b"PING\r\n"
            await trio.sleep(0.05)
            await send(ws, stream, BytesMessage(b"PONG\r\n"))

    table = """
[target.dialect]
send = "50494e470d0a"
format = "hex"
frame = "binary"
reply = "hex:504f4e470d0a"
match = "fifo"
"""
    outcome, _ = await run_in_memory(profile(tmp_path, table), tmp_path, serving(ws_server(nats)))
    tot = outcome.summary["totals"]
    # every ping answered, but the last one's answer is cut off by the end
    assert tot["pings"] >= 9
    assert tot["pongs"] == tot["pings"] - tot["abandoned"]
    assert tot["missed"] == 0
    assert tot["abandoned"] <= 1
    assert outcome.summary["latency_ms"]["rtt"]["max"] == pytest.approx(50, rel=0.02)


async def test_server_pings_answered_and_their_gaps_recorded(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Engine.IO 4-like: the server sends "2" every second, wants "3" back;
    the client never pings."""
    answers: list[str | bytes] = []

    async def eio(ws: WSConnection, stream: trio.abc.Stream, _r: Request) -> None:
        async def pinger() -> None:
            while True:
                await trio.sleep(1.0)
                await send(ws, stream, TextMessage("2"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pinger)
            async for msg in messages(ws, stream):
                answers.append(msg)
            nursery.cancel_scope.cancel()

    table = """
[target.dialect]
send = ""
reply = ""
format = "text"
server_ping = "text:2"
answer = "3"
server_interval = "1s"
server_timeout = "1s"
"""
    outcome, _ = await run_in_memory(profile(tmp_path, table), tmp_path, serving(ws_server(eio)))
    tot = outcome.summary["totals"]
    assert tot["pings"] == 0
    assert tot["server_pings"] >= 9
    assert set(answers) == {"3"}
    assert len(answers) == tot["server_pings"]
    assert tot["server_missed"] == 0
    assert tot["closes"] == {"client_shutdown": 1}


async def test_the_openclaw_tick_rule_is_expressible(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Server one-way ticks and a silence rule: ticks every second, then the
    server goes quiet; the client closes the connection as a zombie after
    2 x the tick interval of silence, as OpenClaw's own client does."""

    async def ticking(ws: WSConnection, stream: trio.abc.Stream, _r: Request) -> None:
        tick = json.dumps({"type": "event", "event": "tick", "payload": {"ts": 1}})
        for _ in range(3):
            await trio.sleep(1.0)
            await send(ws, stream, TextMessage(tick))
        async for _msg in messages(ws, stream):
            pass

    table = """
[target.dialect]
send = ""
reply = ""
server_beat = '/event == "tick"'
silence_timeout = "2s"
"""
    outcome, _ = await run_in_memory(
        profile(tmp_path, table, hold="6s", attempts=0), tmp_path, serving(ws_server(ticking))
    )
    tot = outcome.summary["totals"]
    assert tot["server_pings"] >= 3
    assert tot["closes"].get("client_zombie", 0) >= 1
    closes = [e for e in events(tmp_path) if e["event"] == "close"]
    first = closes[0]
    assert (first["reason"], first["code"], first["text"]) == (
        "client_zombie",
        4000,
        "tick timeout",
    )
    # ticks 1, 2 and 3 s after the connect, then 2 s of silence
    assert first["evidence"]["age_s"] == pytest.approx(5.0)
    assert first["evidence"]["last_frame_age_s"] == pytest.approx(2.0)


GRAPHQL_WS = """
[target.dialect]
subprotocols = ["graphql-transport-ws"]
send = '{"type":"ping","payload":{"seq":{seq},"ts":{ts_ms}}}'
reply = '/type == "pong"'
seq_pointer = "/payload/seq"
timeout_close_codes = [4408]
timeout_reason = "initiali[sz]ation timeout"
[[target.dialect.handshake]]
send = '{"type":"connection_init","payload":{"client":"{client_id}"}}'
expect = '/type == "connection_ack"'
refuse = '/type == "connection_error"'
timeout = "2s"
permanent = true
"""


def graphql(ack: dict[str, Any] | None, after: float = 0.0) -> Any:
    seen: list[Any] = []

    async def server(ws: WSConnection, stream: trio.abc.Stream, request: Request) -> None:
        seen.append(request.subprotocols)
        async for msg in messages(ws, stream):
            obj = json.loads(msg)
            seen.append(obj)
            if obj["type"] == "connection_init" and ack is not None:
                await trio.sleep(after)
                await send(ws, stream, TextMessage(json.dumps(ack)))
            elif obj["type"] == "ping":
                await send(ws, stream, TextMessage(json.dumps({**obj, "type": "pong"})))

    return server, seen


async def test_a_handshake_then_pings_matched_by_a_pointer(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server, seen = graphql({"type": "connection_ack"}, after=0.2)
    p = profile(tmp_path, GRAPHQL_WS)
    assert p.target.server_heartbeat is not None
    assert p.target.server_heartbeat.close_codes == (4408,)
    outcome, _ = await run_in_memory(p, tmp_path, serving(ws_server(server)))
    tot = outcome.summary["totals"]
    assert seen[0] == ["graphql-transport-ws"]
    assert seen[1] == {"type": "connection_init", "payload": {"client": "soak-000000"}}
    assert tot["connects"] == 1
    assert tot["pings"] >= 9
    assert tot["pongs"] == tot["pings"] - tot["abandoned"]
    assert outcome.summary["latency_ms"]["connect"]["max"] == pytest.approx(200, rel=0.02)


async def test_a_refusal_is_a_permanent_handshake_failure(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server, _ = graphql({"type": "connection_error", "payload": {"message": "no"}})
    outcome, _ = await run_in_memory(
        profile(tmp_path, GRAPHQL_WS, hold="10s", attempts=0),
        tmp_path,
        serving(ws_server(server)),
    )
    fails = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert fails[0]["cause"] == "rejected"
    assert fails[0]["permanent"] is True
    assert fails[0]["error"] == (
        "ws://127.0.0.1:9/ws: refused in handshake step 1: "
        """'{"type": "connection_error", "payload": {"message": "no"}}'"""
    )
    # three permanent refusals in a row: the run stops reconnecting
    assert len(fails) == 3
    assert outcome.summary["totals"]["connects"] == 0


async def test_no_expected_message_is_a_handshake_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server, _ = graphql({"type": "something_else"})
    await run_in_memory(
        profile(tmp_path, GRAPHQL_WS, hold="3s", attempts=1), tmp_path, serving(ws_server(server))
    )
    fails = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert fails[0]["cause"] == "timeout"
    assert fails[0]["t"] == pytest.approx(2.0)
    assert fails[0]["error"] == (
        "ws://127.0.0.1:9/ws: handshake step 1: no message matching "
        """'/type == "connection_ack"' within 2s (the last message: '{"type": "something_else"}')"""
    )


# -- another dialect's server ----------------------------------------------------------

EIO_OPEN = (
    '0{"sid":"lv2Tz","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
)


async def engine_io(ws: WSConnection, stream: trio.abc.Stream, _r: Request) -> None:
    await send(ws, stream, TextMessage(EIO_OPEN))
    async for msg in messages(ws, stream):
        if msg != "40":  # anything but a namespace connect kills the session
            await send(ws, stream, CloseConnection(1005 if False else 1000))
            return


@pytest.mark.parametrize("protocol", ["json", "custom"])
async def test_an_engine_io_server_on_a_dialect_without_handshake(
    protocol: str, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    p = make_profile(one_client(hold="3s", attempts=1), results=tmp_path, protocol=protocol)
    await run_in_memory(p, tmp_path, serving(ws_server(engine_io)))
    errors = [e for e in events(tmp_path) if e["event"] == "protocol_error"]
    assert errors, "the Engine.IO open packet was not recognised"
    assert errors[0]["error"] == (
        'the server sent an Engine.IO open packet (\'0{"sid":"lv2Tz","upgrades":[],'
        '"pingInterval":25000,"pingTime...\'): it speaks Socket.IO (Engine.IO), '
        f'not protocol = "{protocol}" (try protocol = "socket.io")'
    )
    closes = [e for e in events(tmp_path) if e["event"] == "close"]
    assert closes[0]["reason"] == "client_protocol_error"


async def test_an_engine_io_server_in_a_custom_handshake(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    await run_in_memory(
        profile(tmp_path, GRAPHQL_WS, hold="3s", attempts=1),
        tmp_path,
        serving(ws_server(engine_io)),
    )
    fails = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert fails[0]["cause"] == "protocol"
    assert "handshake step 1: the server sent an Engine.IO open packet" in fails[0]["error"]
    assert 'try protocol = "socket.io"' in fails[0]["error"]


async def test_a_graphql_ws_server_closing_4406_is_named(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """graphql-ws's server closes 4406 at once when its subprotocol was not
    offered: on protocol = "json" the close's why says what it is."""

    async def graphql_ws(ws: WSConnection, stream: trio.abc.Stream, _r: Request) -> None:
        await send(ws, stream, CloseConnection(4406, "Subprotocol not acceptable"))
        async for _msg in messages(ws, stream):
            pass

    p = make_profile(one_client(hold="2s", attempts=1), results=tmp_path, protocol="json")
    await run_in_memory(p, tmp_path, serving(ws_server(graphql_ws)))
    close = next(e for e in events(tmp_path) if e["event"] == "close")
    assert (close["reason"], close["code"]) == ("server_4406", 4406)
    assert close["why"] == (
        'the server sent a close of graphql-ws\'s (close 4406 "Subprotocol not acceptable"): '
        'it speaks graphql-ws, not protocol = "json" (try protocol = "graphql-ws")'
    )
