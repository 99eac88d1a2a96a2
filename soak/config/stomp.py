"""STOMP over WebSocket's configuration: its ``[target.stomp]`` table
(model and parser), the heart-beat soak offers in CONNECT, and the server
heartbeat it implies (docs/dialects/stomp.md).

CONNECT says ``heart-beat:cx,cy``: soak can send a beat every ``cx`` ms
(its ``[heartbeat] interval``) and wants one from the server every ``cy``
ms (``incoming``). The server answers ``sx,sy`` in CONNECTED; soak then
sends every max(cx, sy) (0 on either side: none) and expects the server's
every max(sx, cy), judged by silence: nothing from the server for
``tolerance`` x that interval and soak closes the connection as a zombie,
as @stomp/stompjs does (its heartbeatToleranceMultiplier, 2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from soak.config.heartbeat import HeartbeatConfig, ServerHeartbeat
from soak.config.kinds import NOT_IN_PROFILE, Duration, Toml
from soak.config.validation import Loader, Section

if TYPE_CHECKING:
    from soak.config.target import TargetConfig

VERSIONS = ("1.2", "1.1", "1.0")
ACCEPT = Toml({"type": "string", "pattern": r"^1\.[012](,1\.[012])*$"})
TOLERANCE = Toml({"type": "number", "minimum": 1})
STOMP_DIED = "STOMP died"
# RabbitMQ looks every negotiated client interval and closes "STOMP died"
# when nothing came since its last look: 1 to 2 intervals after the last
# beat it received (observed here: 1.1 s at 1 s; 5 s at 2 s in
# /work/shared notes), so never before one interval of the connection
SERVER_FACTOR = 1.0
LATEST_FACTOR = 2.5


@dataclass(frozen=True)
class StompConfig:
    """``[target.stomp]``: CONNECT's headers and the heart-beat soak asks for."""

    login: str | None = None
    passcode_env: str | None = None  # the environment variable holding the passcode
    vhost: str = "/"  # CONNECT's host header
    accept_version: Annotated[str, ACCEPT] = "1.2,1.1,1.0"
    # cy: how often soak wants the server's beat; "0s": none
    incoming: Duration = 10.0
    # a server silent for tolerance x its negotiated interval is a zombie
    tolerance: Annotated[float, TOLERANCE] = 2.0
    # how long the server may take to answer CONNECT
    connect_timeout: Duration = 10.0
    passcode: Annotated[str | None, NOT_IN_PROFILE] = field(default=None, repr=False)
    # cx: [heartbeat] interval (resolve_stomp)
    outgoing: Annotated[float | None, NOT_IN_PROFILE] = None


def parse_stomp(s: Section) -> StompConfig:
    ld = s.loader
    d = StompConfig()
    login = s.get("login", ld.string, None)
    passcode_env = s.get("passcode_env", ld.string, None)
    if passcode_env is not None and login is None:
        ld.fail(
            s.where("passcode_env"),
            "expected a login with it (CONNECT's login and passcode)",
            passcode_env,
        )
    vhost = s.get("vhost", ld.string, d.vhost)
    if not vhost or any(c in vhost for c in "\r\n:"):
        ld.fail(
            s.where("vhost"), 'expected a virtual host name like "/" (no colon, no newline)', vhost
        )
    accept = s.get("accept_version", ld.string, d.accept_version)
    parts = accept.split(",")
    if not parts or any(p not in VERSIONS for p in parts):
        ld.fail(
            s.where("accept_version"), 'expected versions from 1.0, 1.1, 1.2 like "1.2,1.1"', accept
        )
    if "1.0" in parts and len(parts) == 1:
        ld.fail(
            s.where("accept_version"),
            "expected 1.1 or 1.2 among them (STOMP 1.0 has no heart-beat)",
            accept,
        )
    incoming = s.get("incoming", ld.duration, d.incoming)
    tolerance = s.get("tolerance", lambda w, v: ld.number(w, v, 1.0), d.tolerance)
    cfg = StompConfig(
        login=login,
        passcode_env=passcode_env,
        vhost=vhost,
        accept_version=accept,
        incoming=incoming,
        tolerance=tolerance,
        connect_timeout=s.get("connect_timeout", ld.positive_duration, d.connect_timeout),
    )
    s.finish()
    return cfg


def resolve_stomp(
    ld: Loader, target: TargetConfig, hb: HeartbeatConfig, environ: Mapping[str, str]
) -> TargetConfig:
    """The passcode from its variable, cx from ``[heartbeat] interval``, and
    the server heartbeat soak's beats imply unless the profile gives one."""
    cfg = target.stomp or StompConfig()
    passcode = None
    if cfg.passcode_env is not None:
        passcode = environ.get(cfg.passcode_env)
        if not passcode:
            ld.fail(
                "target.stomp.passcode_env",
                f"environment variable {cfg.passcode_env} is not set (it should hold the passcode)",
                None,
                found=False,
            )
    if hb.interval < 0.001 or hb.interval != round(hb.interval, 3):
        ld.fail(
            "heartbeat.interval",
            'expected whole milliseconds with protocol = "stomp"',
            f"{hb.interval:g}s",
        )
    cfg = dataclasses.replace(cfg, passcode=passcode, outgoing=hb.interval)
    server = target.server_heartbeat or stomp_server_heartbeat(hb.interval)
    return dataclasses.replace(target, stomp=cfg, server_heartbeat=server)


def stomp_server_heartbeat(outgoing: float) -> ServerHeartbeat:
    """What a broker does about soak's beats every ``outgoing`` seconds:
    RabbitMQ closes 1000 "STOMP died" once it has had nothing from soak for
    one to about 2.5 x the negotiated interval."""
    return ServerHeartbeat(
        interval=outgoing,
        timeout=LATEST_FACTOR * outgoing,
        max_missed=1,
        close_codes=(),
        reason_pattern=STOMP_DIED,
        abrupt_after=None,
    )
