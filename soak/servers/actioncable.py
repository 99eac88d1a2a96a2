"""The real ActionCable server: Debian's ``ruby-actioncable`` (6.1) under
``puma``, with no Rails app: the rackup file
soak/servers/files/actioncable-config.ru mounts ``ActionCable.server`` at
``/cable`` with one channel, ``HeartbeatChannel`` (install:
``apt-get install -y --no-install-recommends ruby-actioncable puma``).

Options (``soak server actioncable --set KEY=VALUE``):

- ``beat_interval``: seconds between its pings (ActionCable's fixed
  ``BEAT_INTERVAL``, 3; the rackup file redefines it, for short tests);
- ``token``: the upgrade's ``?token=`` must match, else ``disconnect``
  "unauthorized" with reconnect false;
- ``disconnect_after``: seconds; then every connection gets ``disconnect``
  "server_restart" (reconnect true) and a close;
- ``reject``: ``true`` rejects every subscription.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from soak.servers.base import LOOPBACK, PACKAGE_DATA, Recipe, find_binary

RACKUP = PACKAGE_DATA / "actioncable-config.ru"
_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


def _argv(installed: Path | None, workdir: Path, port: int, opts: Mapping[str, str]) -> list[str]:
    puma = find_binary("puma") or "puma"
    return [puma, "--bind", f"tcp://{LOOPBACK}:{port}", "--threads", "1:8", str(RACKUP)]


def _seconds(name: str, value: str) -> str:
    if not _SECONDS.fullmatch(value) or float(value) <= 0:
        raise ValueError(f"actioncable: option {name}: expected seconds > 0, got {value!r}")
    return value


def _env(opts: Mapping[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    if "beat_interval" in opts:
        env["BEAT_INTERVAL"] = _seconds("beat_interval", opts["beat_interval"])
    if "disconnect_after" in opts:
        env["DISCONNECT_AFTER"] = _seconds("disconnect_after", opts["disconnect_after"])
    if "token" in opts:
        env["TOKEN"] = opts["token"]
    reject = opts.get("reject", "false")
    if reject not in ("true", "false"):
        raise ValueError(f"actioncable: option reject: expected true or false, got {reject!r}")
    env["REJECT"] = reject
    return env


ACTIONCABLE = Recipe(
    name="actioncable",
    dialect="actioncable",
    summary="Rails ActionCable 6.1 under puma 5 (Debian ruby-actioncable, puma), no Rails app",
    argv=_argv,
    path="/cable",
    binary="puma",
    debian="ruby-actioncable puma",
    env=_env,
    options=("beat_interval", "token", "disconnect_after", "reject"),
)

RECIPES: tuple[Recipe, ...] = (ACTIONCABLE,)
