"""Wire protocols for heartbeats. One module per protocol.

To add a protocol: write a :class:`~soak.protocols.base.HeartbeatProtocol`
subclass in its own module and add it to ``PROTOCOLS`` below. The profile
accepts any name listed here.
"""

from __future__ import annotations

from soak.protocols.base import HeartbeatProtocol
from soak.protocols.custom import Custom
from soak.protocols.graphql_ws import GraphqlWs
from soak.protocols.graphql_ws_legacy import GraphqlWsLegacy
from soak.protocols.json_ping import JsonPing
from soak.protocols.mqtt import Mqtt
from soak.protocols.nats import Nats
from soak.protocols.openclaw import OpenClaw
from soak.protocols.stomp import Stomp
from soak.protocols.ws_ping import WsPing

PROTOCOLS: dict[str, type[HeartbeatProtocol]] = {
    JsonPing.name: JsonPing,
    WsPing.name: WsPing,
    OpenClaw.name: OpenClaw,
    Custom.name: Custom,
    Mqtt.name: Mqtt,
    GraphqlWs.name: GraphqlWs,
    GraphqlWsLegacy.name: GraphqlWsLegacy,
    Stomp.name: Stomp,
    Nats.name: Nats,
}

__all__ = [
    "PROTOCOLS",
    "Custom",
    "GraphqlWs",
    "GraphqlWsLegacy",
    "HeartbeatProtocol",
    "JsonPing",
    "Mqtt",
    "Nats",
    "OpenClaw",
    "Stomp",
    "WsPing",
]
