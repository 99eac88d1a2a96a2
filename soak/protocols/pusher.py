"""The Pusher Channels protocol, version 7 (Pusher, soketi, Laravel Reverb),
as described in docs/dialects/pusher.md. Built from the protocol document
and its wire examples; no Pusher-compatible server is installable here, the
tests use a faithful fake (tests/support/fakes/pusher.py).

The URL is ``ws://HOST/app/KEY``; soak adds ``protocol=7`` (and its client
name and version) to the query. The server speaks first::

    <- {"event":"pusher:connection_established",
        "data":"{\\"socket_id\\":\\"123.456\\",\\"activity_timeout\\":120}"}
    <- {"event":"pusher:error","data":{"code":4001,"message":"..."}}  # a refusal

``data`` is a JSON string there. Heartbeats go either way, the answer has
no id (the oldest outstanding one is answered, one in flight)::

    -> {"event":"pusher:ping","data":{}}
    <- {"event":"pusher:pong","data":{}}

Close codes say what the client should do (:func:`close_action`):
4000-4099 never reconnect (a refusal with one is permanent), 4100-4199
reconnect after a backoff, 4200-4299 reconnect at once; 4201 is the
server's pong timeout, judged by :func:`pong_verdict`.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import trio

import soak
from soak.classify import (
    ABRUPT_SLACK,
    CATEGORY_HEARTBEAT,
    CATEGORY_SERVER,
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    SERVER,
    CloseInfo,
    Evidence,
    Verdict,
)
from soak.config.pusher import PONG_TIMEOUT_CLOSE, PusherConfig
from soak.config.target import TargetConfig
from soak.errors import HandshakeError
from soak.protocols.base import OLDEST, SERVER_PING, Frame, HandshakeIO, HeartbeatProtocol
from soak.protocols.sniff import sniff
from soak.wsframe import OP_TEXT

PROTOCOL_VERSION = "7"
PING = '{"event":"pusher:ping","data":{}}'
PONG = '{"event":"pusher:pong","data":{}}'
ESTABLISHED = "pusher:connection_established"
# the protocol document's close codes
CLOSE_NAMES = {
    4000: "ssl_only",
    4001: "app_does_not_exist",
    4003: "app_disabled",
    4004: "over_connection_quota",
    4005: "path_not_found",
    4006: "invalid_version_string",
    4007: "unsupported_protocol_version",
    4008: "no_protocol_version",
    4009: "unauthorized",
    4100: "over_capacity",
    4200: "generic_reconnect",
    4201: "pong_not_received",
    4202: "closed_after_inactivity",
}


def close_action(code: int | None) -> str | None:
    """What the protocol tells a client to do after a close with ``code``:
    ``no_reconnect``, ``backoff``, ``reconnect``, or None (not its code)."""
    if code is None:
        return None
    if 4000 <= code <= 4099:
        return "no_reconnect"
    if 4100 <= code <= 4199:
        return "backoff"
    if 4200 <= code <= 4299:
        return "reconnect"
    return None


ACTIONS = {
    "no_reconnect": "do not reconnect (4000-4099)",
    "backoff": "reconnect after a backoff (4100-4199)",
    "reconnect": "reconnect at once (4200-4299)",
}


def close_key(code: int | None) -> str | None:
    """``server_4201_pong_not_received``, ``server_4150_backoff``, or None."""
    action = close_action(code)
    if action is None:
        return None
    return f"server_{code}_{CLOSE_NAMES.get(code or 0, action)}"


def event_of(text: str) -> tuple[str, Any]:
    """A message's event and its data (a JSON string decoded), or
    ValueError saying what is wrong with it. Pure."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError(f"not a Pusher message (not JSON): {_excerpt(text)}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("event"), str):
        raise ValueError(f"not a Pusher message (no event): {_excerpt(text)}")
    data = doc.get("data")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            pass  # the application's own string
    return doc["event"], data


def _excerpt(text: str) -> str:
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def refusal(code: Any, what: str, url: str) -> HandshakeError:
    """A ``pusher:error`` or a close before connection_established, named by
    its code; permanent for 4000-4099 (pusher-js does not reconnect)."""
    number = code if isinstance(code, int) and not isinstance(code, bool) else None
    key = close_key(number)
    cause = key.removeprefix("server_") if key is not None else "pusher_error"
    action = close_action(number)
    said = f" (pusher: {ACTIONS[action]})" if action is not None else ""
    return HandshakeError(cause, f"{url}: {what}{said}", permanent=action == "no_reconnect")


