"""The SockJS dialect's configuration: its ``[target.sockjs]`` table (model
and parser), the server heartbeat it implies (registered in
soak.config.tables.target.PROTOCOL_TABLES) and what the impairment proxy
calls a SockJS heartbeat.

sockjs-node (0.3.24) sends an RFC 6455 ping every ``heartbeat_delay``
(25 s by default) on its native WebSocket transport and, when the pong has
not come 10 s later, writes ``c[3000,"No response from heartbeat"]`` and
closes with 1000. Spring's SockJS writes an ``h`` frame instead (25 s),
expects nothing back, and drops nobody for being quiet: its client can
only judge the server by silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from soak.config.heartbeat import ServerHeartbeat
from soak.config.kinds import Duration, one_of
from soak.config.units import format_duration
from soak.config.validation import Section

# how the server beats: RFC 6455 pings (sockjs-node) or "h" frames (Spring)
STYLES = ("ws-ping", "h")
DEFAULT_DELAY = 25.0  # sockjs-node and Spring: heartbeat_delay / heartbeatTime
DEFAULT_WAIT = 10.0  # sockjs-node: the pong wait after its ping (fixed in its source)
# what sockjs-node says when the pong did not come
TIMEOUT_REASON = "No response from heartbeat"
# the client's heartbeat in echo mode: a message only soak sends
ECHO_PREFIX = "soak:"


@dataclass(frozen=True)
class SockjsConfig:
    """``[target.sockjs]``: how the server beats, and whether soak measures
    round trips through an echo endpoint."""

    heartbeats: Annotated[str, one_of(STYLES)] = "ws-ping"
    # the server's interval between heartbeats
    heartbeat_delay: Duration = DEFAULT_DELAY
    # ws-ping: how long it waits for the pong; h: how much longer than
    # heartbeat_delay soak waits for a frame before it gives the connection up
    heartbeat_timeout: Duration = DEFAULT_WAIT
    # how long the server may take to send the open frame "o"
    open_timeout: Duration = 10.0
    # true: soak's [heartbeat] goes out as a SockJS message that an echo
    # endpoint sends back (an RTT per heartbeat); false: soak sends nothing
    echo: bool = False


def sockjs_heartbeat(cfg: SockjsConfig) -> ServerHeartbeat | None:
    """sockjs-node's heartbeat timeout: its close carries the reason in a
    ``c`` frame (soak.protocols.sockjs reads it); a Spring server (``h``)
    never times a quiet client out."""
    if cfg.heartbeats != "ws-ping":
        return None
    return ServerHeartbeat(
        interval=cfg.heartbeat_delay,
        timeout=cfg.heartbeat_timeout,
        max_missed=1,
        close_codes=(),
        reason_pattern=f"^{TIMEOUT_REASON}$",
    )


def implied_heartbeat(table: object) -> ServerHeartbeat | None:
    """The server heartbeat a sockjs profile without [target.server_heartbeat]
    gets: from its [target.sockjs], else sockjs-node's defaults."""
    return sockjs_heartbeat(table if isinstance(table, SockjsConfig) else SockjsConfig())


def parse_sockjs(s: Section) -> SockjsConfig:
    ld = s.loader
    d = SockjsConfig()
    cfg = SockjsConfig(
        heartbeats=s.get("heartbeats", ld.choice(STYLES), d.heartbeats),
        heartbeat_delay=s.get("heartbeat_delay", ld.positive_duration, d.heartbeat_delay),
        heartbeat_timeout=s.get("heartbeat_timeout", ld.positive_duration, d.heartbeat_timeout),
        open_timeout=s.get("open_timeout", ld.positive_duration, d.open_timeout),
        echo=s.get("echo", ld.boolean, d.echo),
    )
    s.finish()
    return cfg


def describe(cfg: SockjsConfig) -> str:
    """One line for messages: how the server is expected to beat."""
    every = format_duration(cfg.heartbeat_delay)
    if cfg.heartbeats == "h":
        return f'"h" frames every {every}'
    return f"RFC 6455 pings every {every}, pong wait {format_duration(cfg.heartbeat_timeout)}"


def sockjs_kind(opcode: int, fin: bool, payload: bytes) -> str | None:
    """The impairment proxy's view: RFC 6455 pings and pongs, Spring's
    ``h`` frame (a ping nobody answers), and in echo mode soak's own
    message (a ping) and its echo (the pong)."""
    if opcode == 0x9:
        return "ping"
    if opcode == 0xA:
        return "pong"
    if opcode != 0x1 or not fin:
        return None
    if payload == b"h":
        return "ping"
    if payload.startswith(b'["' + ECHO_PREFIX.encode()):
        return "ping"
    if payload.startswith(b'a["' + ECHO_PREFIX.encode()):
        return "pong"
    return None
