"""Pure: how often each side of a connection sends something, by dialect.

A hop in front of the gateway (nginx, a load balancer, a NAT) closes a
connection that stays silent longer than its idle timeout; what keeps it
alive is the heartbeat, and who sends it depends on the dialect. With the
incident's JSON heartbeat the client pings every ``[heartbeat] interval``
and the server answers, so both directions carry a frame every interval.
With Socket.IO the server pings every pingInterval (25 s by default) and
the client answers; soak's own ``[heartbeat] interval`` sends nothing. With
ActionCable only the server speaks (every 3 s), with SignalR and STOMP both
sides beat one way.

:func:`beats` says, for a profile, how often a frame goes each way: from
the client (``up``) and from the server (``down``), from the dialect's
shape and its defaults, the profile's ``[target.server_heartbeat]`` and the
dialect's own table where they say more. soak.chain predicts each hop from
the gap in the direction whose traffic resets it, and ``soak doctor`` warns
where a dialect's gap reaches a common hop's default idle timeout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from soak.config.socketio import SocketIOConfig, resolve

# who sends what, by dialect: does the client send heartbeats (on
# [heartbeat] interval), does the server answer them, does the server beat
# on its own (its default interval, seconds) and does the client answer it
#               client  answered  server   server answered
_SHAPES: dict[str, tuple[bool, bool, float | None, bool]] = {
    "json": (True, True, None, False),
    "ws-ping": (True, True, None, False),
    "openclaw": (True, True, 30.0, False),  # the gateway's ticks
    "custom": (True, True, None, False),
    "socket.io": (False, False, 25.0, True),  # Engine.IO 4 pingInterval
    "graphql-ws": (True, True, 12.0, True),  # the ws adapter's keepAlive pings
    "graphql-ws-legacy": (False, False, None, False),  # ka only if the server sets it
    "mqtt": (True, True, None, False),
    "sockjs": (False, False, 25.0, True),  # sockjs-node's heartbeat_delay
    "actioncable": (False, False, 3.0, False),
    "stomp": (True, False, 10.0, False),  # negotiated; stompjs' 10 s
    "nats": (True, True, 120.0, True),  # the server's ping_interval
    "phoenix": (True, True, None, False),
    "signalr": (True, False, 15.0, False),  # KeepAliveInterval both ways
    "pusher": (True, True, 120.0, True),  # activity_timeout
    "centrifugo": (False, False, 25.0, True),
}
# Engine.IO 3 (eio = 3, or EIO=3 in the URL): the client pings ("2") every
# interval and the server answers ("3"); the server sends nothing on its own
_ENGINE_IO_3 = (True, True, None, False)

# the idle timeouts hops have unless configured otherwise: what a dialect's
# default gap races (docs/intermediaries.md)
COMMON_HOPS: tuple[tuple[str, float], ...] = (
    ("nginx proxy_read_timeout (default)", 60.0),
    ("AWS ALB/ELB idle timeout (default)", 60.0),
    ("Cloudflare proxy", 100.0),
    ("AWS API Gateway WebSocket", 600.0),
)


@dataclass(frozen=True)
class Beats:
    """Seconds between frames each way (inf: that side sends nothing on its own)."""

    up: float  # from the client
    down: float  # from the server
    why: str  # how it was worked out, for messages

    def gap(self, resets: str) -> float:
        """The longest silence a hop reset by ``resets`` traffic sees
        ("either", "server" or "client")."""
        if resets == "server":
            return self.down
        if resets == "client":
            return self.up
        return min(self.up, self.down)


def beats(profile: Any) -> Beats:
    """How often each side sends, for ``profile`` (a soak.config Profile)."""
    target = profile.target
    dialect = target.protocol
    client, answered, server, server_answered = _shape(target, dialect)
    interval = float(profile.heartbeat.interval)
    server, source = _server_interval(target, dialect, server)
    up = down = math.inf
    parts = []
    if client:
        up = interval
        parts.append(f"the client every {interval:g} s")
        if answered:
            down = interval
    if server is not None:
        down = min(down, server)
        parts.append(f"the server every {server:g} s ({source})")
        if server_answered:
            up = min(up, server)
    why = f"{dialect}: " + (" and ".join(parts) if parts else "no heartbeat either way")
    return Beats(up, down, why)


def _shape(target: Any, dialect: str) -> tuple[bool, bool, float | None, bool]:
    """The dialect's shape, with what the profile changes in it: Engine.IO 3
    (the client pings), SockJS ``echo = true`` (the client's heartbeats are
    messages the echo endpoint sends back)."""
    shape = _SHAPES.get(dialect, (True, True, None, False))
    if dialect == "socket.io" and _engine_io(target) == 3:
        return _ENGINE_IO_3
    if dialect == "sockjs" and getattr(getattr(target, "sockjs", None), "echo", False) is True:
        return True, True, shape[2], shape[3]
    return shape


def _engine_io(target: Any) -> int:
    """The Engine.IO version the clients will speak: the table's ``eio``,
    else the URL's ``EIO=``, else 4 (as soak.protocols.socketio resolves it)."""
    try:
        return resolve(target.url, getattr(target, "socketio", None) or SocketIOConfig()).eio
    except ValueError:  # the profile's check reports it; here the default
        return 4


# a dialect's own table field that sets its server's interval
_SERVER_FIELDS = {
    "graphql-ws": ("graphql_ws", "keepalive"),
    "sockjs": ("sockjs", "heartbeat_delay"),
    "actioncable": ("actioncable", "beat_interval"),
}


def _server_interval(target: Any, dialect: str, default: float | None) -> tuple[float | None, str]:
    """The server's heartbeat interval: the dialect's own table, else the
    profile's [target.server_heartbeat], else the dialect's default."""
    if dialect in _SERVER_FIELDS:
        table, field = _SERVER_FIELDS[dialect]
        value = getattr(getattr(target, table, None), field, None)
        if isinstance(value, int | float) and value > 0:
            return float(value), f"[target.{table}] {field}"
    sh = getattr(target, "server_heartbeat", None)
    # only dialects whose server beats on its own: for request-response ones
    # [target.server_heartbeat] describes the server's timeout, not traffic
    if sh is not None and default is not None:
        return float(sh.interval), "[target.server_heartbeat] interval"
    if default is not None:
        return default, f"the {dialect} default"
    return None, ""


def race(b: Beats) -> list[tuple[str, float, float]]:
    """The common hops whose default idle timeout the gap of ``b`` reaches:
    (hop, its timeout, the gap), for hops reset by traffic either way."""
    gap = b.gap("either")
    return [(name, timeout, gap) for name, timeout in COMMON_HOPS if gap >= timeout]
