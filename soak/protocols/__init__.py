"""Wire protocols for heartbeats. One module per protocol.

To add a protocol: write a :class:`~soak.protocols.base.HeartbeatProtocol`
subclass in its own module and add it to ``PROTOCOLS`` below. The profile
accepts any name listed here.
"""

from __future__ import annotations

from soak.protocols.actioncable import ActionCable
from soak.protocols.base import HeartbeatProtocol
from soak.protocols.centrifugo import Centrifugo
from soak.protocols.custom import Custom
from soak.protocols.graphql_ws import GraphqlWs
from soak.protocols.graphql_ws_legacy import GraphqlWsLegacy
from soak.protocols.json_ping import JsonPing
from soak.protocols.mqtt import Mqtt
from soak.protocols.nats import Nats
from soak.protocols.openclaw import OpenClaw
from soak.protocols.phoenix import Phoenix
from soak.protocols.pusher import Pusher
from soak.protocols.signalr import Signalr
from soak.protocols.socketio import SocketIO
from soak.protocols.sockjs import Sockjs
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
    SocketIO.name: SocketIO,
    Sockjs.name: Sockjs,
    ActionCable.name: ActionCable,
    Phoenix.name: Phoenix,
    Signalr.name: Signalr,
    Pusher.name: Pusher,
    Centrifugo.name: Centrifugo,
    Stomp.name: Stomp,
    Nats.name: Nats,
}

__all__ = [
    "PROTOCOLS",
    "ActionCable",
    "Centrifugo",
    "Custom",
    "GraphqlWs",
    "GraphqlWsLegacy",
    "HeartbeatProtocol",
    "JsonPing",
    "Mqtt",
    "Nats",
    "OpenClaw",
    "Phoenix",
    "Pusher",
    "Signalr",
    "SocketIO",
    "Sockjs",
    "Stomp",
    "WsPing",
]
