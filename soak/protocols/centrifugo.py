"""Centrifugo / Centrifuge, bidirectional protocol v2 in JSON (Centrifugo
v4+, centrifuge-js 3+), as described in docs/dialects/centrifugo.md. Built
from the protocol's specification and its wire examples; no Centrifugo
server is installable here, the tests use a faithful fake
(tests/support/fakes/centrifugo.py).

The client sends the connect command with an id and gets its reply::

    -> {"id":1,"connect":{"token":"...","name":"soak"}}
    <- {"id":1,"connect":{"client":"...","version":"5.4.0","ping":25,"pong":true}}
    <- {"id":1,"error":{"code":101,"message":"unauthorized"}}       # a refusal

Then the **server** pings with an empty object every ``ping`` seconds and,
with ``pong`` true, expects the same back; messages in one frame are
separated by newlines::

    <- {}
    -> {}

No answer within its pong timeout and it disconnects with 3012 "no pong"
(judged by the classifier from the implied server heartbeat: was the
last server ping answered, and how long ago did it come). The client
drops a server whose ping is ``max_server_ping_delay`` late, as
centrifuge-js does. Disconnect codes 3500-3999 and 4500-4999 are
terminal: a refusal with one is permanent.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import trio

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
from soak.config.centrifugo import NO_PONG, CentrifugoConfig
from soak.config.target import TargetConfig
from soak.errors import HandshakeError
from soak.protocols.base import SERVER_BEAT, SERVER_PING, Frame, HandshakeIO, HeartbeatProtocol
from soak.protocols.sniff import sniff
from soak.wsframe import OP_TEXT

PING = "{}"
CONNECT_ID = 1
# centrifuge's disconnect codes (disconnect.go)
DISCONNECTS = {
    3000: "connection_closed",
    3001: "shutdown",
    3004: "internal_server_error",
    3005: "expired",
    3006: "subscription_expired",
    3008: "slow",
    3009: "write_error",
    3010: "insufficient_state",
    3011: "force_reconnect",
    3012: "no_pong",
    3013: "too_many_requests",
    3500: "invalid_token",
    3501: "bad_request",
    3502: "stale",
    3503: "force_disconnect",
    3504: "connection_limit",
    3505: "channel_limit",
    3506: "inappropriate_protocol",
    3507: "permission_denied",
    3508: "not_available",
    3509: "too_many_errors",
}
# connect errors (errors.go) after which trying again cannot help
PERMANENT_ERRORS = frozenset({101, 103, 107})  # unauthorized, permission denied, bad request


def terminal(code: int | None) -> bool:
    """A disconnect code centrifuge-js does not reconnect after."""
    return code is not None and (3500 <= code <= 3999 or 4500 <= code <= 4999)


def close_key(code: int | None) -> str | None:
    name = DISCONNECTS.get(code or 0)
    return None if name is None else f"server_{code}_{name}"


def connect_command(name: str, token: str | None) -> str:
    body: dict[str, Any] = {"name": name}
    if token is not None:
        body = {"token": token, **body}
    return json.dumps({"id": CONNECT_ID, "connect": body}, separators=(",", ":"))


def replies(text: str) -> list[Any]:
    """The JSON objects of one message (newline separated), or ValueError. Pure."""
    out = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            raise ValueError(f"not a Centrifugo reply (not JSON): {_excerpt(line)}") from None
    return out


def _excerpt(text: str) -> str:
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


class CentrifugoState:
    def __init__(self, target: TargetConfig) -> None:
        self.config = target.centrifugo or CentrifugoConfig()
        token = None if target.token is None else target.token.value
        self.connect_text = connect_command(self.config.name, token)


class Centrifugo(HeartbeatProtocol):
    name: ClassVar[str] = "centrifugo"
    has_handshake: ClassVar[bool] = True
    __slots__ = ("client", "pong", "state")

    def __init__(self, client_id: str, state: Any = None) -> None:
        super().__init__(client_id, state)
        if not isinstance(state, CentrifugoState):
            state = CentrifugoState(TargetConfig())
        self.state: CentrifugoState = state
        self.client_pings = False  # the server pings, the client answers
        self.pong = True  # does the server want {} back (its reply's "pong")?
        self.client: str | None = None
        cfg = state.config
        self.server_interval = cfg.ping_interval
        self.server_timeout = cfg.max_server_ping_delay

    @classmethod
    def shared_state(cls, target: Any) -> CentrifugoState:
        return CentrifugoState(target)

    async def handshake(self, io: HandshakeIO) -> None:
        cfg = self.state.config
        await io.send_text(self.state.connect_text)
        with trio.move_on_after(cfg.connect_timeout):
            while True:
                try:
                    text = await io.receive_text()
                except HandshakeError as exc:
                    raise named_refusal(exc) from None
                try:
                    docs = replies(text)
                except ValueError as exc:
                    seen = sniff(text, self.name)
                    said = seen.explain(self.name) if seen is not None else str(exc)
                    raise HandshakeError("protocol", f"{io.url}: {said}") from None
                for doc in docs:
                    if isinstance(doc, dict) and doc.get("id") == CONNECT_ID:
                        self._connected(doc, io.url)
                        return
        raise HandshakeError(
            "connect_timeout",
            f"{io.url}: no reply to the connect command within {cfg.connect_timeout:g}s "
            "(target.centrifugo.connect_timeout)",
        )

    def _connected(self, doc: dict[str, Any], url: str) -> None:
        error = doc.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            text = error.get("message")
            temporary = error.get("temporary") is True
            raise HandshakeError(
                f"connect_error_{code}",
                f"{url}: the connect command was refused: {code} {text}",
                permanent=code in PERMANENT_ERRORS and not temporary,
            )
        reply = doc.get("connect")
        if not isinstance(reply, dict):
            raise HandshakeError("protocol", f"{url}: a reply to connect without a result")
        client = reply.get("client")
        self.client = client if isinstance(client, str) else None
        version = reply.get("version")
        self.server_version = version if isinstance(version, str) and version else None
        ping = reply.get("ping")
        if isinstance(ping, int | float) and not isinstance(ping, bool) and ping > 0:
            self.server_interval = float(ping)
        self.pong = reply.get("pong") is True

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        if info.initiator != SERVER:
            return verdict
        if info.code == NO_PONG and info.evidence is not None:
            return no_pong_verdict(info.evidence, self.state.config.pong_timeout)
        key = close_key(info.code)
        if key is None:
            return verdict
        reconnect = "no reconnect" if terminal(info.code) else "reconnect"
        why = f"{info.reason}; centrifugo: {reconnect}" if info.reason else reconnect
        return Verdict(key, CATEGORY_SERVER, why)

    # -- the heartbeat -----------------------------------------------------------------

    def answer(self) -> Frame:
        return OP_TEXT, PING.encode()

    def pong_text(self, text: str) -> int | None:
        if text == PING or ("\n" in text and PING in text.split("\n")):
            return SERVER_PING if self.pong else SERVER_BEAT
        return None


def no_pong_verdict(ev: Evidence, pong_timeout: float) -> Verdict:
    """3012 "no pong": the server had no answer ``pong_timeout`` after its
    ping. A close sooner than that after its last ping is false (it had
    not waited its own timeout); later, it is justified: our answer did
    not reach it (written and lost on the way looks the same to us as never
    written). Pure."""
    age = ev.server_beat_age if ev.server_beat_age is not None else ev.age
    since = "after the connection opened" if ev.server_beat_age is None else "ago"
    if age < pong_timeout - (ABRUPT_SLACK + 0.02 * pong_timeout):
        return Verdict(
            FALSE_TIMEOUT,
            CATEGORY_HEARTBEAT,
            f"last server ping {age:.3f}s {since} < its pong timeout {pong_timeout:g}s"
            + ("" if ev.answered else " (one was unanswered)"),
        )
    if ev.server_beat_age is None:
        return Verdict(
            JUSTIFIED_TIMEOUT,
            CATEGORY_HEARTBEAT,
            f"no server ping reached the client in the {age:.3f}s the connection lived "
            f"(>= its pong timeout {pong_timeout:g}s): none could be answered",
        )
    how = "answered" if ev.answered else "not all answered"
    sent = "never" if ev.last_sent_age is None else f"{ev.last_sent_age:.3f}s ago"
    return Verdict(
        JUSTIFIED_TIMEOUT,
        CATEGORY_HEARTBEAT,
        f"no server ping for {age:.3f}s >= its pong timeout {pong_timeout:g}s; "
        f"its pings {how} by the client, the last answer sent {sent}",
    )


def named_refusal(exc: HandshakeError) -> HandshakeError:
    """A disconnect during the connect, named by its code; permanent for
    the terminal codes."""
    code_text = exc.cause.removeprefix("close_")
    code = int(code_text) if code_text.isdigit() else None
    key = close_key(code)
    if key is None and not terminal(code):
        return exc
    cause = key.removeprefix("server_") if key is not None else f"close_{code}"
    return HandshakeError(cause, str(exc), permanent=terminal(code))
