"""The OpenClaw Gateway protocol (protocol version 4), as described in
OPENCLAW.md.

After the upgrade the server speaks first::

    <- {"type":"event","event":"connect.challenge","payload":{"nonce":...,"ts":...}}
    -> {"type":"req","id":"<uuid>","method":"connect","params":{...,"auth":{"token":...}}}
    <- {"type":"res","id":"<uuid>","ok":true,"payload":{"type":"hello-ok",...}}

A ``res`` with ``ok: false`` is a handshake failure whose cause says why
(``auth``, ``protocol``, ``unavailable``, ``rejected``); its ``retryAfterMs``
becomes the backoff's floor.

Heartbeats are our own RFC 6455 pings carrying the seq (as ``ws-ping``),
for the RTT. The server's application ticks (every ``policy.tickIntervalMs``)
are counted and their gaps recorded; like the official client, a connection
with no inbound frame for ``2 x tickIntervalMs`` is closed as a zombie
(4000 "tick timeout", by the client).
"""

from __future__ import annotations

import json
import math
import sys
import uuid
from typing import Any, ClassVar

import trio
from hdrh.histogram import HdrHistogram

from soak import __version__
from soak.errors import HandshakeError
from soak.metrics import new_histogram, percentiles_ms
from soak.profile import OpenClawConfig, TargetConfig
from soak.protocols.base import HandshakeIO
from soak.protocols.ws_ping import WsPing

PROTOCOL_VERSION = 4
# the close the official client sends after 2 x tickIntervalMs of silence
TICK_TIMEOUT_CODE = 4000
TICK_TIMEOUT_REASON = "tick timeout"


class OpenClawState:
    """Run-wide: the connect request's fixed parts, and the ticks of every
    client: ``ticks`` (a count), ``tick_gap`` (time since the previous tick
    on the same connection) and ``tick_lateness`` (arrival against the
    schedule: the first tick of a connection, then every tickIntervalMs),
    HdrHistograms in microseconds."""

    def __init__(self, target: TargetConfig) -> None:
        cfg = target.openclaw or OpenClawConfig()
        self.config = cfg
        self.token = None if target.token is None else target.token.value
        self.ticks = 0
        self.tick_gap: HdrHistogram = new_histogram()
        self.tick_lateness: HdrHistogram = new_histogram()
        # the connect request's params: the same for every client of the run
        params: dict[str, Any] = {
            "minProtocol": PROTOCOL_VERSION,
            "maxProtocol": PROTOCOL_VERSION,
            "client": {
                "id": cfg.client_id,
                "version": __version__,
                "platform": sys.platform,
                "mode": cfg.mode,
            },
            "role": cfg.role,
            "scopes": list(cfg.scopes),
            "caps": [],
        }
        if self.token is not None:
            params["auth"] = {"token": self.token}
        params["locale"] = "en-US"
        params["userAgent"] = f"soak/{__version__}"
        self.params = params

    def summary(self) -> dict[str, Any]:
        """For summary.json: the ticks every client saw, in milliseconds."""
        return {
            "ticks": self.ticks,
            "tick_gap_ms": percentiles_ms(self.tick_gap),
            "tick_lateness_ms": percentiles_ms(self.tick_lateness),
        }


def _record(hist: HdrHistogram, seconds: float) -> None:
    hist.record_value(int(seconds * 1_000_000 + 0.5) if seconds > 0 else 0)


def _cause(code: str) -> str:
    if code.startswith("AUTH_"):
        return "auth"
    if code == "PROTOCOL_MISMATCH":
        return "protocol"
    if code == "UNAVAILABLE":
        return "unavailable"
    return "rejected"


_WHAT = {
    "auth": "authentication failed",
    "protocol": "protocol version not accepted",
    "unavailable": "gateway unavailable",
    "rejected": "connect rejected",
}


def _retry_after(error: dict[str, Any]) -> float | None:
    ms = error.get("retryAfterMs")
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms):
        return None
    return max(0.0, float(ms) / 1000.0)


