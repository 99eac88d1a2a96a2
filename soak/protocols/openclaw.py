"""The OpenClaw Gateway protocol (protocol version 4), as described in
docs/openclaw.md.

After the upgrade the server speaks first::

    <- {"type":"event","event":"connect.challenge","payload":{"nonce":...,"ts":...}}
    -> {"type":"req","id":"<uuid>","method":"connect","params":{...,"auth":{"token":...}}}
    <- {"type":"res","id":"<uuid>","ok":true,"payload":{"type":"hello-ok",...}}

A ``res`` with ``ok: false`` is a handshake failure whose cause says why
(``auth``, ``protocol``, ``unavailable``, ``rejected``); its ``retryAfterMs``
becomes the backoff's floor. The gateway puts the precise reason in
``error.details.code`` (``AUTH_TOKEN_MISMATCH``, ``PROTOCOL_MISMATCH``) under
a generic ``error.code`` (``INVALID_REQUEST``). The reasons its own client
treats as non-recoverable are permanent here too: the run stops reconnecting
once they are known (:class:`soak.backoff.Permanence`).

Every frame is checked against the protocol's shape (a JSON object whose
``type`` is ``event``, ``res`` or ``req``) and against a size cap
(``[target.openclaw] max_frame``): one that fails is a protocol error on
that connection only (the client closes it, 1002 or 1009, and reconnects).

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
from soak.classify import CloseInfo, Verdict, openclaw_verdict
from soak.config.openclaw import OpenClawConfig
from soak.config.target import TargetConfig
from soak.errors import HandshakeError, ProtocolError
from soak.metrics import new_histogram, percentiles_ms
from soak.protocols.base import HandshakeIO
from soak.protocols.sniff import sniff
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
        self.protocol_errors = 0  # malformed or oversized frames, live connections
        self.ticked: set[str] = set()  # the clients that got at least one tick
        self.max_frame = cfg.max_frame
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
            "clients_ticked": len(self.ticked),
            "protocol_errors": self.protocol_errors,
            "tick_gap_ms": percentiles_ms(self.tick_gap),
            "tick_lateness_ms": percentiles_ms(self.tick_lateness),
        }


def _record(hist: HdrHistogram, seconds: float) -> None:
    hist.record_value(int(seconds * 1_000_000 + 0.5) if seconds > 0 else 0)


# what the gateway's own client treats as non-recoverable (plus a wrong
# token and an unknown protocol version, terminal for a tester): trying again
# cannot help. AUTH_RATE_LIMITED is left out: it says when to come back.
PERMANENT_CODES = frozenset(
    {
        "AUTH_TOKEN_MISSING",
        "AUTH_TOKEN_MISMATCH",
        "AUTH_TOKEN_NOT_CONFIGURED",
        "AUTH_BOOTSTRAP_TOKEN_INVALID",
        "AUTH_PASSWORD_MISSING",
        "AUTH_PASSWORD_MISMATCH",
        "AUTH_PASSWORD_NOT_CONFIGURED",
        "AUTH_DEVICE_TOKEN_MISMATCH",
        "AUTH_SCOPE_MISMATCH",
        "AUTH_IDENTITY_HEADER_REQUIRED",
        "AUTH_VERIFIED_USER_REQUIRED",
        "PAIRING_REQUIRED",
        "DEVICE_IDENTITY_REQUIRED",
        "PROTOCOL_MISMATCH",
        "CLIENT_VERSION_MISMATCH",
    }
)


def _cause(code: str) -> str:
    if code.startswith("AUTH_") or code in ("PAIRING_REQUIRED", "DEVICE_IDENTITY_REQUIRED"):
        return "auth"
    if code in ("PROTOCOL_MISMATCH", "CLIENT_VERSION_MISMATCH"):
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


def _error_code(error: dict[str, Any]) -> str:
    """The precise reason: ``details.code`` when there is one (the gateway
    answers a wrong token with INVALID_REQUEST / AUTH_TOKEN_MISMATCH)."""
    details = error.get("details")
    if isinstance(details, dict) and isinstance(details.get("code"), str) and details["code"]:
        return str(details["code"])
    return str(error.get("code") or "UNKNOWN")


def refusal(error: dict[str, Any], url: str) -> HandshakeError:
    """The HandshakeError for a ``connect`` answered with ``ok: false``."""
    code = _error_code(error)
    cause = _cause(code)
    text = f"{url}: {_WHAT[cause]} ({code})"
    if error.get("message"):
        text += f": {error['message']}"
    if cause == "protocol":
        text += f" (soak speaks OpenClaw protocol {PROTOCOL_VERSION})"
    retry_after = _retry_after(error)
    permanent = code in PERMANENT_CODES and error.get("retryable") is not True
    return HandshakeError(cause, text, retry_after=retry_after, permanent=permanent)


def _retry_after(error: dict[str, Any]) -> float | None:
    ms = error.get("retryAfterMs")
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms):
        return None
    return max(0.0, float(ms) / 1000.0)


FRAME_TYPES = ("event", "res", "req")


def frame(text: str, max_frame: int) -> dict[str, Any]:
    """A frame as the protocol defines it, or ValueError saying what is
    wrong with it (too large, not JSON, not an object, an unknown type or a
    missing field). Pure."""
    if len(text) > max_frame:
        raise ValueError(f"frame of {len(text)} characters exceeds max_frame ({max_frame})")
    try:
        obj = json.loads(text)
    except ValueError:
        raise ValueError(f"malformed frame (not JSON): {_excerpt(text)}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"malformed frame (not a JSON object): {_excerpt(text)}")
    kind = obj.get("type")
    if kind not in FRAME_TYPES:
        raise ValueError(f"malformed frame (type {kind!r} is not event, res or req)")
    if kind == "event" and not isinstance(obj.get("event"), str):
        raise ValueError("malformed frame (an event without an event name)")
    if kind in ("res", "req") and not isinstance(obj.get("id"), str):
        raise ValueError(f"malformed frame (a {kind} without an id)")
    if kind == "res" and not isinstance(obj.get("ok"), bool):
        raise ValueError("malformed frame (a res without ok)")
    return obj


def _excerpt(text: str) -> str:
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


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
        self.shutdown_notice: dict[str, Any] | None = None  # its payload

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
        self.shutdown_notice = None
        cap = self.state.max_frame
        while True:  # the server speaks first
            msg = _parse(await io.receive_text(), url, cap)
            if msg.get("type") == "event" and msg.get("event") == "connect.challenge":
                break
        request_id = str(uuid.uuid4())
        await io.send_text(self.connect_request(request_id))
        while True:
            msg = _parse(await io.receive_text(), url, cap)
            if msg.get("type") == "res" and msg.get("id") == request_id:
                break
        if msg.get("ok") is not True:
            error = msg.get("error")
            raise refusal(error if isinstance(error, dict) else {}, url)
        payload = msg.get("payload")
        if not isinstance(payload, dict) or payload.get("type") != "hello-ok":
            raise HandshakeError("protocol", f"{url}: connect answered without hello-ok")
        version = payload.get("protocol")
        if version != PROTOCOL_VERSION or isinstance(version, bool):
            raise HandshakeError(
                "protocol",
                f"{url}: the gateway speaks OpenClaw protocol {version!r}; "
                f"soak speaks protocol {PROTOCOL_VERSION}",
                permanent=True,
            )
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
        # RTT comes from RFC 6455 pongs; text frames carry ticks, the
        # shutdown notice and other events. Each is checked: a bad one is a
        # protocol error on this connection (the client closes it).
        try:
            obj = frame(text, self.state.max_frame)
        except ValueError as exc:
            self.state.protocol_errors += 1
            code = 1009 if len(text) > self.state.max_frame else 1002
            raise ProtocolError(str(exc), close_code=code) from None
        if obj["type"] != "event":
            return None
        event = obj["event"]
        if event == "tick":
            self.on_tick(trio.current_time())
        elif event == "shutdown":
            payload = obj.get("payload")
            ms = payload.get("restartExpectedMs") if isinstance(payload, dict) else None
            if isinstance(ms, int | float) and not isinstance(ms, bool) and math.isfinite(ms):
                self.restart_expected = max(0.0, float(ms) / 1000.0)
            self.shutdown_notice = payload if isinstance(payload, dict) else {}
        return None

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        return openclaw_verdict(verdict, info, self.shutdown_notice)

    def close_hint(self) -> float | None:
        hint, self.restart_expected = self.restart_expected, None
        return hint

    def on_tick(self, now: float) -> None:
        state = self.state
        state.ticks += 1
        first = self.first_tick_at
        if first is None:
            state.ticked.add(self.client_id)
            self.first_tick_at = now  # the global timer's offset: 0 to 1 interval
        else:
            assert self.last_tick_at is not None
            _record(state.tick_gap, now - self.last_tick_at)
            if self.tick_interval is not None:
                expected = first + self.ticks_seen * self.tick_interval
                _record(state.tick_lateness, now - expected)
        self.ticks_seen += 1
        self.last_tick_at = now


def _parse(text: str, url: str, max_frame: int) -> dict[str, Any]:
    try:
        return frame(text, max_frame)
    except ValueError as exc:
        seen = sniff(text, "openclaw")  # another dialect's greeting says more than "malformed"
        if seen is not None:
            raise HandshakeError("protocol", f"{url}: {seen.explain('openclaw')}") from None
        raise HandshakeError("protocol", f"{url}: {exc} in the handshake") from None
