"""NATS over WebSocket's configuration: its ``[target.nats]`` table (model
and parser), the credentials read from the environment, and the server
heartbeat it implies (docs/dialects/nats.md).

nats-server sends ``PING`` every ``ping_interval`` (2 min by default) to a
client it has heard nothing from, and after ``ping_max`` (2) of them
without an answer it writes ``-ERR 'Stale Connection'`` and closes. soak
cannot read those settings from the server (INFO does not carry them): the
profile says them, to judge a stale close against them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from soak.config.heartbeat import ServerHeartbeat
from soak.config.kinds import NOT_IN_PROFILE, Duration, at_least
from soak.config.validation import Loader, Section

if TYPE_CHECKING:
    from soak.config.target import TargetConfig

DEFAULT_PING_INTERVAL = 120.0  # nats-server's ping_interval
DEFAULT_PING_MAX = 2
STALE = "Stale Connection"


@dataclass(frozen=True)
class NatsConfig:
    """``[target.nats]``: CONNECT's credentials and the server's ping rule."""

    # CONNECT's user and pass (the password from an environment variable)
    user: str | None = None
    password_env: str | None = None
    # CONNECT's auth_token, from an environment variable
    token_env: str | None = None
    # CONNECT's name: a template of soak's own id ("" sends none)
    name: str = "{client_id}"
    # the server's ping_interval and ping_max (to judge 'Stale Connection')
    ping_interval: Duration = DEFAULT_PING_INTERVAL
    ping_max: Annotated[int, at_least(1)] = DEFAULT_PING_MAX
    # how long the server may take to answer CONNECT + PING with PONG
    connect_timeout: Duration = 10.0
    password: Annotated[str | None, NOT_IN_PROFILE] = field(default=None, repr=False)
    token: Annotated[str | None, NOT_IN_PROFILE] = field(default=None, repr=False)


def parse_nats(s: Section) -> NatsConfig:
    ld = s.loader
    d = NatsConfig()
    user = s.get("user", ld.string, None)
    password_env = s.get("password_env", ld.string, None)
    token_env = s.get("token_env", ld.string, None)
    if password_env is not None and user is None:
        ld.fail(
            s.where("password_env"),
            "expected a user with it (CONNECT's user and pass)",
            password_env,
        )
    if user is not None and password_env is None:
        ld.fail(
            s.where("user"),
            "expected password_env with it (the variable holding the password)",
            user,
        )
    if token_env is not None and user is not None:
        ld.fail(
            s.where("token_env"),
            "expected either user and password_env or token_env, not both",
            token_env,
        )
    name = s.get("name", ld.string, d.name)
    if name and "{client_id}" not in name:
        ld.fail(s.where("name"), 'expected a template with {client_id} in it, or "" for none', name)
    try:
        name.format(client_id="x")
    except (KeyError, IndexError, ValueError):
        ld.fail(s.where("name"), "expected only {client_id} in the template", name)
    cfg = NatsConfig(
        user=user,
        password_env=password_env,
        token_env=token_env,
        name=name,
        ping_interval=s.get("ping_interval", ld.positive_duration, d.ping_interval),
        ping_max=s.get("ping_max", ld.at_least(1), d.ping_max),
        connect_timeout=s.get("connect_timeout", ld.positive_duration, d.connect_timeout),
    )
    s.finish()
    return cfg


def resolve_nats(ld: Loader, target: TargetConfig, environ: Mapping[str, str]) -> TargetConfig:
    """The password or token from its environment variable."""
    cfg = target.nats or NatsConfig()
    password = _secret(ld, "target.nats.password_env", cfg.password_env, environ, "password")
    token = _secret(ld, "target.nats.token_env", cfg.token_env, environ, "token")
    cfg = dataclasses.replace(cfg, password=password, token=token)
    return dataclasses.replace(target, nats=cfg)


def _secret(
    ld: Loader, where: str, name: str | None, environ: Mapping[str, str], what: str
) -> str | None:
    if name is None:
        return None
    value = environ.get(name)
    if not value:
        ld.fail(
            where,
            f"environment variable {name} is not set (it should hold the {what})",
            None,
            found=False,
        )
    return value


def nats_server_heartbeat(table: object) -> ServerHeartbeat:
    """What nats-server does about a quiet client: a PING every
    ping_interval it has heard nothing, and ``-ERR 'Stale Connection'``
    (then a close frame with code 1006) once ping_max are unanswered."""
    cfg = table if isinstance(table, NatsConfig) else NatsConfig()
    return ServerHeartbeat(
        interval=cfg.ping_interval,
        timeout=cfg.ping_interval * cfg.ping_max,
        max_missed=1,
        close_codes=(),
        reason_pattern=STALE,
        abrupt_after=None,
    )
