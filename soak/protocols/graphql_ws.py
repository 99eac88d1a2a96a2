"""graphql-ws: the GraphQL over WebSocket protocol (subprotocol
``graphql-transport-ws``, the protocol document of enisdenjo/graphql-ws),
as described in docs/dialects/graphql-ws.md.

After the upgrade (which must pick ``graphql-transport-ws``) the client
speaks first::

    -> {"type":"connection_init","payload":{...}}      # [target.graphql_ws] payload
    <- {"type":"connection_ack"}

A close during it is a handshake failure named by its code
(``close_4408_connection_initialisation_timeout``, ...), permanent for the
codes the official client does not retry; no ack within ``ack_timeout`` is
cause ``ack_timeout``.

Heartbeats are the protocol's own ping, the seq in its payload, which the
server echoes in its pong::

    -> {"type":"ping","payload":{"seq":12,"timestamp":1790000000123}}
    <- {"type":"pong","payload":{"seq":12,"timestamp":1790000000123}}

A ``ping`` from the server is answered with ``{"type":"pong"}`` at once; a
pong without our seq is the server's one-way beat. The reference server's
``ws`` adapter also sends RFC 6455 pings every keepAlive (12 s), which the
client answers (and records as server heartbeats), and destroys the TCP
connection without a close frame when a pong has not come keepAlive after
its ping: :func:`keepalive_verdict` judges such an end.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import trio

from soak.classify import (
    ABRUPT_SLACK,
    CATEGORY_HEARTBEAT,
    CATEGORY_SERVER,
    CATEGORY_TRANSPORT,
    FALSE_TIMEOUT,
    JUSTIFIED_TIMEOUT,
    SERVER,
    TRANSPORT,
    CloseInfo,
    Evidence,
    Verdict,
)
from soak.config.graphql_ws import GraphqlWsConfig, implied_heartbeat
from soak.config.heartbeat import ServerHeartbeat
from soak.config.target import TargetConfig
from soak.errors import HandshakeError, ProtocolError
from soak.protocols.base import SERVER_BEAT, SERVER_PING, Frame, HandshakeIO, HeartbeatProtocol
from soak.wsframe import OP_TEXT

SUBPROTOCOL = "graphql-transport-ws"

# graphql-ws's CloseCode (src/common.ts), and 4499 "Terminated" (its client's)
CLOSE_NAMES = {
    4004: "bad_response",
    4005: "internal_client_error",
    4400: "bad_request",
    4401: "unauthorized",
    4403: "forbidden",
    4406: "subprotocol_not_acceptable",
    4408: "connection_initialisation_timeout",
    4409: "subscriber_already_exists",
    4429: "too_many_initialisation_requests",
    4499: "terminated",
    4500: "internal_server_error",
    4504: "connection_acknowledgement_timeout",
}
# what the official client does not retry (src/client.ts, shouldRetry): a
# refusal with one of these is permanent
FATAL_CODES = frozenset({4004, 4005, 4400, 4401, 4406, 4409, 4429, 4500})
# the message types of the protocol; any other is a bad response (4004)
MESSAGE_TYPES = frozenset(
    {
        "connection_init",
        "connection_ack",
        "ping",
        "pong",
        "subscribe",
        "next",
        "error",
        "complete",
    }
)
BAD_RESPONSE = 4004
NOT_OURS = "not a graphql-transport-ws message"

PONG = '{"type":"pong"}'
_SERVER_PING = '{"type":"ping"}'
# our ping echoed exactly as the reference server writes it (JSON.stringify
# of what it parsed): the match is the answer, json.loads is skipped
_ECHO = re.compile(
    r'\{"type":"pong","payload":\{"seq":(0|[1-9][0-9]*),"timestamp":-?(?:0|[1-9][0-9]*)\}\}'
)


def close_key(code: int | None) -> str | None:
    """``server_4408_connection_initialisation_timeout``, or None for a
    code graphql-ws does not define."""
    name = CLOSE_NAMES.get(code or 0)
    return None if name is None else f"server_{code}_{name}"


class GraphqlWsState:
    """Run-wide: the configuration, connection_init's text (the same for
    every client) and the server heartbeat its closes are judged by."""

    def __init__(self, target: TargetConfig) -> None:
        cfg = target.graphql_ws or GraphqlWsConfig()
        self.config = cfg
        self.server: ServerHeartbeat | None = target.server_heartbeat
        # is it the ws adapter's, from the keepalive (not the profile's own)?
        self.adapter = self.server is not None and self.server == implied_heartbeat(cfg)
        self.init_text = init_message(cfg.payload, cfg.token_field, target)


def init_message(
    payload: dict[str, Any] | None, token_field: str | None, target: TargetConfig
) -> str:
    """``connection_init`` with the profile's payload, and the token of
    ``target.token_env`` in it under ``token_field`` (when both are set)."""
    body = None if payload is None else dict(payload)
    if token_field is not None and target.token is not None:
        body = body or {}
        body[token_field] = target.token_prefix + target.token.value
    message: dict[str, Any] = {"type": "connection_init"}
    if body is not None:
        message["payload"] = body
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


def message_type(text: str) -> tuple[str, Any]:
    """A protocol message's type and its payload (None when it has none),
    or ValueError saying what is wrong with it. Pure."""
    try:
        obj = json.loads(text)
    except ValueError:
        raise ValueError(
            f"not a graphql-transport-ws message (not JSON): {_excerpt(text)}"
        ) from None
    if not isinstance(obj, dict):
        raise ValueError(f"not a graphql-transport-ws message (not an object): {_excerpt(text)}")
    kind = obj.get("type")
    if kind not in MESSAGE_TYPES:
        raise ValueError(f"not a graphql-transport-ws message (type {kind!r}): {_excerpt(text)}")
    return str(kind), obj.get("payload")


def _excerpt(text: str) -> str:
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def named_refusal(exc: HandshakeError) -> HandshakeError:
    """A close during the handshake (cause ``close_4408``), named by its
    graphql-ws code and permanent where the official client gives up."""
    code_text = exc.cause.removeprefix("close_")
    code = int(code_text) if code_text.isdigit() else None
    name = CLOSE_NAMES.get(code or 0)
    if code is None or name is None:
        return exc
    message = str(exc)
    if '"' not in message:  # no reason given: say what the code means
        message += f" (graphql-ws: {name.replace('_', ' ')})"
    return HandshakeError(
        f"close_{code}_{name}",
        message,
        retry_after=exc.retry_after,
        permanent=code in FATAL_CODES,
    )


def keepalive_verdict(ev: Evidence, wait: float) -> Verdict:
    """An abrupt end on the ws adapter's ping timer: it terminates a client
    whose pong has not come ``wait`` after its ping. The client answers
    every ping it gets at once, so what decides is whether its frames were
    reaching the server: a pong to our own heartbeat younger than ``wait``
    says they were (our answer to its ping went up the same stream), and
    the timeout is false; without one it is justified (our frames were not
    getting through, or its ping never reached us). Pure."""
    slack = ABRUPT_SLACK + 0.02 * wait
    if ev.last_pong_age is not None and ev.last_pong_age < wait - slack:
        return Verdict(
            FALSE_TIMEOUT,
            CATEGORY_HEARTBEAT,
            f"last pong {ev.last_pong_age:.3f}s ago < the server's pong wait {wait:g}s: "
            "our frames, the answers to its pings among them, were reaching it",
        )
    last = "the whole connection" if ev.last_pong_age is None else f"{ev.last_pong_age:.3f}s"
    if ev.server_beat_age is None:
        pings = "no ping of the server reached the client"
    else:
        pings = f"its last ping came {ev.server_beat_age:.3f}s before and was answered"
    return Verdict(
        JUSTIFIED_TIMEOUT,
        CATEGORY_HEARTBEAT,
        f"no pong to our heartbeats for {last} >= the server's pong wait {wait:g}s "
        f"({ev.consecutive_missed} missed); {pings}",
    )


def graphql_ws_verdict(
    verdict: Verdict, info: CloseInfo, server: ServerHeartbeat | None, *, adapter: bool = True
) -> Verdict:
    """graphql-ws's closes: its close codes by name, and an abrupt end with
    the ws adapter's signature (``adapter``: the server heartbeat is the
    one its keepalive implies, not the profile's own) judged by
    :func:`keepalive_verdict`. The adapter terminates a client when the
    pong wait for its last ping runs out, before its next ping: an end
    whose last server ping is not ``keepalive`` old (a restart, say, that
    fell on the ping timer) is a plain transport loss."""
    if info.initiator == SERVER and verdict.category == CATEGORY_SERVER:
        key = close_key(info.code)
        return verdict if key is None else Verdict(key, CATEGORY_SERVER, info.reason)
    ev = info.evidence
    if (
        not adapter
        or verdict.category != CATEGORY_HEARTBEAT
        or info.initiator != TRANSPORT
        or ev is None
        or server is None
    ):
        return verdict
    beat = ev.server_beat_age
    if beat is not None and abs(beat - server.timeout) > server.abrupt_tolerance:
        return Verdict(f"transport_{info.transport}", CATEGORY_TRANSPORT)
    return keepalive_verdict(ev, server.timeout)


class GraphqlWs(HeartbeatProtocol):
    name: ClassVar[str] = "graphql-ws"
    has_handshake: ClassVar[bool] = True
    __slots__ = ("state",)

    def __init__(self, client_id: str, state: Any = None) -> None:
        super().__init__(client_id, state)
        if not isinstance(state, GraphqlWsState):
            state = GraphqlWsState(TargetConfig())
        self.state: GraphqlWsState = state

    @classmethod
    def shared_state(cls, target: Any) -> GraphqlWsState:
        return GraphqlWsState(target)

    def subprotocols(self) -> tuple[str, ...]:
        return (SUBPROTOCOL,)

    async def handshake(self, io: HandshakeIO) -> None:
        cfg = self.state.config
        if cfg.init_delay > 0:
            # a late connection_init, on purpose; what the server says
            # meanwhile (its 4408) is read, not left unread behind a write
            with trio.move_on_after(cfg.init_delay):
                while True:
                    kind = await self._next(io)
                    if kind != "pong":
                        raise HandshakeError(
                            "protocol", f"{io.url}: a {kind} message before connection_init"
                        )
        await io.send_text(self.state.init_text)
        with trio.move_on_after(cfg.ack_timeout):
            while True:
                kind = await self._next(io)
                if kind == "connection_ack":
                    return
                if kind != "pong":
                    raise HandshakeError(
                        "protocol", f"{io.url}: expected connection_ack, got a {kind} message"
                    )
        raise HandshakeError(
            "ack_timeout",
            f"{io.url}: no connection_ack within {cfg.ack_timeout:g}s of connection_init "
            "(target.graphql_ws.ack_timeout)",
        )

    async def _next(self, io: HandshakeIO) -> str:
        """The next handshake message's type; a server ping is answered
        and skipped, a close is a refusal named by its code."""
        while True:
            try:
                text = await io.receive_text()
            except HandshakeError as exc:
                raise named_refusal(exc) from None
            try:
                kind, _payload = message_type(text)
            except ValueError as exc:
                raise HandshakeError(
                    "protocol", f"{io.url}: {exc}; expected connection_ack"
                ) from None
            if kind != "ping":
                return kind
            await io.send_text(PONG)

    def judge(self, verdict: Verdict, info: CloseInfo) -> Verdict:
        state = self.state
        return graphql_ws_verdict(verdict, info, state.server, adapter=state.adapter)

    # -- the heartbeat -----------------------------------------------------------------

    def _text(self, seq: int, now_ms: int) -> str:
        return '{"type":"ping","payload":{"seq":' + str(seq) + ',"timestamp":' + str(now_ms) + "}}"

    def ping_frame(self, seq: int, now_ms: int) -> Frame | None:
        return OP_TEXT, self._text(seq, now_ms).encode()

    def answer(self) -> Frame:
        return OP_TEXT, PONG.encode()

    def pong_text(self, text: str) -> int | None:
        echo = _ECHO.fullmatch(text)
        if echo is not None:
            return int(echo.group(1))
        if text == _SERVER_PING:
            return SERVER_PING
        try:
            kind, payload = message_type(text)
        except ValueError as exc:
            # as the official client: a message it cannot read closes 4004
            raise ProtocolError(str(exc), close_code=BAD_RESPONSE) from None
        if kind == "ping":
            return SERVER_PING
        if kind != "pong":
            return None
        seq = payload.get("seq") if isinstance(payload, dict) else None
        if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1:
            return seq
        return SERVER_BEAT  # an unsolicited pong: the server's one-way beat
