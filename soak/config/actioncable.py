"""The ActionCable dialect's configuration: its ``[target.actioncable]``
table (model and parser).

Rails' ActionCable server pings every connection every 3 s
(``BEAT_INTERVAL``, one timer for all) and expects nothing back; its
JavaScript client calls a connection stale when no ping came for 6 s (two
missed) and reconnects. The server never drops a quiet client, so there is
no server heartbeat timeout to judge: a dead connection is only ever seen
from the client's side (a zombie).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from soak.config.kinds import Duration, Toml
from soak.config.units import format_duration
from soak.config.validation import Section

BEAT_INTERVAL = 3.0  # ActionCable::Server::Connections::BEAT_INTERVAL
STALE_THRESHOLD = 6.0  # @rails/actioncable ConnectionMonitor.staleThreshold
IDENTIFIER = Toml(
    {
        "type": "object",
        "required": ["channel"],
        "description": 'the subscription\'s identifier, like { channel = "ChatChannel", room = 1 }',
    }
)


@dataclass(frozen=True)
class ActionCableConfig:
    """``[target.actioncable]``: an optional subscription, and the server's
    ping interval with the client's stale rule."""

    # subscribe after the welcome with this identifier (None: no subscription)
    identifier: Annotated[dict[str, Any] | None, IDENTIFIER] = None
    # the server's ping interval
    beat_interval: Duration = BEAT_INTERVAL
    # no ping for this long: the connection is stale (a zombie), as the official client says
    stale_after: Duration = STALE_THRESHOLD
    # how long the server may take to welcome, and to confirm the subscription
    welcome_timeout: Duration = 10.0


def identifier_text(identifier: dict[str, Any]) -> str:
    """The identifier as the official client writes it (JSON.stringify of
    the params, keys in their order): the server matches it as a string."""
    return json.dumps(identifier, separators=(",", ":"), allow_nan=False)


def parse_actioncable(s: Section) -> ActionCableConfig:
    ld = s.loader
    d = ActionCableConfig()
    cfg = ActionCableConfig(
        identifier=_identifier(s),
        beat_interval=s.get("beat_interval", ld.positive_duration, d.beat_interval),
        stale_after=s.get("stale_after", ld.positive_duration, d.stale_after),
        welcome_timeout=s.get("welcome_timeout", ld.positive_duration, d.welcome_timeout),
    )
    if cfg.stale_after <= cfg.beat_interval:
        ld.fail(
            s.where("stale_after"),
            f"expected more than beat_interval ({format_duration(cfg.beat_interval)}): "
            "every connection would be stale between two pings",
            s.data.get("stale_after", format_duration(cfg.stale_after)),
        )
    s.finish()
    return cfg


def _identifier(s: Section) -> dict[str, Any] | None:
    ld = s.loader
    where = s.where("identifier")
    raw = s.get("identifier", lambda w, v: v, None)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        ld.fail(where, 'expected a table like { channel = "ChatChannel" }', raw)
    channel = raw.get("channel")
    if not isinstance(channel, str) or not channel:
        ld.fail(where, 'expected a channel name in it, like { channel = "ChatChannel" }', raw)
    try:
        text = identifier_text(raw)
    except (TypeError, ValueError):
        ld.fail(
            where,
            "expected a table of JSON values (strings, numbers, booleans, arrays, "
            "tables; no dates or times)",
            raw,
        )
    copy: dict[str, Any] = json.loads(text)
    return copy
