"""``protocol = "openclaw"`` against a fake OpenClaw Gateway written from
docs/openclaw.md, under MockClock: the handshake, ticks, server pings, tick
silence, a wrong token, an old protocol and "gateway starting"."""

from __future__ import annotations

import json
import math
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from soak import __version__
from soak.config.openclaw import OPENCLAW_PREAUTH_BUDGET, OpenClawConfig
from soak.config.overrides import override
from soak.errors import ProfileError
from soak.protocols.openclaw import OpenClaw, OpenClawState
from soak.run.runner import Runner
from tests.support.runs import Opener, events, make_profile, one_client, run_in_memory, serving

TOKEN = "oc-t0ken-secret"
CONNECT_KEYS = {
    "minProtocol",
    "maxProtocol",
    "client",
    "role",
    "scopes",
    "caps",
    "auth",
    "locale",
    "userAgent",
}
CLIENT_IDS = ("gateway-client", "cli", "test", "webchat", "openclaw-probe")
MODES = ("webchat", "cli", "ui", "backend", "node", "worker", "probe", "test")
ROLES = ("operator", "node", "worker")


def floor(body: str) -> str:
    """A profile whose server hints are a floor of the backoff ([reconnect]
    hint = "floor"), so a retry comes exactly at the hint."""
    return body.replace("[reconnect]\n", '[reconnect]\nhint = "floor"\n')


