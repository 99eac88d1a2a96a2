"""subscriptions-transport-ws: the old GraphQL over WebSocket protocol of
Apollo (subprotocol ``graphql-ws``, a name it shares with the newer
library's package), as described in docs/dialects/graphql-ws.md::

    -> {"type":"connection_init","payload":{...}}   # [target.graphql_ws_legacy] payload
    <- {"type":"connection_ack"}                     # or connection_error, then close 1011
    <- {"type":"ka"}                                 # right after the ack, then every keepAlive

There is no client heartbeat in this protocol: soak sends none (the server
would answer an unknown message with an error). The server's ``ka`` is a
one-way beat; with ``keepalive`` set, a connection without one for
``ka_timeout`` is closed as a zombie, as the official client does. The
server itself never drops a quiet client.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import trio

from soak.config.graphql_ws import GraphqlWsLegacyConfig
from soak.config.target import TargetConfig
from soak.errors import HandshakeError
from soak.protocols.base import SERVER_BEAT, HandshakeIO, HeartbeatProtocol
from soak.protocols.graphql_ws import init_message

SUBPROTOCOL = "graphql-ws"
KA = '{"type":"ka"}'
# the server's message types (src/message-types.ts, without the legacy
# aliases a new server does not send)
MESSAGE_TYPES = frozenset({"connection_ack", "connection_error", "ka", "data", "error", "complete"})


class GraphqlWsLegacyState:
    """Run-wide: the configuration and connection_init's text."""

    def __init__(self, target: TargetConfig) -> None:
        cfg = target.graphql_ws_legacy or GraphqlWsLegacyConfig()
        self.config = cfg
        self.init_text = init_message(cfg.payload, cfg.token_field, target)


def server_message(text: str) -> tuple[str, Any]:
    """A server message's type and payload, or ValueError saying what is
    wrong with it. Pure."""
    what = "not a subscriptions-transport-ws message"
    try:
        obj = json.loads(text)
    except ValueError:
        raise ValueError(f"{what} (not JSON): {_excerpt(text)}") from None
    if not isinstance(obj, dict) or obj.get("type") not in MESSAGE_TYPES:
        raise ValueError(f"{what}: {_excerpt(text)}")
    return str(obj["type"]), obj.get("payload")


def _excerpt(text: str) -> str:
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def refusal(payload: Any, url: str) -> HandshakeError:
    """connection_error: the server's onConnect said no (or threw)."""
    message = payload.get("message") if isinstance(payload, dict) else payload
    shown = f": {message}" if isinstance(message, str) and message else ""
    return HandshakeError("connection_error", f"{url}: connection_error{shown}")


class GraphqlWsLegacy(HeartbeatProtocol):
    name: ClassVar[str] = "graphql-ws-legacy"
    has_handshake: ClassVar[bool] = True
    __slots__ = ("state",)

    def __init__(self, client_id: str, state: Any = None) -> None:
        super().__init__(client_id, state)
        if not isinstance(state, GraphqlWsLegacyState):
            state = GraphqlWsLegacyState(TargetConfig())
        self.state: GraphqlWsLegacyState = state
        cfg = state.config
        self.client_pings = False  # the protocol has no client heartbeat
        if cfg.keepalive > 0:
            # the deadline is the last ka + interval + timeout = + ka_timeout
            self.server_interval = cfg.keepalive
            self.server_timeout = cfg.ka_timeout - cfg.keepalive

    @classmethod
    def shared_state(cls, target: Any) -> GraphqlWsLegacyState:
        return GraphqlWsLegacyState(target)

    def subprotocols(self) -> tuple[str, ...]:
        return (SUBPROTOCOL,)

    async def handshake(self, io: HandshakeIO) -> None:
        cfg = self.state.config
        await io.send_text(self.state.init_text)
        with trio.move_on_after(cfg.ack_timeout):
            while True:
                try:
                    kind, payload = server_message(await io.receive_text())
                except ValueError as exc:
                    raise HandshakeError(
                        "protocol", f"{io.url}: {exc}; expected connection_ack"
                    ) from None
                if kind == "connection_ack":
                    return
                if kind == "connection_error":
                    raise refusal(payload, io.url)
                if kind != "ka":
                    raise HandshakeError(
                        "protocol", f"{io.url}: expected connection_ack, got a {kind} message"
                    )
        raise HandshakeError(
            "ack_timeout",
            f"{io.url}: no connection_ack within {cfg.ack_timeout:g}s of connection_init "
            "(target.graphql_ws_legacy.ack_timeout)",
        )

    def pong_text(self, text: str) -> int | None:
        if text == KA:
            return SERVER_BEAT
        if '"ka"' not in text:
            return None  # data, errors: not about liveness (the client is lenient too)
        try:
            kind, _payload = server_message(text)
        except ValueError:
            return None
        return SERVER_BEAT if kind == "ka" else None