def pong_verdict(ev: Evidence, activity: float, pong_timeout: float) -> Verdict:
    """4201: the server pinged after ``activity`` without a message of the
    client's and had no pong ``pong_timeout`` later. Our heartbeats
    answered within that window say our frames were reaching it: a false
    timeout; else justified. Pure."""
    window = activity + pong_timeout
    slack = ABRUPT_SLACK + 0.02 * window
    rule = f"activity_timeout {activity:g}s + pong timeout {pong_timeout:g}s"
    if ev.last_pong_age is not None and ev.last_pong_age < window - slack:
        return Verdict(
            FALSE_TIMEOUT,
            CATEGORY_HEARTBEAT,
            f"last pusher:pong {ev.last_pong_age:.3f}s ago < the server's {rule}: "
            "our frames were reaching it",
        )
    last = "the whole connection" if ev.last_pong_age is None else f"{ev.last_pong_age:.3f}s"
    return Verdict(
        JUSTIFIED_TIMEOUT,
        CATEGORY_HEARTBEAT,
        f"no pusher:pong for {last} >= the server's {rule} ({ev.consecutive_missed} missed)",
    )


def pusher_verdict(
    verdict: Verdict, info: CloseInfo, activity: float, pong_timeout: float
) -> Verdict:
    if info.initiator != SERVER:
        return verdict
    if info.code == PONG_TIMEOUT_CLOSE and info.evidence is not None:
        return pong_verdict(info.evidence, activity, pong_timeout)
    key = close_key(info.code)
    if key is None:
        return verdict
    action = ACTIONS[close_action(info.code) or ""]
    why = f"{info.reason}; pusher: {action}" if info.reason else f"pusher: {action}"
    return Verdict(key, CATEGORY_SERVER, why)


class PusherState:
    def __init__(self, target: TargetConfig) -> None:
        self.config = target.pusher or PusherConfig()
        self.pong_timeout = self.config.pong_timeout


class Pusher(HeartbeatProtocol):
    name: ClassVar[str] = "pusher"
    has_handshake: ClassVar[bool] = True
    __slots__ = ("activity_timeout", "socket_id", "state")

    def __init__(self, client_id: str, state: Any = None) -> None:
        super().__init__(client_id, state)
        if not isinstance(state, PusherState):
            state = PusherState(TargetConfig())
        self.state: PusherState = state
        self.max_in_flight = 1  # pusher:pong carries no id
        self.activity_timeout = state.config.activity_timeout
        self.socket_id: str | None = None

    @classmethod
    def shared_state(cls, target: Any) -> PusherState:
        return PusherState(target)

    def resource(self, resource: str) -> str:
        query = resource.partition("?")[2]
        if any(k == "protocol" for k, _ in parse_qsl(query, keep_blank_values=True)):
            return resource
        query = f"protocol={PROTOCOL_VERSION}&client=soak&version={soak.__version__}"
        return f"{resource}&{query}" if "?" in resource else f"{resource}?{query}"

    async def handshake(self, io: HandshakeIO) -> None:
        cfg = self.state.config
        with trio.move_on_after(cfg.established_timeout):
            while True:
                try:
                    text = await io.receive_text()
                except HandshakeError as exc:
                    raise self._named(exc) from None
                try:
                    event, data = event_of(text)
                except ValueError as exc:
                    seen = sniff(text, self.name)
                    said = seen.explain(self.name) if seen is not None else str(exc)
                    raise HandshakeError("protocol", f"{io.url}: {said}") from None
                if event == ESTABLISHED:
                    self._established(data)
                    return
                if event == "pusher:error":
                    body = data if isinstance(data, dict) else {}
                    code, told = body.get("code"), body.get("message")
                    raise refusal(code, f"pusher:error {code}: {told}", io.url)
                if event == "pusher:ping":
                    await io.send_text(PONG)
        raise HandshakeError(
            "established_timeout",
            f"{io.url}: no pusher:connection_established within "
            f"{cfg.established_timeout:g}s (target.pusher.established_timeout)",
        )

    def _named(self, exc: HandshakeError) -> HandshakeError:
        code_text = exc.cause.removeprefix("close_")
        code = int(code_text) if code_text.isdigit() else None
        key = close_key(code)
        if key is None:
            return exc
        action = close_action(code)
        return HandshakeError(
            key.removeprefix("server_"),
            f"{exc} (pusher: {ACTIONS[action or '']})",
            permanent=action == "no_reconnect",
        )

    def _established(self, data: Any) -> None:
        body = data if isinstance(data, dict) else {}
        socket_id = body.get("socket_id")
        self.socket_id = socket_id if isinstance(socket_id, str) else None
        timeout = body.get("activity_timeout")
        if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
            # as pusher-js: the smaller of its own and the server's
            self.activity_timeout = min(float(timeout), self.state.config.activity_timeout)

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        state = self.state
        return pusher_verdict(verdict, info, self.activity_timeout, state.pong_timeout)

    # -- the heartbeat -----------------------------------------------------------------

    def ping_frame(self, seq: int, now_ms: int) -> Frame | None:
        return OP_TEXT, PING.encode()

    def answer(self) -> Frame:
        return OP_TEXT, PONG.encode()

    def pong_text(self, text: str) -> int | None:
        if text == PONG:
            return OLDEST
        if text == PING:
            return SERVER_PING
        if '"pusher:p' not in text:
            return None  # channel events
        try:
            event, _data = event_of(text)
        except ValueError:
            return None
        if event == "pusher:pong":
            return OLDEST
        if event == "pusher:ping":
            return SERVER_PING
        return None
