"""The graphql-ws dialect's configuration: its ``[target.graphql_ws]`` table
(model and parser) and the server heartbeat it implies (registered in
soak.config.tables.target.PROTOCOL_TABLES).

The reference server's ``ws`` adapter (``useServer(options, wss,
keepAlive)``) sends an RFC 6455 ping every ``keepAlive`` ms (12 s by
default) and destroys the TCP connection, without a close frame, when the
pong has not come ``keepAlive`` ms after the ping: a client that stopped
answering ends at 2, 3, ... keepAlive after the upgrade.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from soak.config.heartbeat import ServerHeartbeat
from soak.config.kinds import Duration, Toml
from soak.config.units import format_duration
from soak.config.validation import Section

# the ws adapter's default keepAlive, seconds
DEFAULT_KEEPALIVE = 12.0
PAYLOAD = Toml({"type": "object", "description": "connection_init's payload (any TOML table)"})
FIELD = Toml({"type": "string", "minLength": 1})


@dataclass(frozen=True)
class GraphqlWsConfig:
    """``[target.graphql_ws]``: what ``connection_init`` carries and what
    the server's keep-alive is."""

    # connection_init's payload (the server's connectionParams); None: no payload
    payload: Annotated[dict[str, Any] | None, PAYLOAD] = None
    # the token of target.token_env goes into the payload under this key,
    # with target.token_prefix (graphql-ws servers read auth from there)
    token_field: Annotated[str | None, FIELD] = None
    # the server's keepAlive: its RFC 6455 ping interval and pong wait; "0s": none
    keepalive: Duration = DEFAULT_KEEPALIVE
    # how long the server may take to answer connection_init with connection_ack
    ack_timeout: Duration = 10.0
    # wait this long after the upgrade before connection_init (to try a
    # server's connectionInitWaitTimeout: 3 s in graphql-ws, close 4408)
    init_delay: Duration = 0.0


def keepalive_heartbeat(keepalive: float) -> ServerHeartbeat | None:
    """The ws adapter's heartbeat for ``keepalive`` seconds (None: it has
    none): a ping every keepalive, the client terminated when its pong has
    not come keepalive later, so an abrupt end on the ping timer (2, 3, ...
    keepalive after the upgrade) is its heartbeat timeout."""
    if keepalive <= 0:
        return None
    return ServerHeartbeat(
        interval=keepalive,
        timeout=keepalive,
        max_missed=1,
        close_codes=(),
        reason_pattern="heartbeat",
        abrupt_tolerance=min(1.0, keepalive / 4),
        abrupt_period=keepalive,
    )


def implied_heartbeat(table: object) -> ServerHeartbeat | None:
    """The server heartbeat a profile without [target.server_heartbeat]
    gets: from its [target.graphql_ws] keepalive, else the default's."""
    keepalive = table.keepalive if isinstance(table, GraphqlWsConfig) else DEFAULT_KEEPALIVE
    return keepalive_heartbeat(keepalive)


def parse_graphql_ws(s: Section) -> GraphqlWsConfig:
    ld = s.loader
    d = GraphqlWsConfig()
    cfg = GraphqlWsConfig(
        payload=_payload(s),
        token_field=_token_field(s),
        keepalive=s.get("keepalive", ld.duration, d.keepalive),
        ack_timeout=s.get("ack_timeout", ld.positive_duration, d.ack_timeout),
        init_delay=s.get("init_delay", ld.duration, d.init_delay),
    )
    s.finish()
    return cfg


def _payload(s: Section) -> dict[str, Any] | None:
    ld = s.loader
    payload = s.get("payload", lambda w, v: v, None)
    if payload is None:
        return None
    if not isinstance(payload, dict):
        ld.fail(s.where("payload"), "expected a table (connection_init's payload)", payload)
    try:
        text = json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError):
        ld.fail(
            s.where("payload"),
            "expected a table of JSON values (strings, numbers, booleans, arrays, "
            "tables; no dates or times)",
            payload,
        )
    copy: dict[str, Any] = json.loads(text)  # plain JSON values, the run's own copy
    return copy


def _token_field(s: Section) -> str | None:
    token_field = s.get("token_field", s.loader.string, None)
    if token_field is not None and not token_field:
        s.loader.fail(s.where("token_field"), 'expected a payload key like "authorization"', "")
    return token_field


# subscriptions-transport-ws's client gives a connection up when no ka came
# for this long (its WS_TIMEOUT)
LEGACY_KA_TIMEOUT = 30.0


@dataclass(frozen=True)
class GraphqlWsLegacyConfig:
    """``[target.graphql_ws_legacy]``: subscriptions-transport-ws (the old
    protocol whose subprotocol is ``graphql-ws``)."""

    payload: Annotated[dict[str, Any] | None, PAYLOAD] = None
    token_field: Annotated[str | None, FIELD] = None
    # the server's keepAlive: it sends {"type":"ka"} this often; "0s": none
    # (its default), and then nothing is expected of it
    keepalive: Duration = 0.0
    # as the official client: no ka for this long closes the connection as a zombie
    ka_timeout: Duration = LEGACY_KA_TIMEOUT
    ack_timeout: Duration = 10.0


def parse_graphql_ws_legacy(s: Section) -> GraphqlWsLegacyConfig:
    ld = s.loader
    d = GraphqlWsLegacyConfig()
    cfg = GraphqlWsLegacyConfig(
        payload=_payload(s),
        token_field=_token_field(s),
        keepalive=s.get("keepalive", ld.duration, d.keepalive),
        ka_timeout=s.get("ka_timeout", ld.positive_duration, d.ka_timeout),
        ack_timeout=s.get("ack_timeout", ld.positive_duration, d.ack_timeout),
    )
    if cfg.keepalive > 0 and cfg.ka_timeout <= cfg.keepalive:
        ld.fail(
            s.where("ka_timeout"),
            f"expected more than keepalive ({format_duration(cfg.keepalive)}): "
            "every connection would be closed between two ka",
            s.data["ka_timeout"] if "ka_timeout" in s.data else format_duration(cfg.ka_timeout),
        )
    s.finish()
    return cfg
