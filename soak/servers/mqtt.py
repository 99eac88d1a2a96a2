"""MQTT brokers on loopback: Debian's ``mosquitto`` (2.0), its WebSocket
listener on the recipe's port.

Two things Debian's mosquitto 2.0.11 needs that are easy to miss: it
exits ("Unable to start any listening sockets") with only a websockets
listener, so a plain MQTT listener (on another free loopback port) comes
too; and without ``socket_domain ipv4`` its websockets listener binds every
interface whatever the ``listener`` line says (soak.servers.start checks
with ``ss`` and refuses it).

Options (``soak server mosquitto --set K=V``): ``username`` and
``password`` (a password file made with ``mosquitto_passwd``; anonymous
clients are then refused), ``max_keepalive`` (seconds: an MQTT 5 client
that declares more is told this value in CONNACK's Server Keep Alive),
``log_type`` (mosquitto's, default ``notice``; ``all`` logs every packet).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from soak.servers.base import LOOPBACK, Recipe, ServerUnavailable, find_binary, free_port

OPTIONS = ("username", "password", "max_keepalive", "log_type")


def mosquitto_config(
    ws_port: int, mqtt_port: int, options: Mapping[str, str], password_file: Path | None
) -> str:
    """mosquitto.conf for a websockets listener on ``ws_port`` and a plain
    one on ``mqtt_port``, both on 127.0.0.1 only."""
    lines = [
        "# written by soak (soak.servers.mqtt)",
        "per_listener_settings false",
        f"listener {mqtt_port} {LOOPBACK}",
        "socket_domain ipv4",
        f"listener {ws_port} {LOOPBACK}",
        "protocol websockets",
        "socket_domain ipv4",
        "persistence false",
        "log_dest stdout",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "connection_messages true",
        # a broker started as root drops to the user mosquitto, which could
        # then not read this directory
        "user root",
    ]
    for kind in options.get("log_type", "notice").split(","):
        lines.append(f"log_type {kind.strip()}")
    if "max_keepalive" in options:
        lines.append(f"max_keepalive {_seconds(options['max_keepalive'])}")
    if password_file is not None:
        lines += ["allow_anonymous false", f"password_file {password_file}"]
    else:
        lines.append("allow_anonymous true")
    return "\n".join(lines) + "\n"


def _seconds(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"mosquitto: max_keepalive={raw}: expected whole seconds") from None
    if not 0 < value <= 65535:
        raise ValueError(f"mosquitto: max_keepalive={raw}: expected 1 to 65535 seconds")
    return value


def _password_file(workdir: Path, options: Mapping[str, str]) -> Path | None:
    user, password = options.get("username"), options.get("password")
    if user is None and password is None:
        return None
    if not user or password is None:
        raise ValueError(
            "mosquitto: username and password go together (--set username=U --set password=P)"
        )
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise ServerUnavailable(
            "mosquitto: mosquitto_passwd is not installed (Debian: apt-get install -y mosquitto)"
        )
    path = workdir / "passwd"
    path.unlink(missing_ok=True)
    done = subprocess.run(
        [tool, "-b", "-c", str(path), user, password],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        why = (done.stderr or done.stdout).decode(errors="replace").strip()
        raise ServerUnavailable(f"mosquitto: mosquitto_passwd failed: {why}")
    path.chmod(0o600)
    return path


def _mosquitto_argv(
    installed: Path | None, workdir: Path, port: int, options: Mapping[str, str]
) -> list[str]:
    conf = workdir / "mosquitto.conf"
    text = mosquitto_config(port, free_port(), options, _password_file(workdir, options))
    conf.write_text(text)
    return [find_binary("mosquitto") or "mosquitto", "-c", str(conf)]


MOSQUITTO = Recipe(
    name="mosquitto",
    dialect="mqtt",
    summary="Eclipse mosquitto 2 (Debian), MQTT 3.1.1 and 5 over WebSocket",
    argv=_mosquitto_argv,
    path="/",
    binary="mosquitto",
    debian="mosquitto",
    options=OPTIONS,
)

RECIPES: tuple[Recipe, ...] = (MOSQUITTO,)
