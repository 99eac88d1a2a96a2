"""RabbitMQ on loopback: Debian's ``rabbitmq-server`` (3.10) with its
``rabbitmq_web_stomp`` and ``rabbitmq_web_mqtt`` plugins, one broker with
two WebSocket listeners (path ``/ws``): recipe ``rabbitmq`` (STOMP on the
recipe's port) and ``rabbitmq-mqtt`` (MQTT on it). The other listener gets
another free loopback port, written to ``ports.json`` in the broker's
directory (option ``web_mqtt_port`` / ``web_stomp_port`` pins it).

Everything the broker opens stays on 127.0.0.1: its node name
(``soak<port>@localhost``), cookie (``HOME``), mnesia and log directories
are under the broker's directory; epmd is started here, in the broker's
process group, on a free port and 127.0.0.1 (so it is stopped with the
broker, by its PID's group); the Erlang distribution port is pinned to a
free one on 127.0.0.1; AMQP's listener is off, STOMP's and MQTT's plain TCP
listeners are on free loopback ports. It takes ~15 s to listen.

Options: ``user`` and ``password`` (the broker's default user, instead of
guest/guest), ``web_mqtt_port``, ``web_stomp_port``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path

from soak.servers.base import LOOPBACK, Recipe, ServerUnavailable, find_binary, free_port

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
OPTIONS = ("user", "password", "web_mqtt_port", "web_stomp_port")
START_TIMEOUT = 60.0  # seconds: it listens after ~15 s on an idle machine


def rabbitmq_config(
    stomp_ws: int, mqtt_ws: int, stomp_tcp: int, mqtt_tcp: int, opts: Mapping[str, str]
) -> str:
    lines = [
        "# written by soak (soak.servers.rabbitmq)",
        "listeners.tcp = none",
        f"stomp.listeners.tcp.1 = {LOOPBACK}:{stomp_tcp}",
        f"web_stomp.tcp.ip = {LOOPBACK}",
        f"web_stomp.tcp.port = {stomp_ws}",
        f"mqtt.listeners.tcp.default = {LOOPBACK}:{mqtt_tcp}",
        f"web_mqtt.tcp.ip = {LOOPBACK}",
        f"web_mqtt.tcp.port = {mqtt_ws}",
        "log.console = true",
        "log.console.level = info",
        "log.file = false",
    ]
    user, password = opts.get("user"), opts.get("password")
    if (user is None) != (password is None):
        raise ValueError("rabbitmq: user and password go together (--set user=U --set password=P)")
    if user is not None:
        lines += [f"default_user = {user}", f"default_pass = {password}"]
        lines += ["mqtt.default_user = " + user, "mqtt.default_pass = " + str(password)]
        lines.append("loopback_users = none")
    return "\n".join(lines) + "\n"


def _port(opts: Mapping[str, str], name: str) -> int:
    raw = opts.get(name)
    if raw is None:
        return free_port()
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"rabbitmq: {name}={raw}: expected a port from 1 to 65535")
    return int(raw)


def _argv(mqtt_first: bool) -> object:
    def argv(
        installed: Path | None, workdir: Path, port: int, opts: Mapping[str, str]
    ) -> list[str]:
        if mqtt_first:
            stomp_ws, mqtt_ws = _port(opts, "web_stomp_port"), port
        else:
            stomp_ws, mqtt_ws = port, _port(opts, "web_mqtt_port")
        epmd = find_binary("epmd")
        if epmd is None:
            raise ServerUnavailable(
                "rabbitmq: epmd is not installed (Debian: apt-get install -y erlang-base)"
            )
        epmd_port, dist_port = free_port(), free_port()
        for sub in ("mnesia", "log", "home"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        conf = workdir / "rabbitmq.conf"
        conf.write_text(rabbitmq_config(stomp_ws, mqtt_ws, free_port(), free_port(), opts))
        (workdir / "enabled_plugins").write_text("[rabbitmq_web_stomp,rabbitmq_web_mqtt].\n")
        ports = {"web_stomp": stomp_ws, "web_mqtt": mqtt_ws, "epmd": epmd_port, "dist": dist_port}
        (workdir / "ports.json").write_text(json.dumps(ports) + "\n")
        env = {
            "HOME": workdir / "home",
            "RABBITMQ_CONFIG_FILE": conf,
            "RABBITMQ_ENABLED_PLUGINS_FILE": workdir / "enabled_plugins",
            "RABBITMQ_MNESIA_BASE": workdir / "mnesia",
            "RABBITMQ_LOG_BASE": workdir / "log",
            "RABBITMQ_NODENAME": f"soak{port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
            "RABBITMQ_DIST_PORT": dist_port,
            "ERL_EPMD_ADDRESS": LOOPBACK,
            "ERL_EPMD_PORT": epmd_port,
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        exports = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items())
        # epmd in the foreground of this process group (a -daemon epmd would
        # leave it and outlive the broker), ready before the broker asks it
        script = (
            f"export {exports}; "
            f"{shlex.quote(epmd)} -address {LOOPBACK} -port {epmd_port} & "
            f"i=0; until {shlex.quote(epmd)} -port {epmd_port} -names >/dev/null 2>&1; do "
            'i=$((i+1)); [ "$i" -gt 100 ] && exit 70; sleep 0.1; done; '
            f"exec {RABBITMQ_SERVER}"
        )
        return ["/bin/sh", "-c", script]

    return argv


def ports(workdir: Path) -> dict[str, int]:
    """The ports a broker started in ``workdir`` listens on, by name."""
    data: dict[str, int] = json.loads((workdir / "ports.json").read_text())
    return data


RABBITMQ = Recipe(
    name="rabbitmq",
    dialect="stomp",
    summary="RabbitMQ 3.10 (Debian) web-stomp, STOMP 1.2 over WebSocket (slow start: ~15 s)",
    argv=_argv(False),  # type: ignore[arg-type]
    path="/ws",
    binary="rabbitmq-server",
    debian="rabbitmq-server",
    options=OPTIONS,
    start_timeout=START_TIMEOUT,
)
RABBITMQ_MQTT = Recipe(
    name="rabbitmq-mqtt",
    dialect="mqtt",
    summary="RabbitMQ 3.10 (Debian) web-mqtt, MQTT 3.1.1 over WebSocket (slow start: ~15 s)",
    argv=_argv(True),  # type: ignore[arg-type]
    path="/ws",
    binary="rabbitmq-server",
    debian="rabbitmq-server",
    options=OPTIONS,
    start_timeout=START_TIMEOUT,
)

RECIPES: tuple[Recipe, ...] = (RABBITMQ, RABBITMQ_MQTT)
