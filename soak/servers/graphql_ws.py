"""The real graphql-ws servers: the reference implementation (npm
``graphql-ws`` with ``ws`` and ``graphql``) and its ``ws`` adapter, the
script soak/servers/files/graphql-ws-server.mjs; and the old protocol's,
npm ``subscriptions-transport-ws`` ("graphql-ws-legacy": options
``keepalive``, its ka interval in ms, default none, and ``token``).

Options (``soak server graphql-ws --set KEY=VALUE``, ``start(options=...)``):

- ``keepalive``: ms between its RFC 6455 pings, and how long it waits for
  the pong before it destroys the connection (default 12000; 0: none);
- ``init_wait``: its connectionInitWaitTimeout in ms (default 3000): no
  ``connection_init`` by then is close 4408;
- ``token``: connection_init's payload must carry ``{"token": TOKEN}``,
  else close 4403;
- ``pick_subprotocol``: ``false`` accepts the upgrade without choosing a
  subprotocol (a server that speaks another dialect).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from soak.servers.base import PACKAGE_DATA, Recipe

# the versions verified on 2026-12-03 (/work/shared/PROTOCOLS.md, section 2)
NPM = ("graphql-ws@6.4.2", "ws@8.23.1", "graphql@16.15.0")
SCRIPT = PACKAGE_DATA / "graphql-ws-server.mjs"


def _argv(installed: Path | None, workdir: Path, port: int, opts: Mapping[str, str]) -> list[str]:
    return ["node", str(SCRIPT)]


def _ms(name: str, value: str) -> str:
    if not value.isdigit():
        raise ValueError(f"graphql-ws: option {name}: expected milliseconds >= 0, got {value!r}")
    return value


def _env(opts: Mapping[str, str]) -> dict[str, str]:
    env: dict[str, str] = {"WS_PATH": "/graphql"}
    if "keepalive" in opts:
        env["KEEPALIVE"] = _ms("keepalive", opts["keepalive"])
    if "init_wait" in opts:
        env["INIT_WAIT"] = _ms("init_wait", opts["init_wait"])
    if "token" in opts:
        env["TOKEN"] = opts["token"]
    pick = opts.get("pick_subprotocol", "true")
    if pick not in ("true", "false"):
        raise ValueError(
            f"graphql-ws: option pick_subprotocol: expected true or false, got {pick!r}"
        )
    env["PICK_SUBPROTOCOL"] = pick
    return env


GRAPHQL_WS = Recipe(
    name="graphql-ws",
    dialect="graphql-ws",
    summary="graphql-ws 6.4.2 (graphql-transport-ws) with its ws adapter, npm",
    argv=_argv,
    path="/graphql",
    npm=NPM,
    env=_env,
    options=("keepalive", "init_wait", "token", "pick_subprotocol"),
)

LEGACY_NPM = ("subscriptions-transport-ws@0.11.0", "graphql@16.15.0")
LEGACY_SCRIPT = PACKAGE_DATA / "graphql-ws-legacy-server.mjs"


def _legacy_argv(
    installed: Path | None, workdir: Path, port: int, opts: Mapping[str, str]
) -> list[str]:
    return ["node", str(LEGACY_SCRIPT)]


def _legacy_env(opts: Mapping[str, str]) -> dict[str, str]:
    env: dict[str, str] = {"WS_PATH": "/graphql"}
    if "keepalive" in opts:
        env["KEEPALIVE"] = _ms("keepalive", opts["keepalive"])
    if "token" in opts:
        env["TOKEN"] = opts["token"]
    return env


# the old protocol (subprotocol graphql-ws): keepalive is its ka interval
GRAPHQL_WS_LEGACY = Recipe(
    name="graphql-ws-legacy",
    dialect="graphql-ws-legacy",
    summary="subscriptions-transport-ws 0.11.0 (the old graphql-ws subprotocol), npm",
    argv=_legacy_argv,
    path="/graphql",
    npm=LEGACY_NPM,
    env=_legacy_env,
    options=("keepalive", "token"),
)

RECIPES: tuple[Recipe, ...] = (GRAPHQL_WS, GRAPHQL_WS_LEGACY)
