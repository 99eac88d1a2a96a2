"""The Phoenix Channels dialect's configuration: its ``[target.phoenix]``
table and the server heartbeat it implies (registered in
soak.config.tables.target.PROTOCOL_TABLES).

A Phoenix endpoint closes a WebSocket it has received nothing on for its
``websocket: [timeout: ...]`` (60 s by default); under Bandit that close is
1002 with an empty reason (docs/dialects/phoenix.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from soak.config.heartbeat import ServerHeartbeat
from soak.config.kinds import Duration, Toml
from soak.config.validation import Section

# Phoenix.Endpoint's websocket :timeout default, seconds
DEFAULT_IDLE_TIMEOUT = 60.0
# phoenix.js DEFAULT_TIMEOUT: how long a push (the join) waits for its reply
DEFAULT_JOIN_TIMEOUT = 10.0
# what Bandit closes an idle WebSocket with (do_error(1002, :timeout))
IDLE_CLOSE = 1002
TOPIC = Toml({"type": "string", "minLength": 1, "description": 'a channel topic like "room:lobby"'})
PAYLOAD = Toml({"type": "object", "description": "phx_join's payload (any TOML table)"})


@dataclass(frozen=True)
class PhoenixConfig:
    """``[target.phoenix]``: an optional channel join and the server's idle timeout."""

    # join this channel after the upgrade (phx_join); None: heartbeats only
    topic: Annotated[str | None, TOPIC] = None
    # phx_join's payload (the channel's join params)
    payload: Annotated[dict[str, Any] | None, PAYLOAD] = None
    # how long the join may take to be answered
    join_timeout: Duration = DEFAULT_JOIN_TIMEOUT
    # the endpoint's websocket timeout: it closes a connection it received
    # nothing on for this long (Bandit: 1002, empty reason)
    idle_timeout: Duration = DEFAULT_IDLE_TIMEOUT


def idle_heartbeat(idle_timeout: float) -> ServerHeartbeat:
    """The endpoint's idle close as a server heartbeat: 1002 with an empty
    reason after ``idle_timeout`` without data from the client."""
    return ServerHeartbeat(
        interval=idle_timeout,
        timeout=idle_timeout,
        max_missed=1,
        close_codes=(IDLE_CLOSE,),
        reason_pattern="^$",
    )


def implied_heartbeat(table: object) -> ServerHeartbeat:
    timeout = table.idle_timeout if isinstance(table, PhoenixConfig) else DEFAULT_IDLE_TIMEOUT
    return idle_heartbeat(timeout)


def parse_phoenix(s: Section) -> PhoenixConfig:
    ld = s.loader
    d = PhoenixConfig()
    topic = s.get("topic", ld.string, None)
    if topic is not None and not topic.strip():
        ld.fail(s.where("topic"), 'expected a channel topic like "room:lobby"', topic)
    payload = json_table(s, "payload", "phx_join's payload")
    if payload is not None and topic is None:
        ld.fail(
            s.where("payload"),
            "is phx_join's payload: set topic too (the channel to join)",
            payload,
        )
    cfg = PhoenixConfig(
        topic=topic,
        payload=payload,
        join_timeout=s.get("join_timeout", ld.positive_duration, d.join_timeout),
        idle_timeout=s.get("idle_timeout", ld.positive_duration, d.idle_timeout),
    )
    s.finish()
    return cfg


def json_table(s: Section, key: str, what: str) -> dict[str, Any] | None:
    """A TOML table of plain JSON values (the run's own copy), or None."""
    ld = s.loader
    raw = s.get(key, lambda w, v: v, None)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        ld.fail(s.where(key), f"expected a table ({what})", raw)
    try:
        text = json.dumps(raw, allow_nan=False)
    except (TypeError, ValueError):
        ld.fail(
            s.where(key),
            "expected a table of JSON values (strings, numbers, booleans, arrays, "
            "tables; no dates or times)",
            raw,
        )
    copy: dict[str, Any] = json.loads(text)
    return copy
