"""The ``[target]`` table and its sub-tables. A protocol's own table
(``[target.openclaw]``) is read by the parser registered for it in
:data:`PROTOCOL_TABLES`."""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from soak.addresses import family_of, parse_host_port, parse_source_ips
from soak.config import centrifugo, phoenix, pusher, signalr
from soak.config.actioncable import parse_actioncable
from soak.config.dialect import implied_heartbeat as dialect_heartbeat
from soak.config.dialect import parse_dialect
from soak.config.graphql_ws import implied_heartbeat, parse_graphql_ws, parse_graphql_ws_legacy
from soak.config.heartbeat import ServerHeartbeat
from soak.config.mqtt import parse_mqtt
from soak.config.nats import nats_server_heartbeat, parse_nats
from soak.config.openclaw import OPENCLAW_SERVER_HEARTBEAT, parse_openclaw
from soak.config.socketio import SOCKETIO_SERVER_HEARTBEAT, check_socketio, parse_socketio
from soak.config.sockjs import implied_heartbeat as sockjs_heartbeat
from soak.config.sockjs import parse_sockjs
from soak.config.stomp import parse_stomp
from soak.config.tables.hops import NO_HOPS, parse_hops
from soak.config.target import PROTOCOLS, Secret, StatsConfig, TargetConfig
from soak.config.validation import Loader, Parser, Section


@dataclass(frozen=True)
class ProtocolTable:
    """``[target.NAME]``: a table only ``protocol`` uses, read by ``parse``
    into the TargetConfig field of the same name."""

    protocol: str
    parse: Callable[[Section], object]
    # the server heartbeat the protocol implies when the profile gives none:
    # fixed, or made from the protocol's table (None when the profile has none)
    server_heartbeat: ServerHeartbeat | Callable[[object], ServerHeartbeat | None] | None = None
    # checks of the whole [target] for this protocol (its URL against the
    # table): (loader, where, target), failing through the loader
    check: Callable[[Loader, str, TargetConfig], None] | None = None


PROTOCOL_TABLES: dict[str, ProtocolTable] = {
    "openclaw": ProtocolTable("openclaw", parse_openclaw, OPENCLAW_SERVER_HEARTBEAT),
    "dialect": ProtocolTable("custom", parse_dialect, dialect_heartbeat),
    "mqtt": ProtocolTable("mqtt", parse_mqtt),  # its server heartbeat: resolve_mqtt
    "graphql_ws": ProtocolTable("graphql-ws", parse_graphql_ws, implied_heartbeat),
    "graphql_ws_legacy": ProtocolTable("graphql-ws-legacy", parse_graphql_ws_legacy),
    "socketio": ProtocolTable(
        "socket.io", parse_socketio, SOCKETIO_SERVER_HEARTBEAT, check_socketio
    ),
    "sockjs": ProtocolTable("sockjs", parse_sockjs, sockjs_heartbeat),
    "actioncable": ProtocolTable("actioncable", parse_actioncable),  # no server timeout
    "phoenix": ProtocolTable("phoenix", phoenix.parse_phoenix, phoenix.implied_heartbeat),
    "signalr": ProtocolTable("signalr", signalr.parse_signalr, signalr.implied_heartbeat),
    "pusher": ProtocolTable("pusher", pusher.parse_pusher, pusher.implied_heartbeat),
    "centrifugo": ProtocolTable(
        "centrifugo", centrifugo.parse_centrifugo, centrifugo.implied_heartbeat
    ),
    "stomp": ProtocolTable("stomp", parse_stomp),  # its server heartbeat: resolve_stomp
    "nats": ProtocolTable("nats", parse_nats, nats_server_heartbeat),
}


