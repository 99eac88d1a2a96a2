"""Client behaviour under MockClock: zombies, server timeouts, late pongs,
backoff against an unreachable target, load-shape changes, shutdown."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from soak.gateway import Gateway, GatewayConfig
from soak.run.runner import Outcome, Runner
from tests.support.runs import (
    Opener,
    events,
    gateway_opener,
    make_profile,
    one_client,
    run_in_memory,
    serving,
)


async def run(
    body: str,
    tmp_path: Path,
    opener: Callable[[trio.Nursery], Opener],
    during: Callable[[Runner], Awaitable[None]] | None = None,
    protocol: str = "json",
    target_extra: str = "",
) -> Outcome:
    profile = make_profile(body, results=tmp_path, protocol=protocol, target_extra=target_extra)
    outcome, _ = await run_in_memory(profile, tmp_path, opener, during)
    return outcome


def gateway(config: GatewayConfig | None = None) -> Callable[[trio.Nursery], Opener]:
    return gateway_opener(Gateway(config or GatewayConfig()))


async def fake_server(
    stream: trio.abc.Stream,
    pong_delay: float | None,
    on_request: Callable[[Request], None] | None = None,
    close_after: float | None = None,
) -> None:
    """Accepts the upgrade, then answers JSON pings after ``pong_delay``
    seconds, or never (None): a zombie whose TCP stays up. With
    ``close_after`` it closes with 4000 "heartbeat_timeout" that long after
    the upgrade, whatever the client did."""
    ws = WSConnection(ConnectionType.SERVER)
    async with trio.open_nursery() as nursery:
        if close_after is not None:
            nursery.start_soon(_close_later, stream, ws, close_after)
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(bytes(data))
            for event in ws.events():
                if isinstance(event, Request):
                    if on_request is not None:
                        on_request(event)
                    await stream.send_all(ws.send(AcceptConnection()))
                elif isinstance(event, TextMessage) and pong_delay is not None:
                    msg = json.loads(event.data)
                    reply = ws.send(TextMessage(json.dumps({"type": "pong", "seq": msg["seq"]})))
                    nursery.start_soon(_send_later, stream, reply, pong_delay)
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        await stream.send_all(ws.send(event.response()))
                    return


async def _close_later(stream: trio.abc.Stream, ws: WSConnection, delay: float) -> None:
    await trio.sleep(delay)
    if ws.state is ConnectionState.OPEN:
        await _send_later(stream, ws.send(CloseConnection(4000, "heartbeat_timeout")), 0)


async def _send_later(stream: trio.abc.Stream, data: bytes, delay: float) -> None:
    await trio.sleep(delay)
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def fake_opener(pong_delay: float | None) -> Callable[[trio.Nursery], Opener]:
    return serving(partial(fake_server, pong_delay=pong_delay))


async def test_zombie_detected_after_max_missed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    outcome = await run(one_client(hold="4500ms", attempts=1), tmp_path, fake_opener(None))
    tot = outcome.summary["totals"]
    # pings at 0, 1, 2 (aligned grid) time out at 1, 2, 3; the third miss at
    # t=3 makes it a zombie; the ping of t=3 goes unsent because the client
    # closes first
    assert tot["missed"] == 3
    assert tot["zombies"] == 1
    assert tot["closes"]["client_zombie"] == 1
    zombie = next(e for e in events(tmp_path) if e["event"] == "close")
    assert zombie["t"] == pytest.approx(3.0, abs=0.002)
    assert zombie["code"] == 1001
    assert zombie["evidence"]["consecutive_missed"] == 3
    assert zombie["evidence"]["last_pong_age_s"] is None
    # detected 3 s (3 heartbeat intervals) after the first unanswered ping was sent
    assert zombie["detected_after_s"] == pytest.approx(3.0, abs=0.002)
    assert zombie["detected_after_intervals"] == pytest.approx(3.0, abs=0.002)
    assert zombie["evidence"]["unresponsive_for_s"] == zombie["detected_after_s"]
    # it reconnects after the backoff (1 s): a second connection
    assert tot["connects"] == 2
    assert tot["reconnects"] == 1


async def test_late_pong_counted_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # every pong comes 1.5 s after its ping, past the 1 s timeout
    body = one_client(hold="3200ms").replace("max_missed = 3", "max_missed = 10")
    outcome = await run(body, tmp_path, fake_opener(1.5))
    tot = outcome.summary["totals"]
    assert tot["pings"] == 4  # t = 0, 1, 2, 3
    assert tot["missed"] == 3  # the pings of 0, 1 and 2 timed out ...
    assert tot["late"] == 2  # ... the pongs of 0 and 1 came late, at 1.5 and 2.5 s
    assert tot["abandoned"] == 1  # the ping of 3 s was pending when the run ended
    assert tot["pongs"] == 0
    assert tot["heartbeat_success"] == 0.0
    assert tot["zombies"] == 0  # late pongs prove it alive
    rtt = outcome.summary["latency_ms"]["rtt"]
    assert rtt["count"] == 2
    assert rtt["max"] == pytest.approx(1500, rel=0.001)


async def test_server_heartbeat_timeout_then_reconnect(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    body = one_client(hold="28s").replace('interval = "1s"', 'interval = "1m"')
    config = GatewayConfig(hb_interval=5.0, hb_timeout=5.0, max_missed=1, check_every=1.0)
    outcome = await run(body, tmp_path, gateway(config))
    tot = outcome.summary["totals"]
    # the client pings at 0 and then not before 60 s: the gateway closes it at
    # its first check 5 s after the last sign of life, and again 5 s after each
    # reconnect (1 s of backoff each time)
    closes = [e for e in events(tmp_path) if e.get("reason") == "server_4000"]
    assert [c["t"] for c in closes] == pytest.approx([5.0, 11.0, 17.0, 23.0])
    assert tot["closes"] == {"server_4000": 4, "client_shutdown": 1}
    assert closes[0]["text"] == "heartbeat_timeout"
    assert closes[0]["evidence"]["last_pong_age_s"] == pytest.approx(5.0)
    assert tot["reconnects"] == 4


async def test_unreachable_target_backs_off_and_gives_up(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    def refusing(nursery: trio.Nursery) -> Opener:
        async def open_stream() -> trio.abc.Stream:
            raise ConnectionRefusedError(111, "Connection refused")

        return open_stream

    outcome = await run(one_client(hold="30s", attempts=3), tmp_path, refusing)
    tot = outcome.summary["totals"]
    assert tot["handshake_failures"] == {"refused": 4}  # the first try + 3 retries
    assert tot["reconnect_failed"] == 1
    assert tot["connects"] == 0
    assert outcome.exit_code == 3
    times = [e["t"] for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert times == [0.0, 1.0, 3.0, 7.0]  # no jitter: 1, 2, 4 s apart
    (gave_up,) = [e for e in events(tmp_path) if e["event"] == "reconnect_failed"]
    assert gave_up["t"] == 7.0


@pytest.mark.slow
async def test_spike_scales_down_and_churn_recycles(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    body = """
[run]
label = "shape"
report_interval = "5s"
[clients]
[[clients.stages]]
kind = "ramp"
to = 10
duration = "0s"
[[clients.stages]]
kind = "spike"
add = 5
duration = "10s"
[[clients.stages]]
kind = "churn"
rate = 2.0
duration = "5s"
[[clients.stages]]
kind = "hold"
duration = "5s"
[heartbeat]
interval = "1s"
timeout = "1s"
"""
    outcome = await run(body, tmp_path, gateway())
    tot = outcome.summary["totals"]
    assert tot["closes"]["client_scale_down"] == 5
    assert tot["closes"]["client_churn"] == 10
    assert tot["closes"]["client_shutdown"] == 10
    assert tot["connects"] == 15 + 10
    assert tot["missed"] == 0


async def test_stop_closes_everyone_and_marks_partial(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def interrupt(runner: Runner) -> None:
        await trio.sleep(12.5)
        runner.stop("interrupted")

    body = one_client(hold="1h").replace("to = 1", "to = 5")
    outcome = await run(body, tmp_path, gateway(), during=interrupt)
    assert outcome.status == "interrupted"
    assert outcome.exit_code == 130
    assert outcome.summary["partial"] is True
    assert outcome.summary["totals"]["closes"] == {"client_shutdown": 5}
    (run_dir,) = tmp_path.iterdir()
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "interrupted"
    lines = (run_dir / "intervals.jsonl").read_text().splitlines()
    assert len(lines) == 2  # 0-10 s and the partial 10-12.5 s


async def test_ws_ping_protocol_and_server_pings(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    gw = GatewayConfig(server_ping_interval=2.0)
    outcome = await run(one_client(hold="9500ms"), tmp_path, gateway(gw), protocol="ws-ping")
    tot = outcome.summary["totals"]
    assert tot["pongs"] == tot["pings"] == 10  # RFC 6455 pings at 0..9 s
    assert tot["server_pings"] == 4  # the server's pings at 2, 4, 6, 8 s, all answered


async def deaf_server(stream: trio.abc.Stream) -> None:
    """Accepts the upgrade, then never reads or answers anything again."""
    ws = WSConnection(ConnectionType.SERVER)
    ws.receive_data(bytes(await stream.receive_some(65536)))
    await stream.send_all(ws.send(AcceptConnection()))
    await trio.sleep_forever()


@pytest.mark.slow
async def test_second_stop_aborts_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    make = serving(deaf_server)

    async def ctrl_c_twice(runner: Runner) -> None:
        await trio.sleep(0.5)
        runner.stop("interrupted")  # the clients now wait for close frames that never come
        await trio.sleep(0.25)
        runner.stop("interrupted")

    body = one_client(hold="1h").replace("max_missed = 3", "max_missed = 100")
    outcome = await run(body, tmp_path, make, during=ctrl_c_twice)
    assert trio.current_time() == 0.75  # not the 2 s a graceful close would wait
    assert outcome.status == "aborted"
    assert outcome.exit_code == 130
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "aborted"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["partial"] is True
    assert summary["totals"]["pings"] == 1
    assert len((run_dir / "intervals.jsonl").read_text().splitlines()) == 1


async def test_token_is_sent_and_never_recorded(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[list[tuple[bytes, bytes]]] = []

    def record(request: Request) -> None:
        seen.append(list(request.extra_headers))

    make = serving(partial(fake_server, pong_delay=0.0, on_request=record))

    secret = "s3cret-t0ken-value"
    body = one_client(hold="2s")
    profile = make_profile(
        body,
        results=tmp_path,
        environ={"GW_TOKEN": secret},
        target_extra='token_env = "GW_TOKEN"\n'
        'headers = { "X-Api-Key" = "k3y", "X-Tenant" = "t1" }\n',
    )
    _, run_dir = await run_in_memory(profile, tmp_path, make)
    (headers,) = seen
    assert (b"authorization", b"Bearer " + secret.encode()) in headers
    assert (b"x-tenant", b"t1") in headers
    assert secret not in repr(profile)
    for path in run_dir.iterdir():
        text = path.read_text()
        assert secret not in text, path.name
        assert "k3y" not in text, path.name
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["profile"]["target"]["headers"] == {
        "X-Api-Key": "<redacted>",
        "X-Tenant": "t1",
    }


async def test_target_dies_mid_run(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """The gateway process dies at t=5: connections drop with no close frame,
    then connecting is refused. The clients back off, give up, and the run
    still writes everything and exits non-zero."""
    death = 5.0

    async def doomed(stream: trio.abc.Stream) -> None:
        with trio.move_on_at(death):
            await fake_server(stream, pong_delay=0.0)
        await stream.aclose()  # the process is gone: EOF, no close frame

    def make(nursery: trio.Nursery) -> Opener:
        async def open_stream() -> trio.abc.Stream:
            if trio.current_time() >= death:
                raise ConnectionRefusedError(111, "Connection refused")
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(doomed, server)
            return client

        return open_stream

    body = one_client(hold="30s", attempts=2).replace("to = 1", "to = 4")
    outcome = await run(body, tmp_path, make)
    tot = outcome.summary["totals"]
    assert tot["closes"] == {"transport_eof": 4}
    assert tot["handshake_failures"] == {"refused": 8}  # 2 retries each
    assert tot["reconnect_failed"] == 4
    assert outcome.exit_code == 3
    assert outcome.summary["verdict"] == (
        "4 clients gave up reconnecting: the planned load was not held"
    )
    (run_dir,) = tmp_path.iterdir()
    lines = (run_dir / "intervals.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["closes"] == {"transport_eof": 4}
    assert first["reconnect_failed"] == 4  # 1 s and 2 s of backoff: all gave up by t=8
    assert len(lines) == 3


async def test_queueing_for_a_handshake_slot_is_not_a_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """One handshake at a time, each taking 0.6 s, and a 1 s connect timeout:
    the third client waits 1.2 s for its slot, which is our own limit, not
    the target's slowness."""

    async def slow_server(stream: trio.abc.Stream) -> None:
        await trio.sleep(0.6)
        await fake_server(stream, pong_delay=0.0)

    make = serving(slow_server)

    body = (
        one_client(hold="5s")
        .replace("to = 1", "to = 3")
        .replace("[clients]", "[clients]\nmax_connecting = 1")
    )
    outcome = await run(body, tmp_path, make, target_extra='connect_timeout = "1s"\n')
    tot = outcome.summary["totals"]
    assert tot["connects"] == 3
    assert tot["handshake_failure_total"] == 0
    connect = outcome.summary["latency_ms"]["connect"]
    assert connect["max"] == pytest.approx(600, rel=0.01)  # the handshake, not the queue


