"""``[target]``: where the clients connect and what they know about the
server. Plain frozen dataclasses; parsed in soak.config.tables.target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from soak.config.actioncable import ActionCableConfig
from soak.config.centrifugo import CentrifugoConfig
from soak.config.dialect import DialectConfig
from soak.config.graphql_ws import GraphqlWsConfig, GraphqlWsLegacyConfig
from soak.config.heartbeat import ServerHeartbeat
from soak.config.hops import Hop
from soak.config.kinds import NOT_IN_PROFILE, Duration, Toml, at_least, one_of, string_table
from soak.config.mqtt import MqttConfig
from soak.config.nats import NatsConfig
from soak.config.openclaw import OPENCLAW_PREAUTH_BUDGET, OpenClawConfig
from soak.config.phoenix import PhoenixConfig
from soak.config.pusher import PusherConfig
from soak.config.signalr import SignalrConfig
from soak.config.socketio import SocketIOConfig
from soak.config.sockjs import SockjsConfig
from soak.config.stomp import StompConfig

PROTOCOLS = (
    "json",
    "ws-ping",
    "openclaw",
    "custom",
    "mqtt",
    "graphql-ws",
    "graphql-ws-legacy",
    "socket.io",
    "sockjs",
    "actioncable",
    "phoenix",
    "signalr",
    "pusher",
    "centrifugo",
    "stomp",
    "nats",
)  # must match soak.protocols.PROTOCOLS

WS_URL = Toml({"type": "string", "pattern": "^wss?://[^/]"}, required=True)
HTTP_URL = Toml({"type": "string", "pattern": "^http://[^/]"}, required=True)
DOTTED = Toml({"type": "string", "pattern": r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"})
# "127.0.0.1-127.0.0.20", "10.0.0.5,10.0.0.6" or a list of those
SOURCE_IPS = Toml({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
HOST_PORTS = Toml({"type": "array", "minItems": 1, "items": {"type": "string"}})


@dataclass(frozen=True)
class Secret:
    """A token. Its repr never shows the value, so it cannot leak into logs."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret(<redacted>)"


@dataclass(frozen=True)
class StatsConfig:
    """The server's own count of connections, polled every interval."""

    url: Annotated[str, HTTP_URL]
    field: Annotated[str, DOTTED] = "connections"  # a dotted path into the JSON document
    timeout: Duration = 2.0


@dataclass(frozen=True)
class TargetConfig:
    """[target]: where the clients connect and what they know about the server."""

    url: Annotated[str, WS_URL] = ""
    protocol: Annotated[str, one_of(PROTOCOLS)] = "json"
    headers: Annotated[tuple[tuple[str, str], ...], string_table()] = ()
    token_env: str | None = None
    token_header: str = "Authorization"
    token_prefix: str = "Bearer "
    connect_timeout: Duration = 10.0
    # the largest message the server may send (bytes; characters for text):
    # a larger one is a 1009 close, checked while it arrives
    max_message: Annotated[int, at_least(1024)] = 1_048_576
    tls_verify: bool = True  # false: accept any certificate (self-signed test gateways)
    ca_file: str | None = None  # a PEM bundle to trust instead of the system's
    server_heartbeat: ServerHeartbeat | None = None
    stats: StatsConfig | None = None
    token: Annotated[Secret | None, NOT_IN_PROFILE] = (
        None  # resolved from token_env by load_profile
    )
    openclaw: OpenClawConfig | None = None  # [target.openclaw]; defaults when None
    dialect: DialectConfig | None = None  # [target.dialect] (protocol = "custom")
    mqtt: MqttConfig | None = None  # [target.mqtt]; resolved by load_profile
    graphql_ws: GraphqlWsConfig | None = None  # [target.graphql_ws]; defaults when None
    graphql_ws_legacy: GraphqlWsLegacyConfig | None = None  # [target.graphql_ws_legacy]
    socketio: SocketIOConfig | None = None  # [target.socketio]; defaults when None
    sockjs: SockjsConfig | None = None  # [target.sockjs]; defaults when None
    actioncable: ActionCableConfig | None = None  # [target.actioncable]; defaults when None
    phoenix: PhoenixConfig | None = None  # [target.phoenix]; defaults when None
    signalr: SignalrConfig | None = None  # [target.signalr]; defaults when None
    pusher: PusherConfig | None = None  # [target.pusher]; defaults when None
    centrifugo: CentrifugoConfig | None = None  # [target.centrifugo]; defaults when None
    stomp: StompConfig | None = None  # [target.stomp]; resolved by load_profile
    nats: NatsConfig | None = None  # [target.nats]; resolved by load_profile
    # source addresses, used round-robin (see soak.addresses); () lets the kernel pick
    source_ips: Annotated[tuple[str, ...], SOURCE_IPS] = ()
    # TCP goes to these host:port pairs, round-robin, instead of the URL's
    connect_to: Annotated[tuple[tuple[str, int], ...], HOST_PORTS] = ()
    hops: tuple[Hop, ...] = ()  # [[target.hops]]: what stands in between (soak.config.hops)

    @property
    def secure(self) -> bool:
        return self.url.startswith("wss://")


def openclaw_connecting(target: TargetConfig) -> int:
    """The default handshake cap for OpenClaw: its pre-auth budget per
    source address, times the addresses the clients spread over."""
    return OPENCLAW_PREAUTH_BUDGET * max(1, len(target.source_ips))
