"""Whole runs of protocol = "socket.io" under MockClock against an in-memory
Engine.IO server that follows the spec and the real server's behaviour
(docs/dialects/socketio.md): the open packet, CONNECT and CONNECT_ERROR,
a ping pingInterval after each answer, a close without status (1005)
pingTimeout after an unanswered ping, Engine.IO 3's client pings."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage
from wsproto.frame_protocol import CloseReason

from soak.live import print_summary
from tests.support.runs import events, make_profile, run_in_memory, serving


@dataclass
class FakeEngineIO:
    """One Socket.IO server: its settings, and what it saw."""

    eio: int = 4
    ping_interval: float = 1.0  # seconds
    ping_timeout: float = 1.0
    max_payload: int = 1_000_000
    refuse: str | None = None  # CONNECT_ERROR with this message
    disconnect_after: float | None = None  # after CONNECT: 41, then the close
    close_after: float | None = None  # after CONNECT: a close without status (io.close())
    mute_after: float | None = None  # after CONNECT: no more pings (the socket stays)
    answer_delay: float = 0.0  # Engine.IO 3: how long a 3 takes
    targets: list[str] = field(default_factory=list)
    connects: list[str] = field(default_factory=list)
    pings: list[float] = field(default_factory=list)  # the server's 2, sent at
    answers: list[float] = field(default_factory=list)  # our 3 (Engine.IO 4), received at
    client_pings: list[float] = field(default_factory=list)  # our 2 (Engine.IO 3)
    timeouts: list[float] = field(default_factory=list)  # the ping timer fired at

    async def serve(self, stream: trio.abc.Stream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            await self._serve(stream, ws)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _serve(self, stream: trio.abc.Stream, ws: WSConnection) -> None:
        async def send(text: str) -> None:
            await stream.send_all(ws.send(TextMessage(data=text)))

        async def close() -> None:  # as engine.io's ws.close(): no status
            await stream.send_all(ws.send(CloseConnection(code=CloseReason.NO_STATUS_RCVD)))

        inf = math.inf
        next_ping = timer = end_at = mute_at = inf
        end = ""
        pongs_due: list[float] = []
        while True:
            deadline = min(next_ping, timer, end_at, pongs_due[0] if pongs_due else inf)
            data = None
            with trio.move_on_at(deadline):
                data = await stream.receive_some(65536)
                if not data:
                    return
            now = trio.current_time()
            if data is None:
                if pongs_due and now >= pongs_due[0]:
                    pongs_due.pop(0)
                    await send("3")
                elif now >= end_at:
                    if end == "disconnect":
                        await send("41")
                    await close()
                    return
                elif now >= timer:
                    self.timeouts.append(now)
                    await close()
                    return
                elif now >= next_ping:
                    next_ping = inf
                    if now < mute_at:
                        self.pings.append(now)
                        await send("2")
                        timer = now + self.ping_timeout
                continue
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, Request):
                    self.targets.append(event.target)
                    await stream.send_all(ws.send(AcceptConnection()))
                    opened = {
                        "sid": f"s{len(self.targets)}",
                        "upgrades": [],
                        "pingInterval": int(self.ping_interval * 1000),
                        "pingTimeout": int(self.ping_timeout * 1000),
                        "maxPayload": self.max_payload,
                    }
                    await send("0" + json.dumps(opened))
                    if self.eio == 4:
                        next_ping = now + self.ping_interval
                    else:
                        timer = now + self.ping_interval + self.ping_timeout
                        await send("40")  # Socket.IO 2 joins "/" by itself
                elif isinstance(event, TextMessage):
                    text = event.data
                    assert isinstance(text, str)
                    if text == "3" and self.eio == 4:
                        self.answers.append(now)
                        timer = inf
                        next_ping = now + self.ping_interval
                    elif text == "2" and self.eio == 4:
                        await close()  # "invalid heartbeat direction"
                        return
                    elif text == "2":
                        self.client_pings.append(now)
                        timer = now + self.ping_interval + self.ping_timeout
                        pongs_due.append(now + self.answer_delay)
                    elif text.startswith("40"):
                        self.connects.append(text)
                        nsp = text[2:].partition(",")[0] + "," if text[2:3] == "/" else ""
                        if self.refuse is not None:
                            await send(f"44{nsp}" + json.dumps({"message": self.refuse}))
                            continue
                        await send(f"40{nsp}" + ('{"sid":"x"}' if self.eio == 4 else ""))
                        if self.disconnect_after is not None:
                            end, end_at = "disconnect", now + self.disconnect_after
                        if self.close_after is not None:
                            end, end_at = "close", now + self.close_after
                        if self.mute_after is not None:
                            mute_at = now + self.mute_after
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        await stream.send_all(ws.send(event.response()))
                    return


BODY = """
[run]
label = "sio"
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
timeout = "{hb_timeout}"
max_missed = 3
phase = "aligned"
[reconnect]
enabled = {reconnect}
jitter = "none"
initial_delay = "1s"
max_attempts = {attempts}
"""


async def run_sio(
    tmp_path: Path,
    server: FakeEngineIO,
    *,
    clients: int = 1,
    hold: str = "10s",
    attempts: int = 5,
    reconnect: bool = True,
    hb_timeout: str = "1s",
    keys: str = "",
    table: str = "",
    extra: str = "",
    url: str = "ws://127.0.0.1:9/socket.io/",
    environ: dict[str, str] | None = None,
) -> dict[str, Any]:
    body = (
        BODY.format(
            clients=clients,
            hold=hold,
            attempts=attempts,
            reconnect=str(reconnect).lower(),
            hb_timeout=hb_timeout,
        )
        + extra
    )
    target_extra = keys + (f"[target.socketio]\n{table}\n" if table else "")
    profile = make_profile(
        body,
        url=url,
        results=tmp_path,
        protocol="socket.io",
        target_extra=target_extra,
        environ=environ,
    )
    outcome, _ = await run_in_memory(profile, tmp_path, serving(server.serve))
    return outcome.summary


def closes(tmp_path: Path) -> list[dict[str, Any]]:
    return [e for e in events(tmp_path) if e["event"] == "close"]


async def test_clients_answer_every_server_ping_and_never_ping(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeEngineIO(ping_interval=1.0, ping_timeout=1.0)
    summary = await run_sio(tmp_path, server, clients=5, hold="10s")
    tot = summary["totals"]
    assert server.targets == ["/socket.io/?EIO=4&transport=websocket"] * 5
    assert server.connects == ["40"] * 5
    assert tot["connects"] == 5
    assert tot["closes"] == {"client_shutdown": 5}
    assert tot["pings"] == 0  # never a 2 on Engine.IO 4 (the server would close)
    assert tot["missed"] == 0
    assert tot["server_missed"] == 0
    # a ping at 1, 2, ... 9 s on each connection, every one answered (the
    # run ends at 10 s, as the pings of 10 s go out)
    assert len([t for t in server.pings if t < 10]) == 45
    assert tot["server_pings"] == len(server.answers) == 45
    gap = summary["latency_ms"]["server_gap"]
    assert gap["count"] == 40
    assert gap["min"] == pytest.approx(1000.0, rel=1e-3)
    assert gap["max"] == pytest.approx(1000.0, rel=1e-3)
    out = io.StringIO()
    print_summary(summary, "results/x", out)
    text = out.getvalue()
    assert "  server pings 45, missed 0\n" in text
    assert "  server_gap   p50 1000." in text
    proto = summary["protocol"]
    assert proto["name"] == "socket.io"
    assert proto["sessions"] == 5
    assert proto["engine_io"] == "4"
    assert proto["server_timings_ms"] == ["pingInterval 1000, pingTimeout 1000"]


@pytest.mark.parametrize(("direction", "grows"), [("up", 0.25), ("down", 0.25), ("both", 0.5)])
async def test_a_delayed_answer_shows_in_the_server_gap(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, direction: str, grows: float
) -> None:
    """The server pings pingInterval after our answer reaches it: a delay
    on the way up (our 3) or down (its 2, before we can answer) lengthens
    every gap by exactly that delay, each way."""
    server = FakeEngineIO(ping_interval=1.0, ping_timeout=2.0)
    extra = f'[impairment]\nlatency = "250ms"\ndirection = "{direction}"\n'
    summary = await run_sio(tmp_path, server, hold="10s", extra=extra)
    gap = summary["latency_ms"]["server_gap"]
    assert gap["count"] >= 5
    assert gap["min"] == pytest.approx(1000.0 + grows * 1000, rel=1e-3)
    assert gap["max"] == pytest.approx(1000.0 + grows * 1000, rel=1e-3)
    assert summary["totals"]["closes"] == {"client_shutdown": 1}


async def test_dropped_answers_are_the_servers_justified_ping_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeEngineIO(ping_interval=1.0, ping_timeout=1.0)
    extra = '[impairment.drop_heartbeat]\np = 1.0\ndirection = "up"\nfrom = "1.5s"\n'
    summary = await run_sio(tmp_path, server, hold="3.5s", reconnect=False, extra=extra)
    # pinged at 1 s (answered), at 2 s (answer dropped): closed at 3 s
    assert server.timeouts == [3.0]
    (close,) = [c for c in closes(tmp_path) if c["reason"] != "client_shutdown"]
    assert close["reason"] == "justified_timeout"
    assert close["category"] == "heartbeat_timeout"
    assert (close["initiator"], close["code"], close["t"]) == ("server", 1005, 3.0)
    assert close["why"] == (
        "the server's ping timeout: closed without a status 1.000s after the server's "
        "last ping, 2.000s after the ping before it (open packet: pingInterval 1s, "
        "pingTimeout 1s); our last answer sent 1.000s ago"
    )
    tot = summary["totals"]
    assert tot["justified_timeouts"] == 1
    assert tot["false_timeouts"] == 0
    events_ = [e for e in events(tmp_path) if e["event"] == "impairment"]
    assert events_


async def test_a_session_whose_pings_stop_is_given_up_as_a_zombie(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """No ping for pingInterval + pingTimeout (from the open packet): the
    client closes, as socket.io-client does."""
    server = FakeEngineIO(ping_interval=1.0, ping_timeout=2.0, mute_after=1.5)
    summary = await run_sio(tmp_path, server, hold="5s", reconnect=False)
    # pings at 1 s, then none: overdue at 1 + 1 + 2 = 4 s
    (zombie,) = [c for c in closes(tmp_path) if c["reason"] == "client_zombie"]
    assert (zombie["t"], zombie["code"]) == (4.0, 1001)
    assert zombie["text"] == "zombie: server heartbeats stopped"
    tot = summary["totals"]
    assert tot["server_missed"] == 1
    assert tot["zombies"] == 1


async def test_a_close_without_status_before_the_ping_timer_is_no_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """io.close() on a graceful shutdown closes as the ping timer does
    (1005); 0.5 s after an answered ping it cannot be that timer."""
    server = FakeEngineIO(ping_interval=1.0, ping_timeout=1.0, close_after=2.5)
    summary = await run_sio(tmp_path, server, hold="3s", reconnect=False)
    (close,) = [c for c in closes(tmp_path) if c["reason"] != "client_shutdown"]
    assert (close["reason"], close["category"], close["code"]) == ("server_1005", "server", 1005)
    assert close["why"] == (
        "closed without a status 0.500s after the server's last ping, 1.500s after the "
        "ping before it: sooner than the server's ping timer can fire (open packet: "
        "pingInterval 1s, pingTimeout 1s)"
    )
    assert summary["totals"]["false_timeouts"] == 0
    assert summary["totals"]["justified_timeouts"] == 0


async def test_a_disconnect_is_the_servers_goodbye(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeEngineIO(disconnect_after=1.5)
    summary = await run_sio(tmp_path, server, hold="2s", reconnect=False)
    (close,) = [c for c in closes(tmp_path) if c["reason"] != "client_shutdown"]
    assert close["reason"] == "server_socketio_disconnect"
    assert close["why"] == "after the server's DISCONNECT (41)"
    assert summary["protocol"]["disconnects"] == 1


async def test_namespace_and_auth_with_the_token(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeEngineIO()
    table = 'namespace = "/admin"\nauth = { user = "load" }\n'
    summary = await run_sio(
        tmp_path,
        server,
        hold="2s",
        table=table,
        keys='token_env = "SIO_TOKEN"\n',
        url="ws://127.0.0.1:9/rt/?room=1",
        environ={"SIO_TOKEN": "s3cret"},
    )
    assert summary["totals"]["connects"] == 1
    assert server.targets == ["/rt/?room=1&EIO=4&transport=websocket"]
    assert server.connects == ['40/admin,{"user":"load","token":"s3cret"}']


async def test_not_authorized_is_permanent_and_stops_the_run_reconnecting(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeEngineIO(refuse="Not authorized")
    summary = await run_sio(tmp_path, server, hold="60s", attempts=0)
    tot = summary["totals"]
    assert tot["handshake_failures"] == {"connect_error": 3}
    assert tot["connects"] == 0
    error = (
        "ws://127.0.0.1:9/socket.io/: CONNECT to namespace / refused: Not authorized "
        "(permanent: it matches [target.socketio] permanent_errors)"
    )
    assert tot["permanent_failure"]["error"] == error
    fails = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert [e["t"] for e in fails] == [0.0, 1.0, 3.0]
    assert summary["exit_code"] == 3


async def test_another_connect_error_is_retried(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeEngineIO(refuse="server full")
    summary = await run_sio(tmp_path, server, hold="8s", attempts=4)
    tot = summary["totals"]
    # past three refusals in a row: not permanent, the policy goes on
    fails = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert [e["t"] for e in fails] == [0.0, 1.0, 3.0, 7.0]
    assert not any(e.get("permanent") for e in fails)
    assert tot["handshake_failures"] == {"connect_error": 4}
    assert "permanent_failure" not in tot
    assert summary["protocol"]["connect_errors"] == 4


async def test_engine_io_3_the_client_pings_and_the_reply_is_fifo(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeEngineIO(eio=3, ping_interval=1.0, ping_timeout=1.0)
    summary = await run_sio(tmp_path, server, clients=2, hold="10s", table="eio = 3")
    tot = summary["totals"]
    assert server.targets == ["/socket.io/?EIO=3&transport=websocket"] * 2
    assert server.connects == []  # "/" is joined by the server itself
    assert tot["pings"] == tot["pongs"] == len(server.client_pings) >= 18
    assert tot["missed"] == 0
    assert tot["closes"] == {"client_shutdown": 2}
    assert summary["protocol"]["engine_io"] == "3"


async def test_engine_io_3_holds_a_slot_while_a_reply_is_outstanding(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """One ping in flight: a server that takes 1.5 s to answer gets a ping
    every other 1 s slot; the slots between are held, not sent."""
    server = FakeEngineIO(eio=3, ping_interval=2.0, ping_timeout=5.0, answer_delay=1.5)
    summary = await run_sio(tmp_path, server, hold="10.5s", table="eio = 3", hb_timeout="5s")
    tot = summary["totals"]
    # (each 1 ms early: soak.client.live.TIMER_EARLY)
    assert server.client_pings == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0, 10.0], abs=0.0015)
    assert tot["pings"] == 6
    assert tot["held"] == 5  # the slots of 1, 3, 5, 7 and 9 s
    assert tot["pongs"] == 5  # the last one's answer would come at 11.5 s
    assert (tot["missed"], tot["late"]) == (0, 0)
    assert summary["latency_ms"]["rtt"]["min"] == pytest.approx(1500.0, rel=1e-3)


async def test_engine_io_3_namespace_connect_and_its_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Socket.IO 2: after the server's own 40, CONNECT /admin; pings
    dropped on the way up: the server closes pingInterval + pingTimeout
    after the last one it got, a justified timeout."""
    server = FakeEngineIO(eio=3, ping_interval=1.0, ping_timeout=1.0)
    extra = '[impairment.drop_heartbeat]\np = 1.0\ndirection = "up"\nfrom = "1.5s"\n'
    summary = await run_sio(
        tmp_path,
        server,
        hold="4s",
        reconnect=False,
        table='eio = 3\nnamespace = "/admin"',
        extra=extra,
    )
    assert server.connects == ["40/admin,"]
    # our pings at 0 s and 1 s (1 ms early) arrive, then none: closed at 1 + 2 = 3 s
    assert server.timeouts == pytest.approx([3.0], abs=0.0015)
    (close,) = [c for c in closes(tmp_path) if c["reason"] != "client_shutdown"]
    assert close["reason"] == "justified_timeout"
    assert close["why"].startswith(
        "the server's ping timeout: closed without a status 2.000s after our last answered "
        "ping (open packet: pingInterval 1s, pingTimeout 1s); 1 of our pings missed"
    )
    assert summary["totals"]["false_timeouts"] == 0
