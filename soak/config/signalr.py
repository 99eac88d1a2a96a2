"""The SignalR dialect's configuration: its ``[target.signalr]`` table and
the server heartbeat it implies (registered in
soak.config.tables.target.PROTOCOL_TABLES).

An ASP.NET Core hub sends ``{"type":6}`` when it has sent nothing for its
``KeepAliveInterval`` (15 s) and drops a client it has received nothing
from for its ``ClientTimeoutInterval`` (30 s); the JS client gives a
server up after ``serverTimeoutInMilliseconds`` (30 s) without a message.
"""

from __future__ import annotations

from dataclasses import dataclass

from soak.config.heartbeat import ServerHeartbeat
from soak.config.kinds import Duration
from soak.config.units import format_duration
from soak.config.validation import Section


@dataclass(frozen=True)
class SignalrConfig:
    """``[target.signalr]``: the hub's timings and the client's timeout."""

    # the hub's KeepAliveInterval: it pings when it sent nothing for this long
    keep_alive: Duration = 15.0
    # the hub's ClientTimeoutInterval: nothing from the client for this long
    # and it drops the connection
    client_timeout: Duration = 30.0
    # the JS client's serverTimeoutInMilliseconds: no message from the hub
    # for this long closes the connection as a zombie
    server_timeout: Duration = 30.0
    # how long the hub may take to answer the handshake
    handshake_timeout: Duration = 15.0


def client_timeout_heartbeat(cfg: SignalrConfig) -> ServerHeartbeat:
    """The hub's client timeout as a server heartbeat (judged by
    soak.protocols.signalr: by how long the client had sent nothing)."""
    return ServerHeartbeat(
        interval=cfg.keep_alive,
        timeout=cfg.client_timeout,
        max_missed=1,
        close_codes=(),
        reason_pattern="timeout",
    )


def implied_heartbeat(table: object) -> ServerHeartbeat:
    cfg = table if isinstance(table, SignalrConfig) else SignalrConfig()
    return client_timeout_heartbeat(cfg)


def parse_signalr(s: Section) -> SignalrConfig:
    ld = s.loader
    d = SignalrConfig()
    cfg = SignalrConfig(
        keep_alive=s.get("keep_alive", ld.positive_duration, d.keep_alive),
        client_timeout=s.get("client_timeout", ld.positive_duration, d.client_timeout),
        server_timeout=s.get("server_timeout", ld.positive_duration, d.server_timeout),
        handshake_timeout=s.get("handshake_timeout", ld.positive_duration, d.handshake_timeout),
    )
    if cfg.server_timeout <= cfg.keep_alive:
        ld.fail(
            s.where("server_timeout"),
            f"expected more than keep_alive ({format_duration(cfg.keep_alive)}): "
            "every quiet connection would be closed between two pings of the hub",
            s.data.get("server_timeout", format_duration(cfg.server_timeout)),
        )
    s.finish()
    return cfg
