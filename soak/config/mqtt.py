"""MQTT over WebSocket's configuration: its ``[target.mqtt]`` table (model
and parser), the keepalive checked against ``[heartbeat]``, and the server
heartbeat it implies (docs/dialects/mqtt.md).

The keepalive soak declares in CONNECT is a promise: a control packet at
least every keepalive seconds. The broker holds soak to it with 1.5 x
keepalive since the last packet it received ([MQTT-3.1.2-24]), and soak's
only packets are its heartbeats (PINGREQ). So a heartbeat interval longer
than the keepalive breaks the promise: the broker would drop soak between
its own pings and the run would measure soak, not the server. Such a
profile is refused; by default the keepalive is the heartbeat interval
rounded up to whole seconds (at least 2 s: mosquitto computes 1.5 x
keepalive in whole seconds, so a keepalive of 1 s gets 1 s, not 1.5 s).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

from soak.config.heartbeat import HeartbeatConfig, ServerHeartbeat
from soak.config.kinds import NOT_IN_PROFILE, Duration, Toml
from soak.config.validation import Loader, Parser, Section

MQTT_VERSIONS = (4, 5)  # protocol levels: 4 is MQTT 3.1.1, 5 is MQTT 5
VERSION = Toml({"enum": list(MQTT_VERSIONS)})
CLIENT_ID_FIELDS = ("client_id",)
MAX_KEEPALIVE = 65535  # seconds: CONNECT's two bytes
MIN_DEFAULT_KEEPALIVE = 2
# how late after 1.5 x keepalive a broker's close still counts as its
# keepalive timeout: mosquitto 2.0.11 looks every 5 s, in whole seconds, for
# clients silent for more than floor(1.5 x keepalive) s, so up to about
# floor(1.5 x keepalive) + 7 s after the last packet (keepalive 2 s:
# closed 4.0 and 5.8 s after the last packet; 10 s: 15.8 s)
LATE_CLOSE = 7.5


@dataclass(frozen=True)
class MqttConfig:
    """``[target.mqtt]``: how soak connects to an MQTT broker over WebSocket."""

    version: Annotated[int, VERSION] = 4
    # whole seconds; None: the heartbeat interval rounded up (at least 2 s)
    keepalive: Duration | None = None
    # the MQTT client id: a template of soak's own id (soak-000042), or ""
    # for an id the server assigns
    client_id: str = "{client_id}"
    clean_session: bool = True  # MQTT 5: Clean Start
    username: str | None = None
    password_env: str | None = None  # the environment variable holding the password
    password: Annotated[str | None, NOT_IN_PROFILE] = field(default=None, repr=False)
    # [heartbeat] interval, for a broker's Server Keep Alive (resolve_mqtt)
    heartbeat_interval: Annotated[float | None, NOT_IN_PROFILE] = None

    def client_id_for(self, soak_id: str) -> str:
        return self.client_id.format(client_id=soak_id)

    @property
    def declared_keepalive(self) -> int:
        """The keepalive CONNECT says (resolved by :func:`resolve_mqtt`)."""
        return 0 if self.keepalive is None else int(self.keepalive)


def parse_mqtt(s: Section) -> MqttConfig:
    ld = s.loader
    d = MqttConfig()
    version = s.get("version", _version(ld), d.version)
    keepalive = s.get("keepalive", ld.duration, None)
    if keepalive is not None and (keepalive != int(keepalive) or keepalive > MAX_KEEPALIVE):
        ld.fail(
            s.where("keepalive"),
            f'expected whole seconds from "0s" to "{MAX_KEEPALIVE}s"',
            s.data.get("keepalive"),
        )
    client_id = s.get("client_id", ld.string, d.client_id)
    _check_template(ld, s.where("client_id"), client_id)
    clean = s.get("clean_session", ld.boolean, d.clean_session)
    if client_id == "" and not clean:
        ld.fail(
            s.where("client_id"),
            "expected an id (an empty one, assigned by the server, needs clean_session = true)",
            client_id,
        )
    username = s.get("username", ld.string, None)
    password_env = s.get("password_env", ld.string, None)
    if password_env is not None and username is None and version == 4:
        ld.fail(
            s.where("password_env"),
            "expected a username with it (MQTT 3.1.1 sends no password without a user name)",
            password_env,
        )
    cfg = MqttConfig(
        version=version,
        keepalive=keepalive,
        client_id=client_id,
        clean_session=clean,
        username=username,
        password_env=password_env,
    )
    s.finish()
    return cfg


def _version(ld: Loader) -> Parser[int]:
    def parse(where: str, raw: object) -> int:
        if isinstance(raw, bool) or raw not in MQTT_VERSIONS:
            ld.fail(where, "expected 4 (MQTT 3.1.1) or 5 (MQTT 5)", raw)
        assert isinstance(raw, int)
        return raw

    return parse


def _check_template(ld: Loader, where: str, template: str) -> None:
    """``{client_id}`` is the one placeholder; an id without it would be the
    same for every client, and a broker lets one session per id live (each
    connect takes the previous one's over)."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        ld.fail(where, f'expected a template like "{{client_id}}" ({exc})', template)
    bad = [n for n in names if n not in CLIENT_ID_FIELDS]
    if bad:
        ld.fail(where, f"expected only {{client_id}} in the template, not {{{bad[0]}}}", template)
    if template and not names:
        ld.fail(
            where,
            "expected {client_id} in it (one fixed id for every client: each connect would "
            "take the previous client's session over)",
            template,
        )
    if len(template.encode()) > 0xFFFF - 64:
        ld.fail(where, "expected an id shorter than 65,000 bytes", template[:20] + "...")


def resolve_mqtt(
    ld: Loader,
    cfg: MqttConfig | None,
    server: ServerHeartbeat | None,
    hb: HeartbeatConfig,
    environ: Mapping[str, str],
) -> tuple[MqttConfig, ServerHeartbeat | None]:
    """What spans tables: the keepalive (its default from ``[heartbeat]``,
    and a heartbeat interval longer than it refused), the password from its
    variable, and the server heartbeat the keepalive implies unless the
    profile gives one."""
    cfg = cfg or MqttConfig()
    keepalive = cfg.keepalive
    if keepalive is None:
        keepalive = float(max(MIN_DEFAULT_KEEPALIVE, math.ceil(hb.interval - 1e-9)))
        if keepalive > MAX_KEEPALIVE:
            ld.fail(
                "heartbeat.interval",
                f'expected at most {MAX_KEEPALIVE}s with protocol = "mqtt" '
                "(the longest keepalive MQTT can declare)",
                hb.interval,
            )
    elif keepalive > 0 and hb.interval > keepalive:
        ld.fail(
            "heartbeat.interval",
            f"expected at most target.mqtt.keepalive ({keepalive:g}s): soak's PINGREQs are "
            "its only packets, so the broker would drop it between two of them "
            f"(1.5 x keepalive = {1.5 * keepalive:g}s without a packet)",
            _shown(hb.interval),
            found=True,
        )
    password = None
    if cfg.password_env is not None:
        password = environ.get(cfg.password_env)
        if not password:
            ld.fail(
                "target.mqtt.password_env",
                f"environment variable {cfg.password_env} is not set (it should hold the password)",
                None,
                found=False,
            )
    cfg = MqttConfig(
        version=cfg.version,
        keepalive=keepalive,
        client_id=cfg.client_id,
        clean_session=cfg.clean_session,
        username=cfg.username,
        password_env=cfg.password_env,
        password=password,
        heartbeat_interval=hb.interval,
    )
    if server is None and keepalive > 0:  # keepalive 0: the broker never times soak out
        server = mqtt_server_heartbeat(int(keepalive))
    return cfg, server


def _shown(seconds: float) -> str:
    return f"{seconds:g}s"


def mqtt_server_heartbeat(keepalive: int) -> ServerHeartbeat:
    """What a broker does about a keepalive of ``keepalive`` seconds: it
    wants a packet every ``keepalive``, and closes the network connection
    1.5 x keepalive after the last one it received. mosquitto closes TCP
    without a close frame; RabbitMQ closes 1000 "MQTT died"; an MQTT 5
    broker may say DISCONNECT 0x8D "keep alive timeout" first. The dialect
    (soak.protocols.mqtt) judges those closes with the keepalive the server
    enforces (its Server Keep Alive, when it sends one)."""
    k = float(keepalive)
    return ServerHeartbeat(
        interval=k,
        timeout=1.5 * k,
        max_missed=1,
        close_codes=(),
        reason_pattern=MQTT_DIED,
        abrupt_after=None,
    )


MQTT_DIED = "MQTT died"
MQTT_DIED_RE = re.compile(MQTT_DIED, re.IGNORECASE)