class OpenClaw(WsPing):
    name: ClassVar[str] = "openclaw"
    has_handshake: ClassVar[bool] = True

    def __init__(self, client_id: str, state: Any = None) -> None:
        super().__init__(client_id, state)
        if not isinstance(state, OpenClawState):
            state = OpenClawState(TargetConfig())
        self.state: OpenClawState = state
        self.tick_interval: float | None = None  # policy.tickIntervalMs, seconds
        self.last_tick_at: float | None = None
        self.first_tick_at: float | None = None  # this connection's tick schedule
        self.ticks_seen = 0  # on this connection
        self.restart_expected: float | None = None  # from a shutdown event, seconds

    @classmethod
    def shared_state(cls, target: Any) -> OpenClawState:
        return OpenClawState(target)

    def connect_request(self, request_id: str) -> str:
        return json.dumps(
            {
                "type": "req",
                "id": request_id,
                "method": "connect",
                "params": self.state.params,
            },
            separators=(",", ":"),
        )

    async def handshake(self, io: HandshakeIO) -> None:
        url = io.url
        self.last_tick_at = self.first_tick_at = None
        self.ticks_seen = 0
        self.restart_expected = None
        while True:  # the server speaks first
            msg = _parse(await io.receive_text(), url)
            if msg.get("type") == "event" and msg.get("event") == "connect.challenge":
                break
        request_id = str(uuid.uuid4())
        await io.send_text(self.connect_request(request_id))
        while True:
            msg = _parse(await io.receive_text(), url)
            if msg.get("type") == "res" and msg.get("id") == request_id:
                break
        if msg.get("ok") is not True:
            error = msg.get("error")
            if not isinstance(error, dict):
                error = {}
            code = str(error.get("code") or "UNKNOWN")
            cause = _cause(code)
            text = f"{url}: {_WHAT[cause]} ({code})"
            if error.get("message"):
                text += f": {error['message']}"
            raise HandshakeError(cause, text, retry_after=_retry_after(error))
        payload = msg.get("payload")
        if not isinstance(payload, dict) or payload.get("type") != "hello-ok":
            raise HandshakeError("protocol", f"{url}: connect answered without hello-ok")
        server = payload.get("server")
        if isinstance(server, dict) and isinstance(server.get("version"), str):
            self.server_version = server["version"]
        policy = payload.get("policy")
        tick_ms = policy.get("tickIntervalMs") if isinstance(policy, dict) else None
        if isinstance(tick_ms, int | float) and not isinstance(tick_ms, bool) and tick_ms > 0:
            self.tick_interval = float(tick_ms) / 1000.0
            self.silence_timeout = 2 * self.tick_interval
        else:
            self.tick_interval = None
            self.silence_timeout = None

    def pong_text(self, text: str) -> int | None:
        # RTT comes from RFC 6455 pongs; text frames only carry ticks and the
        # shutdown notice here. Cheap pre-check: only those are parsed.
        if '"tick"' not in text and '"shutdown"' not in text:
            return None
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if not isinstance(obj, dict) or obj.get("type") != "event":
            return None
        event = obj.get("event")
        if event == "tick":
            self.on_tick(trio.current_time())
        elif event == "shutdown":
            payload = obj.get("payload")
            ms = payload.get("restartExpectedMs") if isinstance(payload, dict) else None
            if isinstance(ms, int | float) and not isinstance(ms, bool) and math.isfinite(ms):
                self.restart_expected = max(0.0, float(ms) / 1000.0)
        return None

    def close_hint(self) -> float | None:
        hint, self.restart_expected = self.restart_expected, None
        return hint

    def on_tick(self, now: float) -> None:
        state = self.state
        state.ticks += 1
        first = self.first_tick_at
        if first is None:
            self.first_tick_at = now  # the global timer's offset: 0 to 1 interval
        else:
            assert self.last_tick_at is not None
            _record(state.tick_gap, now - self.last_tick_at)
            if self.tick_interval is not None:
                expected = first + self.ticks_seen * self.tick_interval
                _record(state.tick_lateness, now - expected)
        self.ticks_seen += 1
        self.last_tick_at = now


def _parse(text: str, url: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise HandshakeError("protocol", f"{url}: malformed frame in the handshake") from exc
    if not isinstance(obj, dict):
        raise HandshakeError("protocol", f"{url}: malformed frame in the handshake")
    return obj
