"""The OpenClaw protocol's configuration: its ``[target.openclaw]`` table
(model and parser), its pre-auth budget and its server heartbeat. A protocol
with a table of its own is one module like this one, registered in
soak.config.tables.target.PROTOCOL_TABLES."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from soak.config.heartbeat import ServerHeartbeat
from soak.config.kinds import Toml, at_least, one_of
from soak.config.validation import Section

# what an OpenClaw Gateway accepts in connect.params (see docs/openclaw.md)
OPENCLAW_MODES = ("webchat", "cli", "ui", "backend", "node", "worker", "probe", "test")
OPENCLAW_ROLES = ("operator", "node", "worker")
NON_EMPTY = Toml({"type": "string", "minLength": 1})
SCOPES = Toml({"type": "array", "items": {"type": "string", "minLength": 1}})

# The OpenClaw Gateway's limit of unauthenticated sockets per source address:
# the default max_connecting for protocol = "openclaw".
OPENCLAW_PREAUTH_BUDGET = 32

# The OpenClaw Gateway's heartbeat, used for protocol = "openclaw" when the
# profile has no [target.server_heartbeat]: a ping every 25 s from
# authentication; a client whose pong has not come by the next tick is
# terminated with no close frame, so the end falls at 50, 75, ... s.
OPENCLAW_SERVER_HEARTBEAT = ServerHeartbeat(
    interval=25.0,
    timeout=50.0,
    max_missed=1,
    close_codes=(),
    reason_pattern="heartbeat",
    abrupt_tolerance=2.0,
    abrupt_period=25.0,
)


@dataclass(frozen=True)
class OpenClawConfig:
    """``[target.openclaw]``: who the client says it is in its ``connect``
    request. The token comes from ``target.token_env``."""

    client_id: Annotated[str, NON_EMPTY] = "gateway-client"  # one of the gateway's fixed list
    mode: Annotated[str, one_of(OPENCLAW_MODES)] = "backend"
    role: Annotated[str, one_of(OPENCLAW_ROLES)] = "operator"
    scopes: Annotated[tuple[str, ...], SCOPES] = ("operator.read",)
    # the largest text frame accepted, in characters (the gateway's own
    # policy.maxPayload); a larger one is a protocol error on its connection
    max_frame: Annotated[int, at_least(1024)] = 26_214_400


def parse_openclaw(s: Section) -> OpenClawConfig:
    ld = s.loader
    d = OpenClawConfig()
    client_id = s.get("client_id", ld.string, d.client_id)
    if not client_id:
        ld.fail(s.where("client_id"), 'expected a client id like "gateway-client"', client_id)
    scopes = s.get("scopes", lambda w, v: v, list(d.scopes))
    if not isinstance(scopes, list) or not all(isinstance(x, str) and x for x in scopes):
        ld.fail(s.where("scopes"), 'expected a list of scopes like ["operator.read"]', scopes)
    cfg = OpenClawConfig(
        client_id=client_id,
        mode=s.get("mode", ld.choice(OPENCLAW_MODES), d.mode),
        role=s.get("role", ld.choice(OPENCLAW_ROLES), d.role),
        scopes=tuple(scopes),
        max_frame=s.get("max_frame", ld.at_least(1024), d.max_frame),
    )
    s.finish()
    return cfg
