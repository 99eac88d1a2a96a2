"""The Pusher Channels dialect's configuration: its ``[target.pusher]``
table and the server heartbeat it implies (registered in
soak.config.tables.target.PROTOCOL_TABLES).

A Pusher server pings a client it has heard nothing from for its
``activity_timeout`` (120 s, told in ``pusher:connection_established``) and
closes it with 4201 when no ``pusher:pong`` came within the pong timeout
(30 s recommended by the protocol document).
"""

from __future__ import annotations

from dataclasses import dataclass

from soak.config.heartbeat import ServerHeartbeat
from soak.config.kinds import Duration
from soak.config.validation import Section

PONG_TIMEOUT_CLOSE = 4201  # "Pong reply not received"


@dataclass(frozen=True)
class PusherConfig:
    """``[target.pusher]``: the server's timings as far as the client knows them."""

    # the server's activity_timeout (it says its own in connection_established)
    activity_timeout: Duration = 120.0
    # how long the server waits for the pong to its ping before closing 4201
    pong_timeout: Duration = 30.0
    # how long the server may take to send connection_established
    established_timeout: Duration = 10.0


def pong_heartbeat(cfg: PusherConfig) -> ServerHeartbeat:
    """The server's rule in soak's terms: a client whose frames stop is
    closed 4201 ``activity_timeout`` + ``pong_timeout`` after its last one
    (soak.protocols.pusher judges 4201 from the table itself)."""
    return ServerHeartbeat(
        interval=cfg.activity_timeout,
        timeout=cfg.activity_timeout + cfg.pong_timeout,
        max_missed=1,
        close_codes=(PONG_TIMEOUT_CLOSE,),
        reason_pattern="pong",
    )


def implied_heartbeat(table: object) -> ServerHeartbeat:
    return pong_heartbeat(table if isinstance(table, PusherConfig) else PusherConfig())


def parse_pusher(s: Section) -> PusherConfig:
    ld = s.loader
    d = PusherConfig()
    cfg = PusherConfig(
        activity_timeout=s.get("activity_timeout", ld.positive_duration, d.activity_timeout),
        pong_timeout=s.get("pong_timeout", ld.positive_duration, d.pong_timeout),
        established_timeout=s.get(
            "established_timeout", ld.positive_duration, d.established_timeout
        ),
    )
    s.finish()
    return cfg