SERVER_HEARTBEAT = """server_heartbeat = { interval = "1s", timeout = "4s", max_missed = 3 }
"""


@pytest.mark.parametrize(
    ("pong_delay", "key"),
    [
        (0.0, "false_timeout"),  # pongs kept coming: the server killed a live client
        (None, "justified_timeout"),  # nothing came back for 5 s and 5 pings were missed
    ],
)
async def test_server_heartbeat_timeout_is_judged_by_the_evidence(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, pong_delay: float | None, key: str
) -> None:
    make = serving(partial(fake_server, pong_delay=pong_delay, close_after=5.0))
    body = one_client(hold="6500ms", attempts=1).replace("max_missed = 3", "max_missed = 10")
    outcome = await run(body, tmp_path, make, target_extra=SERVER_HEARTBEAT)
    tot = outcome.summary["totals"]
    assert tot["closes"] == {key: 1, "client_shutdown": 1}
    assert tot["closes_by_code"] == {"4000": 1, "1001": 1}
    assert tot["closes_by_category"] == {"heartbeat_timeout": 1, "client": 1}
    assert tot["false_timeouts"] == (1 if key == "false_timeout" else 0)
    assert tot["justified_timeouts"] == (1 if key == "justified_timeout" else 0)
    close = next(e for e in events(tmp_path) if e.get("reason") == key)
    assert close["category"] == "heartbeat_timeout"
    assert close["t"] == 5.0
    if key == "false_timeout":
        # the ping of the 5 s slot went out 1 ms early and its pong came at once
        assert close["why"].startswith("last pong 0.001s ago < server timeout 4s")
    else:
        assert close["why"] == (
            "no pong for the whole connection, no frame for 5.000s, 5 heartbeats missed"
        )
    # the reconnect that followed knows what came before it
    shutdown = next(e for e in events(tmp_path) if e.get("reason") == "client_shutdown")
    assert shutdown["previous_close"] == {"reason": key, "ago_s": 1.5}
