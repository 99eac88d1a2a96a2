"""The real Socket.IO server: npm ``socket.io@4`` on loopback
(``soak server socket.io``). It speaks Engine.IO 4 (Socket.IO 3 and 4
clients) and, with ``allowEIO3``, Engine.IO 3 (Socket.IO 2 clients), on
the default namespace ``/`` and on ``/admin``; its script is
``files/socketio.js``.

Options (``soak server socket.io --set KEY=VALUE``; the tests pass them to
:func:`soak.servers.start`): ``ping_interval`` and ``ping_timeout`` in
milliseconds (the server's defaults: 25000 and 20000), ``auth_token`` (a
CONNECT without ``{"token": ...}`` is refused with CONNECT_ERROR "Not
authorized"), ``path`` (the Engine.IO path, default ``/socket.io/``) and
``disconnect_after`` (milliseconds after which the server disconnects
every socket: Socket.IO DISCONNECT, then the close)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from soak.servers.base import PACKAGE_DATA, Recipe

SCRIPT = "socketio.js"
_ENV = {
    "ping_interval": "PING_INTERVAL",
    "ping_timeout": "PING_TIMEOUT",
    "auth_token": "AUTH_TOKEN",
    "path": "SIO_PATH",
    "disconnect_after": "DISCONNECT_AFTER",
}
_MILLISECONDS = ("ping_interval", "ping_timeout", "disconnect_after")


def _argv(installed: Path | None, scratch: Path, port: int, opts: Mapping[str, str]) -> list[str]:
    return ["node", str(PACKAGE_DATA / SCRIPT)]


def _env(opts: Mapping[str, str]) -> dict[str, str]:
    for name in _MILLISECONDS:
        value = opts.get(name)
        if value is not None and not (value.isdigit() and int(value) > 0):
            raise ValueError(
                f"socket.io: option {name}={value!r}: expected milliseconds, a whole number > 0"
            )
    path = opts.get("path")
    if path is not None and not (path.startswith("/") and path.endswith("/")):
        raise ValueError(f"socket.io: option path={path!r}: expected a path like /socket.io/")
    return {_ENV[k]: v for k, v in opts.items() if k in _ENV}


SOCKETIO = Recipe(
    name="socket.io",
    dialect="socket.io",
    summary="npm socket.io@4 (Engine.IO 4, and 3 with allowEIO3), namespaces / and /admin",
    argv=_argv,
    path="/socket.io/",
    npm=("socket.io@4",),
    env=_env,
    options=tuple(_ENV),
)

RECIPES: tuple[Recipe, ...] = (SOCKETIO,)