@dataclass
class FakeOpenClaw:
    """One gateway: its settings, and what it saw."""

    token: str = TOKEN
    protocol: int = 4
    version: str = "2026.9.6"
    tick_interval: float = 30.0  # policy.tickIntervalMs / 1000
    hello_delay: float = 0.0  # how long connect takes to answer
    server_ping_interval: float | None = None
    starting_until: float = 0.0  # before this, connect gets UNAVAILABLE
    retry_after_ms: int = 500
    mute_after: float | None = None  # after hello-ok: no more frames at all
    tick_delay: dict[int, float] = field(default_factory=dict)  # tick k sent this late
    shutdown_at: float | None = None  # a restart: shutdown event, then close 1012
    restart_expected_ms: int = 1500
    hello_protocol: int | None = None  # the protocol hello-ok names (default: protocol)
    ignore_pongs: bool = False  # an overloaded gateway: client pongs never count
    # (connection number, seconds after hello-ok, text): a frame sent as is
    raw_frames: list[tuple[int, float, str]] = field(default_factory=list)
    # (connection number, seconds after hello-ok, code, reason): a live close
    live_closes: list[tuple[int, float, int, str]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[tuple[float, int, str]] = field(default_factory=list)
    terminated: list[float] = field(default_factory=list)  # heartbeat-timeout
    accepted: int = 0  # connections that got hello-ok

    async def serve(self, stream: trio.abc.Stream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            await self._serve(stream, ws)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away, or the keepalive terminated it

    async def _send(self, stream: trio.abc.Stream, ws: WSConnection, obj: Any) -> None:
        await stream.send_all(ws.send(TextMessage(json.dumps(obj))))

    async def _reject(
        self,
        stream: trio.abc.Stream,
        ws: WSConnection,
        req_id: Any,
        error: dict[str, Any],
        code: int,
        reason: str,
    ) -> None:
        details = error.get("details", {})
        self.rejections.append((trio.current_time(), code, details.get("code") or error["code"]))
        await self._send(stream, ws, {"type": "res", "id": req_id, "ok": False, "error": error})
        await stream.send_all(ws.send(CloseConnection(code, reason)))

    async def _serve(self, stream: trio.abc.Stream, ws: WSConnection) -> None:
        authed = False
        pong_seen = [True]  # the keepalive's "isAlive"
        muted_at = math.inf  # this connection sends nothing from then on
        nonce = str(uuid.uuid4())
        async with trio.open_nursery() as nursery:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    nursery.cancel_scope.cancel()
                    return
                ws.receive_data(bytes(data))
                for event in ws.events():
                    if isinstance(event, Request):
                        await stream.send_all(ws.send(AcceptConnection()))
                        challenge = {"nonce": nonce, "ts": int(trio.current_time() * 1000)}
                        await self._send(
                            stream,
                            ws,
                            {"type": "event", "event": "connect.challenge", "payload": challenge},
                        )
                    elif isinstance(event, Ping):
                        if trio.current_time() < muted_at:
                            await stream.send_all(ws.send(event.response()))
                    elif isinstance(event, Pong):
                        if not self.ignore_pongs:
                            pong_seen[0] = True
                    elif isinstance(event, CloseConnection):
                        if ws.state is ConnectionState.REMOTE_CLOSING:
                            await stream.send_all(ws.send(event.response()))
                        nursery.cancel_scope.cancel()
                        return
                    elif isinstance(event, TextMessage) and not authed:
                        authed = await self._connect(stream, ws, json.loads(event.data))
                        if not authed:
                            nursery.cancel_scope.cancel()
                            return
                        conn_no, self.accepted = self.accepted, self.accepted + 1
                        if self.mute_after is not None:
                            muted_at = trio.current_time() + self.mute_after
                        nursery.start_soon(self._ticks, stream, ws, muted_at)
                        if self.server_ping_interval is not None:
                            nursery.start_soon(self._pings, stream, ws, muted_at, pong_seen)
                        for n, after, text in self.raw_frames:
                            if n == conn_no:
                                nursery.start_soon(self._raw, stream, ws, after, text)
                        for n, after, code, reason in self.live_closes:
                            if n == conn_no:
                                nursery.start_soon(
                                    self._live_close, stream, ws, after, code, reason
                                )
                        if self.shutdown_at is not None and trio.current_time() < self.shutdown_at:
                            nursery.start_soon(self._restart, stream, ws, self.shutdown_at)

    async def _connect(self, stream: trio.abc.Stream, ws: WSConnection, msg: Any) -> bool:
        """Validates a connect request as the gateway does. True: hello-ok."""
        if msg.get("type") != "req" or msg.get("method") != "connect":
            await stream.send_all(
                ws.send(CloseConnection(1008, "invalid handshake: first request must be connect"))
            )
            return False
        req_id = msg["id"]
        params = msg["params"]
        self.requests.append(params)
        client = params.get("client", {})
        closed_schema_ok = (
            set(params) <= CONNECT_KEYS
            and set(client) <= {"id", "version", "platform", "mode"}
            and client.get("id") in CLIENT_IDS
            and client.get("mode") in MODES
            and params.get("role") in ROLES
            and isinstance(params.get("scopes"), list)
        )
        if not closed_schema_ok:
            error: dict[str, Any] = {"code": "INVALID_REQUEST", "message": "invalid connect params"}
            await self._reject(stream, ws, req_id, error, 1008, "invalid connect params")
            return False
        # as the gateway answers: a generic error.code, the reason in details.code
        if not params["minProtocol"] <= self.protocol <= params["maxProtocol"]:
            error = {
                "code": "INVALID_REQUEST",
                "message": "protocol mismatch",
                "details": {
                    "code": "PROTOCOL_MISMATCH",
                    "clientMinProtocol": params["minProtocol"],
                    "clientMaxProtocol": params["maxProtocol"],
                    "expectedProtocol": self.protocol,
                },
            }
            await self._reject(stream, ws, req_id, error, 1002, "protocol mismatch")
            return False
        if params.get("auth", {}).get("token") != self.token:
            message = "unauthorized: gateway token mismatch"
            error = {
                "code": "INVALID_REQUEST",
                "message": message,
                "details": {
                    "code": "AUTH_TOKEN_MISMATCH",
                    "authReason": "token_mismatch",
                    "recommendedNextStep": "update_auth_configuration",
                },
            }
            await self._reject(stream, ws, req_id, error, 1008, message)
            return False
        if trio.current_time() < self.starting_until:
            error = {
                "code": "UNAVAILABLE",
                "message": "gateway starting",
                "details": {"reason": "startup-sidecars"},
                "retryable": True,
                "retryAfterMs": self.retry_after_ms,
            }
            await self._reject(stream, ws, req_id, error, 1013, "gateway starting")
            return False
        await trio.sleep(self.hello_delay)
        hello = {
            "type": "hello-ok",
            "protocol": self.protocol if self.hello_protocol is None else self.hello_protocol,
            "server": {"version": self.version, "connId": str(uuid.uuid4())},
            "policy": {
                "tickIntervalMs": int(self.tick_interval * 1000),
                "maxPayload": 26214400,
                "maxBufferedBytes": 52428800,
            },
        }
        await self._send(stream, ws, {"type": "res", "id": req_id, "ok": True, "payload": hello})
        await self._send(stream, ws, {"type": "event", "event": "health", "payload": {}, "seq": 1})
        return True

    async def _ticks(self, stream: trio.abc.Stream, ws: WSConnection, muted_at: float) -> None:
        # one global timer: ticks at every multiple of the interval since t=0
        seq = 2
        k = int(trio.current_time() // self.tick_interval) + 1
        while True:
            await trio.sleep_until(k * self.tick_interval + self.tick_delay.get(k, 0.0))
            k += 1
            if trio.current_time() >= muted_at:
                return
            tick = {"ts": int(trio.current_time() * 1000)}
            await self._send(
                stream, ws, {"type": "event", "event": "tick", "payload": tick, "seq": seq}
            )
            seq += 1

    async def _restart(self, stream: trio.abc.Stream, ws: WSConnection, when: float) -> None:
        await trio.sleep_until(when)
        notice = {"reason": "gateway restarting", "restartExpectedMs": self.restart_expected_ms}
        await self._send(stream, ws, {"type": "event", "event": "shutdown", "payload": notice})
        await stream.send_all(ws.send(CloseConnection(1012, "service restart")))

    async def _pings(
        self, stream: trio.abc.Stream, ws: WSConnection, muted_at: float, pong_seen: list[bool]
    ) -> None:
        """The gateway's keepalive: a timer per connection from hello-ok; at
        each tick a connection whose last ping is unanswered is terminated
        (no close frame), the others pinged."""
        assert self.server_ping_interval is not None
        while True:
            await trio.sleep(self.server_ping_interval)
            if not pong_seen[0]:
                self.terminated.append(trio.current_time())
                await stream.aclose()
                return
            if trio.current_time() >= muted_at:
                return
            pong_seen[0] = False
            await stream.send_all(ws.send(Ping(b"")))

    async def _raw(
        self, stream: trio.abc.Stream, ws: WSConnection, after: float, text: str
    ) -> None:
        await trio.sleep(after)
        await stream.send_all(ws.send(TextMessage(text)))

    async def _live_close(
        self, stream: trio.abc.Stream, ws: WSConnection, after: float, code: int, reason: str
    ) -> None:
        await trio.sleep(after)
        await stream.send_all(ws.send(CloseConnection(code, reason)))


def target(extra: str = "") -> str:
    return 'token_env = "OC_TOKEN"\n' + extra


async def run_oc(
    body: str,
    tmp_path: Path,
    server: FakeOpenClaw,
    *,
    token: str = TOKEN,
    extra: str = "",
) -> tuple[dict[str, Any], Runner]:
    profile = make_profile(
        body,
        results=tmp_path,
        protocol="openclaw",
        environ={"OC_TOKEN": token},
        target_extra=target(extra),
    )
    seen: list[Runner] = []

    async def grab(runner: Runner) -> None:
        seen.append(runner)

    def make(nursery: trio.Nursery) -> Opener:
        return serving(server.serve)(nursery)

    outcome, _ = await run_in_memory(profile, tmp_path, make, grab)
    return outcome.summary, seen[0]


async def test_handshake_ticks_pings_and_version(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeOpenClaw(tick_interval=2.0, hello_delay=0.25, server_ping_interval=3.0)
    extra = (
        '[target.openclaw]\nclient_id = "cli"\nmode = "cli"\n'
        'scopes = ["operator.read", "operator.write"]\n'
    )
    summary, runner = await run_oc(one_client(hold="9500ms"), tmp_path, server, extra=extra)
    (params,) = server.requests
    assert params == {
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {"id": "cli", "version": __version__, "platform": sys.platform, "mode": "cli"},
        "role": "operator",
        "scopes": ["operator.read", "operator.write"],
        "caps": [],
        "auth": {"token": TOKEN},
        "locale": "en-US",
        "userAgent": f"soak/{__version__}",
    }
    tot = summary["totals"]
    assert tot["connects"] == 1
    assert tot["handshake_failure_total"] == 0
    # the protocol handshake (hello-ok 0.25 s late) is part of connecting
    assert summary["latency_ms"]["connect"]["max"] == pytest.approx(250, rel=0.01)
    # our RFC 6455 pings on the aligned 1 s grid from 1 s (ready at 0.25 s)
    assert tot["pings"] == tot["pongs"] == 9
    assert tot["server_pings"] == 3  # at 3.25, 6.25 and 9.25 s, all answered
    assert tot["closes"] == {"client_shutdown": 1}
    assert tot["zombies"] == 0
    shared = runner.shared
    assert shared.gauges.server_version == "2026.9.6"
    state = shared.services.protocol_state
    assert isinstance(state, OpenClawState)
    assert state.ticks == 4  # the global timer: 2, 4, 6 and 8 s
    assert state.tick_gap.get_total_count() == 3
    assert state.tick_gap.get_min_value() == pytest.approx(2_000_000, rel=0.001)
    assert state.tick_gap.get_max_value() == pytest.approx(2_000_000, rel=0.001)
    assert state.tick_lateness.get_total_count() == 3
    assert state.tick_lateness.get_max_value() == 0  # exactly on the 2 s schedule
    # and in summary.json
    assert summary["protocol"]["name"] == "openclaw"
    assert summary["protocol"]["ticks"] == 4
    assert summary["protocol"]["clients_ticked"] == 1
    assert summary["protocol"]["tick_gap_ms"]["p50"] == pytest.approx(2000, rel=0.001)
    # the token never reaches the results
    (run_dir,) = tmp_path.iterdir()
    for path in run_dir.iterdir():
        assert TOKEN not in path.read_text(), path.name
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["profile"]["target"]["openclaw"]["client_id"] == "cli"


@pytest.mark.slow
async def test_tick_silence_closes_as_a_zombie(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # ticks every 1 s; 2.5 s after hello-ok the gateway stops sending anything
    server = FakeOpenClaw(tick_interval=1.0, mute_after=2.5)
    body = one_client(hold="6500ms", attempts=1).replace("max_missed = 3", "max_missed = 100")
    summary, _ = await run_oc(body, tmp_path, server)
    tot = summary["totals"]
    # the last frame (the tick of 2 s; pings go 1 ms early) came at 2 s:
    # silence for 2 x 1 s -> closed at 4 s
    (zombie,) = [e for e in events(tmp_path) if e.get("reason") == "client_zombie"]
    assert zombie["t"] == 4.0
    assert zombie["code"] == 4000
    assert zombie["text"] == "tick timeout"
    assert zombie["evidence"]["last_frame_age_s"] == 2.0
    assert tot["zombies"] == 1
    # back after the 1 s backoff at 5 s; the run ends at 6.5 s
    assert tot["connects"] == 2
    assert tot["closes"] == {"client_zombie": 1, "client_shutdown": 1}


async def test_wrong_token_backs_off_then_stops_for_good(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A wrong token is permanent: the client backs off as the policy says
    (1 s, 2 s), and after the third refusal in a row the run knows it and
    stops reconnecting, though max_attempts would allow more."""
    server = FakeOpenClaw()
    summary, runner = await run_oc(
        one_client(hold="60s", attempts=0), tmp_path, server, token="wrong"
    )
    tot = summary["totals"]
    assert tot["handshake_failures"] == {"auth": 3}
    assert tot["connects"] == 0
    assert tot["connect_attempts"] == 3
    assert tot["reconnect_failed"] == 1
    evs = events(tmp_path)
    fails = [e for e in evs if e["event"] == "handshake_failure"]
    assert [e["t"] for e in fails] == [0.0, 1.0, 3.0]  # the policy's 1 s, 2 s
    error = (
        "ws://127.0.0.1:9/ws: authentication failed (AUTH_TOKEN_MISMATCH): "
        "unauthorized: gateway token mismatch"
    )
    assert all(e["error"] == error and e["permanent"] for e in fails)
    (known,) = [e for e in evs if e["event"] == "permanent_failure"]
    assert (known["t"], known["cause"], known["error"], known["failures"]) == (
        3.0,
        "auth",
        error,
        3,
    )
    (gave_up,) = [e for e in evs if e["event"] == "reconnect_failed"]
    assert gave_up["permanent"] == error
    assert [(code, err) for _, code, err in server.rejections] == [
        (1008, "AUTH_TOKEN_MISMATCH")
    ] * 3
    assert tot["permanent_failure"] == {"cause": "auth", "error": error, "t": 3.0, "failures": 3}
    # the run says so: exit code 3 and one clear line
    assert summary["exit_code"] == 3
    assert summary["verdict"] == (
        f"the target refused every connection: {error} (permanent: refused 3 times in a row, "
        "so no client tries again)"
    )
    assert runner.shared.gauges.server_version is None
    # and it ends at the next interval boundary, not after the 60 s schedule
    (ended,) = [e for e in evs if e["event"] == "run_ended_early"]
    assert ended["why"] == f"every client stopped after a permanent refusal: {error}"
    assert summary["duration_s"] == 10.0


async def test_wrong_token_with_many_clients_is_no_storm(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """100 clients with a wrong token, 8 handshakes in flight: only the
    first wave reaches the gateway's auth limiter, nobody tries again."""
    body = (
        one_client(hold="60s", attempts=0)
        .replace("to = 1", "to = 100")
        .replace("[clients]", "[clients]\nmax_connecting = 8")
    )
    server = FakeOpenClaw()
    summary, _ = await run_oc(body, tmp_path, server, token="wrong")
    tot = summary["totals"]
    # every client queued for a slot; only the first wave got one
    assert tot["connect_attempts"] == 100
    assert len(server.rejections) == 8
    assert tot["handshake_failures"] == {"auth": 8}
    assert tot["reconnect_failed"] == 100  # every client stopped
    assert tot["connects"] == 0
    assert summary["exit_code"] == 3
    assert "AUTH_TOKEN_MISMATCH" in summary["verdict"]


async def test_refusals_before_a_success_are_not_permanent(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The latch needs three refusals in a row: two wrong-token answers and
    then a success (the gateway's token was being rotated) keep going."""
    server = FakeOpenClaw(token="rotated")

    async def rotate(runner: Runner) -> None:
        await trio.sleep(2.0)  # after the refusals of 0 and 1 s
        server.token = TOKEN

    profile = make_profile(
        one_client(hold="5s", attempts=0),
        results=tmp_path,
        protocol="openclaw",
        environ={"OC_TOKEN": TOKEN},
        target_extra=target(),
    )
    outcome, _ = await run_in_memory(profile, tmp_path, serving(server.serve), rotate)
    tot = outcome.summary["totals"]
    assert tot["handshake_failures"] == {"auth": 2}
    assert tot["connects"] == 1  # at 3 s
    assert "permanent_failure" not in tot
    # not a permanent refusal (exit 3); but connected for 2 s of 5, the run
    # did not hold its load (the default availability check, issue 23)
    assert outcome.exit_code == 1
    assert outcome.summary["verdict"].startswith(
        "the planned load was not held: availability 40.00% (at least 90%)"
    )


async def test_old_protocol_is_a_permanent_protocol_failure(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeOpenClaw(protocol=5)  # a gateway newer than we speak
    summary, _ = await run_oc(one_client(hold="10s", attempts=0), tmp_path, server)
    tot = summary["totals"]
    assert tot["handshake_failures"] == {"protocol": 3}
    (first, *_) = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert first["t"] == 0.0
    assert first["cause"] == "protocol"
    assert first["error"] == (
        "ws://127.0.0.1:9/ws: protocol version not accepted (PROTOCOL_MISMATCH): "
        "protocol mismatch (soak speaks OpenClaw protocol 4)"
    )
    assert server.rejections[0][1:] == (1002, "PROTOCOL_MISMATCH")
    assert summary["exit_code"] == 3
    assert "PROTOCOL_MISMATCH" in summary["verdict"]


async def test_hello_ok_with_an_unknown_protocol_version(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A gateway that accepts connect but names another protocol in
    hello-ok: a clear, permanent protocol failure."""
    server = FakeOpenClaw(hello_protocol=7)
    summary, _ = await run_oc(one_client(hold="10s", attempts=0), tmp_path, server)
    tot = summary["totals"]
    assert tot["handshake_failures"] == {"protocol": 3}
    assert tot["connects"] == 0
    (first, *_) = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert first["error"] == (
        "ws://127.0.0.1:9/ws: the gateway speaks OpenClaw protocol 7; soak speaks protocol 4"
    )
    assert summary["exit_code"] == 3


async def test_gateway_starting_honours_retry_after(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # UNAVAILABLE until 3 s, retryAfterMs 2500: the 1 s and 2 s of the
    # policy are raised to 2.5 s each, so the tries are at 0, 2.5 and 5 s
    server = FakeOpenClaw(starting_until=3.0, retry_after_ms=2500, tick_interval=30.0)
    summary, _ = await run_oc(floor(one_client(hold="8s")), tmp_path, server)
    tot = summary["totals"]
    assert tot["handshake_failures"] == {"unavailable": 2}
    fails = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert [e["t"] for e in fails] == [0.0, 2.5]
    assert "gateway unavailable (UNAVAILABLE)" in fails[0]["error"]
    assert [r[1:] for r in server.rejections] == [(1013, "UNAVAILABLE")] * 2
    assert tot["connects"] == 1
    assert summary["latency_ms"]["connect"]["count"] == 1


async def test_connect_timeout_covers_the_protocol_handshake(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeOpenClaw(hello_delay=5.0)
    summary, _ = await run_oc(
        one_client(hold="3s", attempts=0), tmp_path, server, extra='connect_timeout = "2s"\n'
    )
    fails = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert fails[0]["t"] == 2.0
    assert fails[0]["cause"] == "timeout"
    assert summary["totals"]["connects"] == 0


def test_openclaw_table_is_validated() -> None:
    base = one_client()
    with pytest.raises(ProfileError, match=r"target\.openclaw\.mode: expected one of"):
        make_profile(base, protocol="openclaw", target_extra='[target.openclaw]\nmode = "bot"\n')
    with pytest.raises(ProfileError, match=r'only used with protocol = "openclaw"'):
        make_profile(base, protocol="json", target_extra="[target.openclaw]\n")
    p = make_profile(base, protocol="openclaw")
    assert p.target.openclaw is None
    # the gateway's pre-auth budget is the default handshake cap; a profile
    # may still set its own (several source addresses, a raised budget)
    assert p.clients.max_connecting == OPENCLAW_PREAUTH_BUDGET == 32
    assert make_profile(base).clients.max_connecting == 256
    own = make_profile(
        base.replace("[clients]", "[clients]\nmax_connecting = 64"), protocol="openclaw"
    )
    assert own.clients.max_connecting == 64
    # spread over several source addresses, the default budget grows with them
    spread = make_profile(
        base, protocol="openclaw", target_extra='source_ips = "127.0.0.1-127.0.0.4"\n'
    )
    assert spread.clients.max_connecting == 4 * 32
    assert override(p, source_ip="127.0.0.1-127.0.0.2").clients.max_connecting == 2 * 32
    assert override(own, source_ip="127.0.0.1-127.0.0.2").clients.max_connecting == 64
    assert "openclaw" not in p.redacted()["target"]
    # without a table or a token: the documented defaults, no auth
    state = OpenClaw.shared_state(p.target)
    assert state.config == OpenClawConfig()
    request = json.loads(OpenClaw("c1", state).connect_request("r1"))
    assert request["params"]["client"]["id"] == "gateway-client"
    assert "auth" not in request["params"]


@pytest.mark.slow
async def test_tick_gap_and_lateness(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # ticks due at 2, 4, 6, 8 s; the one of 6 s leaves 0.5 s late
    server = FakeOpenClaw(tick_interval=2.0, tick_delay={3: 0.5})
    _, runner = await run_oc(one_client(hold="9500ms"), tmp_path, server)
    state = runner.shared.services.protocol_state
    assert isinstance(state, OpenClawState)
    assert state.ticks == 4
    gaps = sorted(v.value_iterated_to for v in state.tick_gap.get_recorded_iterator())
    assert gaps == pytest.approx([1_500_000, 2_000_000, 2_500_000], rel=0.001)
    late = [
        (v.value_iterated_to, v.count_at_value_iterated_to)
        for v in state.tick_lateness.get_recorded_iterator()
    ]
    assert late[0] == (0, 2)  # the ticks of 4 and 8 s were on schedule
    assert late[1][0] == pytest.approx(500_000, rel=0.001)


async def test_restart_honours_restart_expected(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # at 3 s: shutdown with restartExpectedMs 1500, then close 1012; the
    # policy's first delay (1 s) is raised to 1.5 s
    server = FakeOpenClaw(shutdown_at=3.0, restart_expected_ms=1500)
    summary, _ = await run_oc(floor(one_client(hold="6s")), tmp_path, server)
    tot = summary["totals"]
    assert tot["closes"] == {"server_1012_restart": 1, "client_shutdown": 1}
    (restart,) = [e for e in events(tmp_path) if e.get("code") == 1012]
    assert restart["t"] == 3.0
    assert restart["text"] == "service restart"
    # announced: the shutdown event's payload is the why
    assert restart["why"] == (
        "after a shutdown event: reason gateway restarting, restartExpectedMs 1500"
    )
    assert tot["reconnects"] == 1
    assert summary["latency_ms"]["reconnect"]["max"] == pytest.approx(1500, rel=0.001)


async def test_close_during_the_handshake_is_a_failure(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A gateway that sends the challenge, then closes 1013 with a JSON
    reason carrying retryAfterMs: the close is the cause, the hint a floor."""

    async def closing(stream: trio.abc.Stream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(bytes(await stream.receive_some(65536)))
        await stream.send_all(ws.send(AcceptConnection()))
        challenge = {"type": "event", "event": "connect.challenge", "payload": {"nonce": "n"}}
        await stream.send_all(ws.send(TextMessage(json.dumps(challenge))))
        await trio.sleep(0.5)
        reason = '{"retryAfterMs":3000}'
        await stream.send_all(ws.send(CloseConnection(1013, reason)))
        await trio.sleep_forever()

    profile = make_profile(
        floor(one_client(hold="5s", attempts=1)), results=tmp_path, protocol="openclaw"
    )
    outcome, _ = await run_in_memory(profile, tmp_path, serving(closing))
    fails = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert [(e["t"], e["cause"]) for e in fails] == [(0.5, "close_1013"), (4.0, "close_1013")]
    assert fails[0]["error"] == (
        'ws://127.0.0.1:9/ws: closed with 1013 "{"retryAfterMs":3000}" during the handshake'
    )
    assert outcome.summary["totals"]["connects"] == 0


TWO_CLIENTS_HOLD = "6s"


def two_clients(extra_run: str = "") -> str:
    return one_client(hold=TWO_CLIENTS_HOLD, attempts=0, run_extra=extra_run).replace(
        "to = 1", "to = 2"
    )


@pytest.mark.parametrize(
    ("text", "code", "error"),
    [
        ("{not json", 1002, "malformed frame (not JSON): '{not json'"),
        ("[1, 2]", 1002, "malformed frame (not a JSON object): '[1, 2]'"),
        ('{"type":"bogus"}', 1002, "malformed frame (type 'bogus' is not event, res or req)"),
        ('{"type":"event","payload":{}}', 1002, "malformed frame (an event without an event name)"),
        ('{"type":"res","id":"x"}', 1002, "malformed frame (a res without ok)"),
        ("x" * 4097, 1009, "frame of 4097 characters exceeds max_frame (4096)"),
    ],
)
@pytest.mark.slow
async def test_a_bad_frame_is_a_protocol_error_on_that_connection_only(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, text: str, code: int, error: str
) -> None:
    # the first connection gets the bad frame 2.5 s after hello-ok; the
    # second is untouched; the first reconnects after the 1 s backoff
    server = FakeOpenClaw(tick_interval=1.0, raw_frames=[(0, 2.5, text)])
    summary, _ = await run_oc(
        two_clients(), tmp_path, server, extra="[target.openclaw]\nmax_frame = 4096\n"
    )
    tot = summary["totals"]
    assert tot["closes"] == {"client_protocol_error": 1, "client_shutdown": 2}
    assert tot["closes_by_code"][str(code)] == 1
    assert tot["connects"] == 3
    assert tot["reconnects"] == 1
    assert summary["protocol"]["protocol_errors"] == 1
    evs = events(tmp_path)
    (bad,) = [e for e in evs if e["event"] == "protocol_error"]
    assert bad["t"] == 2.5
    assert bad["error"] == error
    (closed,) = [e for e in evs if e.get("reason") == "client_protocol_error"]
    assert (closed["client"], closed["code"]) == (bad["client"], code)
    # the other client's connection lived the whole run
    other = [e for e in evs if e["event"] == "close" and e["client"] != bad["client"]]
    assert [e["reason"] for e in other] == ["client_shutdown"]
    assert other[0]["evidence"]["age_s"] == 6.0
    # both heard every tick of their connections (the run ends at 6 s): the
    # first at 1, 2 and, back at 3.5 s, at 4 and 5 s; the second at 1..5 s
    assert summary["protocol"]["ticks"] == 4 + 5
    assert summary["protocol"]["clients_ticked"] == 2


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{oops", "malformed frame (not JSON): '{oops' in the handshake"),
        ('{"type":"event"}', "malformed frame (an event without an event name) in the handshake"),
    ],
)
async def test_a_bad_frame_in_the_handshake_is_a_protocol_failure(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, text: str, error: str
) -> None:
    async def bad_challenge(stream: trio.abc.Stream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(bytes(await stream.receive_some(65536)))
        await stream.send_all(ws.send(AcceptConnection()))
        await stream.send_all(ws.send(TextMessage(text)))
        await trio.sleep_forever()

    profile = make_profile(one_client(hold="2s", attempts=1), results=tmp_path, protocol="openclaw")
    outcome, _ = await run_in_memory(profile, tmp_path, serving(bad_challenge))
    fails = [e for e in events(tmp_path) if e["event"] == "handshake_failure"]
    assert [(e["t"], e["cause"]) for e in fails] == [(0.0, "protocol"), (1.0, "protocol")]
    assert fails[0]["error"] == f"ws://127.0.0.1:9/ws: {error}"
    assert "permanent" not in fails[0]  # a broken frame is not the gateway's final word
    assert outcome.summary["totals"]["connects"] == 0


@pytest.mark.slow
async def test_live_closes_are_told_apart(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """1008 slow consumer or auth, 1002 protocol mismatch, 1013 gateway
    starting and an unannounced 1012: one each, on four connections."""
    closes = [
        (0, 1.0, 1008, "slow consumer"),
        (1, 1.0, 1008, "unauthorized: gateway token mismatch"),
        (2, 1.0, 1002, "protocol mismatch"),
        (3, 1.0, 1013, "gateway starting"),
        (4, 1.0, 1012, "service restart"),
    ]
    server = FakeOpenClaw(live_closes=closes)
    body = one_client(hold="3s", attempts=0).replace("to = 1", "to = 5")
    summary, _ = await run_oc(body, tmp_path, server)
    tot = summary["totals"]
    assert tot["closes"] == {
        "server_1008_slow_consumer": 1,
        "server_1008_auth": 1,
        "server_1002_protocol_mismatch": 1,
        "server_1013_try_again_later": 1,
        "server_1012_service_restart": 1,
        "client_shutdown": 5,
    }
    whys = {e["reason"]: e.get("why") for e in events(tmp_path) if e["event"] == "close"}
    assert whys["server_1012_service_restart"] == "no shutdown event before it"
    assert whys["server_1013_try_again_later"] == "gateway starting"


@pytest.mark.slow
async def test_heartbeat_timeout_signature_from_the_protocol_defaults(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """No [target.server_heartbeat]: protocol = "openclaw" brings the
    gateway's own. A gateway that no longer sees our pongs (overloaded)
    terminates us at 50 s with no close frame, while our own pings and its
    ticks show we were alive: a false timeout."""
    server = FakeOpenClaw(tick_interval=30.0, server_ping_interval=25.0, ignore_pongs=True)
    body = one_client(hold="60s", attempts=0).replace('interval = "1s"', 'interval = "10s"')
    summary, _ = await run_oc(body, tmp_path, server)
    assert server.terminated == [50.0]
    tot = summary["totals"]
    assert tot["false_timeouts"] == 1
    assert tot["closes"]["false_timeout"] == 1
    (ft,) = [e for e in events(tmp_path) if e.get("reason") == "false_timeout"]
    assert ft["t"] == 50.0
    assert ft["category"] == "heartbeat_timeout"
    assert ft["transport"] == "eof"
    assert "last pong" in ft["why"]


@pytest.mark.slow
async def test_abrupt_end_off_the_ping_timer_is_transport(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """An abrupt end at 40 s is not on the gateway's 25 s timer: a plain
    transport loss, not a heartbeat timeout."""

    server = FakeOpenClaw(tick_interval=30.0)

    async def cut(stream: trio.abc.Stream) -> None:
        with trio.move_on_after(40.0):
            await server.serve(stream)
        await stream.aclose()

    profile = make_profile(
        one_client(hold="45s", attempts=0).replace('interval = "1s"', 'interval = "10s"'),
        results=tmp_path,
        protocol="openclaw",
        environ={"OC_TOKEN": TOKEN},
        target_extra=target(),
    )
    outcome, _ = await run_in_memory(profile, tmp_path, serving(cut))
    tot = outcome.summary["totals"]
    assert tot["closes"]["transport_eof"] == 1
    assert tot["false_timeouts"] == tot["justified_timeouts"] == 0
