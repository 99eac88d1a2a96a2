"""NATS on loopback: Debian's ``nats-server`` (2.9) with its WebSocket
listener on the recipe's port, and its plain client listener on another
free loopback port (the server always opens one).

Options (``soak server nats --set K=V``, ``start(options=...)``):

- ``ping_interval``: seconds between the server's PINGs (default 120, as
  nats-server's own default; the tests use 1);
- ``ping_max``: unanswered PINGs before it says ``-ERR 'Stale
  Connection'`` and closes (default 2);
- ``user`` and ``password``: clients must send them in CONNECT (an
  ``authorization`` block; others get ``-ERR 'Authorization Violation'``);
- ``token``: the same with an ``auth_token`` instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from soak.servers.base import LOOPBACK, Recipe, find_binary, free_port

OPTIONS = ("ping_interval", "ping_max", "user", "password", "token")


def nats_config(ws_port: int, client_port: int, options: Mapping[str, str]) -> str:
    """nats-server's configuration: both listeners on 127.0.0.1 only, no
    monitoring port, the options above."""
    interval = _whole(options, "ping_interval", 120)
    ping_max = _whole(options, "ping_max", 2)
    lines = [
        "# written by soak (soak.servers.nats)",
        f'listen: "{LOOPBACK}:{client_port}"',
        f'ping_interval: "{interval}s"',
        f"ping_max: {ping_max}",
        "websocket {",
        f'  host: "{LOOPBACK}"',
        f"  port: {ws_port}",
        "  no_tls: true",
        "}",
    ]
    user, password, token = (options.get(k) for k in ("user", "password", "token"))
    if (user is None) != (password is None):
        raise ValueError("nats: user and password go together (--set user=U --set password=P)")
    if user is not None and token is not None:
        raise ValueError("nats: either user and password or token, not both")
    if user is not None:
        lines += ["authorization {", f"  user: {json.dumps(user)}"]
        lines += [f"  password: {json.dumps(password)}", "}"]
    elif token is not None:
        lines += ["authorization {", f"  token: {json.dumps(token)}", "}"]
    return "\n".join(lines) + "\n"


def _whole(options: Mapping[str, str], name: str, default: int) -> int:
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"nats: {name}={raw}: expected whole seconds (a count for ping_max) >= 1")
    return value


def _argv(
    installed: Path | None, workdir: Path, port: int, options: Mapping[str, str]
) -> list[str]:
    conf = workdir / "nats.conf"
    conf.write_text(nats_config(port, free_port(), options))
    return [find_binary("nats-server") or "nats-server", "-c", str(conf)]


NATS = Recipe(
    name="nats",
    dialect="nats",
    summary="nats-server 2.9 (Debian) with its WebSocket listener",
    argv=_argv,
    path="/",
    binary="nats-server",
    debian="nats-server",
    options=OPTIONS,
)

RECIPES: tuple[Recipe, ...] = (NATS,)