def parse_target(s: Section, environ: Mapping[str, str]) -> TargetConfig:
    ld = s.loader
    d = TargetConfig()
    url = s.require("url", ld.url)
    protocol = s.get("protocol", ld.choice(PROTOCOLS), d.protocol)
    headers_raw = s.get("headers", ld.section, None)
    headers: list[tuple[str, str]] = []
    if headers_raw is not None:
        for k, v in headers_raw.data.items():
            headers.append((k, ld.string(headers_raw.where(k), v)))
    token_env = s.get("token_env", ld.string, None)
    token = None
    if token_env is not None:
        value = environ.get(token_env)
        if not value:
            ld.fail(
                s.where("token_env"),
                f"environment variable {token_env} is not set (it should hold the token)",
                None,
                found=False,
            )
        token = Secret(str(value))
    fields: dict[str, Any] = dict(
        url=url,
        protocol=protocol,
        headers=tuple(headers),
        token_env=token_env,
        token_header=s.get("token_header", ld.string, d.token_header),
        token_prefix=s.get("token_prefix", ld.string, d.token_prefix),
        connect_timeout=s.get("connect_timeout", ld.positive_duration, d.connect_timeout),
        max_message=s.get("max_message", ld.at_least(1024), d.max_message),
        tls_verify=s.get("tls_verify", ld.boolean, d.tls_verify),
        ca_file=s.get("ca_file", ld.existing_file, d.ca_file),
        server_heartbeat=s.get(
            "server_heartbeat", lambda w, v: parse_server_heartbeat(ld.section(w, v)), None
        ),
        stats=s.get("stats", lambda w, v: parse_stats(ld.section(w, v)), None),
        token=token,
    )
    for name, table in PROTOCOL_TABLES.items():
        fields[name] = s.get(name, _protocol_table(ld, table), None)
    no_ips: tuple[str, ...] = ()
    no_hosts: tuple[tuple[str, int], ...] = ()
    fields["source_ips"] = s.get("source_ips", source_ips(ld), no_ips)
    fields["connect_to"] = s.get("connect_to", _connect_to(ld), no_hosts)
    fields["hops"] = s.get("hops", lambda w, v: parse_hops(ld, w, v), NO_HOPS)
    target = TargetConfig(**fields)
    s.finish()
    for name, table in PROTOCOL_TABLES.items():
        if fields[name] is not None and protocol != table.protocol:
            ld.fail(s.where(name), f'is only used with protocol = "{table.protocol}"', protocol)
        implied = table.server_heartbeat
        if callable(implied):
            implied = implied(fields[name])
        if protocol == table.protocol and target.server_heartbeat is None and implied:
            target = dataclasses.replace(target, server_heartbeat=implied)
        if protocol == table.protocol and table.check is not None:
            table.check(ld, s.where(name) if fields[name] is not None else s.where("url"), target)
    check_families(ld, s.where("source_ips"), target)
    return target


def _protocol_table(ld: Loader, table: ProtocolTable) -> Parser[object]:
    return lambda where, raw: table.parse(ld.section(where, raw))


def source_ips(ld: Loader) -> Parser[tuple[str, ...]]:
    def parse(where: str, raw: Any) -> tuple[str, ...]:
        try:
            return parse_source_ips(raw)
        except ValueError as exc:
            return ld.fail(where, str(exc), raw)

    return parse


def _connect_to(ld: Loader) -> Parser[tuple[tuple[str, int], ...]]:
    def parse(where: str, raw: Any) -> tuple[tuple[str, int], ...]:
        if not isinstance(raw, list) or not raw:
            ld.fail(where, 'expected a list like ["127.0.0.1:8765", "127.0.0.2:8765"]', raw)
        try:
            return tuple(parse_host_port(item) for item in raw)
        except ValueError as exc:
            return ld.fail(where, str(exc), raw)

    return parse


def check_families(ld: Loader, where: str, target: TargetConfig) -> None:
    """Source addresses must be of the family of the address dialled (when
    that is an IP literal; a name is resolved to the family at connect time)."""
    if not target.source_ips:
        return
    sources = {family_of(a) for a in target.source_ips}
    if len(sources) > 1:
        ld.fail(where, "expected addresses of one family (all IPv4 or all IPv6)", None, found=False)
    dials = [h for h, _p in target.connect_to] or [urlsplit(target.url).hostname or ""]
    for host in dials:
        family = family_of(host)
        if family is not None and family not in sources:
            ld.fail(
                where,
                f"expected addresses of the same family as the target {host} "
                f"(IPv{4 if family == socket.AF_INET else 6})",
                target.source_ips[0],
            )


def parse_server_heartbeat(s: Section) -> ServerHeartbeat:
    ld = s.loader
    d = ServerHeartbeat()
    codes = s.get("close_codes", lambda w, v: v, list(d.close_codes))
    if not isinstance(codes, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) and 1000 <= c <= 4999 for c in codes
    ):
        ld.fail(s.where("close_codes"), "expected a list of close codes 1000-4999", codes)
    pattern = s.get("reason_pattern", ld.string, d.reason_pattern)
    try:
        re.compile(pattern)
    except re.error as exc:
        ld.fail(s.where("reason_pattern"), f"expected a regular expression ({exc})", pattern)
    sh = ServerHeartbeat(
        interval=s.get("interval", ld.positive_duration, d.interval),
        timeout=s.get("timeout", ld.positive_duration, d.timeout),
        max_missed=s.get("max_missed", ld.at_least(1), d.max_missed),
        close_codes=tuple(codes),
        reason_pattern=pattern,
        abrupt_after=s.get("abrupt_after", ld.positive_duration, d.abrupt_after),
        abrupt_tolerance=s.get("abrupt_tolerance", ld.duration, d.abrupt_tolerance),
        abrupt_period=s.get("abrupt_period", ld.positive_duration, d.abrupt_period),
    )
    s.finish()
    return sh


def parse_stats(s: Section) -> StatsConfig:
    ld = s.loader
    url = s.require("url", ld.string)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "http" or not parts.hostname or port == -1 or port == 0:
        ld.fail(s.where("url"), "expected an http:// URL with a host and a valid port", url)
    field_path = s.get("field", ld.string, "connections")
    if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", field_path):
        ld.fail(s.where("field"), 'expected a dotted path like "stats.connections"', field_path)
    stats = StatsConfig(
        url=url, field=field_path, timeout=s.get("timeout", ld.positive_duration, 2.0)
    )
    s.finish()
    return stats
