"""The real SockJS server: sockjs-node (npm ``sockjs`` 0.3.24), an echo
endpoint, the script soak/servers/files/sockjs-server.js.

Options (``soak server sockjs --set KEY=VALUE``, ``start(options=...)``):

- ``heartbeat_delay``: ms between its heartbeats (default 25000);
- ``pong_wait``: ms it waits for the pong to its RFC 6455 ping before
  ``c[3000,"No response from heartbeat"]`` (sockjs-node fixes it at 10000;
  the script shortens that timer, for tests that want it within seconds);
- ``heartbeats``: ``ws-ping`` (sockjs-node's own) or ``h`` (``h`` frames
  and no timeout, as Spring's SockJS server does);
- ``prefix``: the SockJS prefix (default ``/echo``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from soak.servers.base import PACKAGE_DATA, Recipe

NPM = ("sockjs@0.3.24",)  # verified on 2026-12-03 (/work/shared/PROTOCOLS.md, 8c)
SCRIPT = PACKAGE_DATA / "sockjs-server.js"
PREFIX = "/echo"


def _argv(installed: Path | None, workdir: Path, port: int, opts: Mapping[str, str]) -> list[str]:
    return ["node", str(SCRIPT)]


def _ms(name: str, value: str) -> str:
    if not value.isdigit() or int(value) == 0:
        raise ValueError(f"sockjs: option {name}: expected milliseconds > 0, got {value!r}")
    return value


def _env(opts: Mapping[str, str]) -> dict[str, str]:
    prefix = opts.get("prefix", PREFIX)
    if not prefix.startswith("/"):
        raise ValueError(f"sockjs: option prefix: expected a path like /echo, got {prefix!r}")
    env = {"PREFIX": prefix}
    if "heartbeat_delay" in opts:
        env["HEARTBEAT_DELAY"] = _ms("heartbeat_delay", opts["heartbeat_delay"])
    if "pong_wait" in opts:
        env["PONG_WAIT"] = _ms("pong_wait", opts["pong_wait"])
        if env.get("HEARTBEAT_DELAY", "25000") == "10000" and env["PONG_WAIT"] != "10000":
            raise ValueError("sockjs: option pong_wait: cannot change with heartbeat_delay=10000")
    style = opts.get("heartbeats", "ws-ping")
    if style not in ("ws-ping", "h"):
        raise ValueError(f"sockjs: option heartbeats: expected ws-ping or h, got {style!r}")
    env["HEARTBEATS"] = style
    return env


SOCKJS = Recipe(
    name="sockjs",
    dialect="sockjs",
    summary="sockjs-node 0.3.24 (npm sockjs), an echo endpoint at /echo",
    argv=_argv,
    path=PREFIX,
    npm=NPM,
    env=_env,
    options=("heartbeat_delay", "pong_wait", "heartbeats", "prefix"),
)

RECIPES: tuple[Recipe, ...] = (SOCKJS,)
