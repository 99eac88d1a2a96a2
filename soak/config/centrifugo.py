"""The Centrifugo dialect's configuration: its ``[target.centrifugo]``
table and the server heartbeat it implies (registered in
soak.config.tables.target.PROTOCOL_TABLES).

A Centrifugo (protocol v2) server sends ``{}`` every ``ping_interval``
(25 s, told in the connect reply's ``ping``) and, when the reply said
``pong: true``, disconnects with 3012 "no pong" a client whose ``{}``
answer has not come within its ``pong_timeout`` (10 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from soak.config.heartbeat import ServerHeartbeat
from soak.config.kinds import Duration, Toml
from soak.config.validation import Section

NO_PONG = 3012
NAME = Toml({"type": "string", "minLength": 1})


@dataclass(frozen=True)
class CentrifugoConfig:
    """``[target.centrifugo]``: what the connect command says and the server's timings."""

    # the connect command's client name
    name: Annotated[str, NAME] = "soak"
    # how long the server may take to answer the connect command
    connect_timeout: Duration = 5.0
    # the server's ping interval (its connect reply's "ping" overrides it)
    ping_interval: Duration = 25.0
    # the server's pong timeout: no {} answer within it and it closes 3012
    pong_timeout: Duration = 10.0
    # centrifuge-js's maxServerPingDelay: no ping for ping + this long and
    # the client closes the connection as a zombie
    max_server_ping_delay: Duration = 10.0


def no_pong_heartbeat(cfg: CentrifugoConfig) -> ServerHeartbeat:
    """The server's rule in soak's terms: a client that stops answering is
    closed 3012 at most ``ping_interval`` + ``pong_timeout`` after its last
    answer (soak.protocols.centrifugo judges 3012 by the pong timeout
    since the server's last ping)."""
    return ServerHeartbeat(
        interval=cfg.ping_interval,
        timeout=cfg.ping_interval + cfg.pong_timeout,
        max_missed=1,
        close_codes=(NO_PONG,),
        reason_pattern="no pong",
    )


def implied_heartbeat(table: object) -> ServerHeartbeat:
    cfg = table if isinstance(table, CentrifugoConfig) else CentrifugoConfig()
    return no_pong_heartbeat(cfg)


def parse_centrifugo(s: Section) -> CentrifugoConfig:
    ld = s.loader
    d = CentrifugoConfig()
    name = s.get("name", ld.string, d.name)
    if not name.strip():
        ld.fail(s.where("name"), 'expected a client name like "soak"', name)
    cfg = CentrifugoConfig(
        name=name,
        connect_timeout=s.get("connect_timeout", ld.positive_duration, d.connect_timeout),
        ping_interval=s.get("ping_interval", ld.positive_duration, d.ping_interval),
        pong_timeout=s.get("pong_timeout", ld.positive_duration, d.pong_timeout),
        max_server_ping_delay=s.get(
            "max_server_ping_delay", ld.positive_duration, d.max_server_ping_delay
        ),
    )
    s.finish()
    return cfg
