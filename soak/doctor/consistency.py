"""Pure checks: do the gateway, the proxy and the clients agree on heartbeats?

The incident's lesson (docs/design.md): the gateway's heartbeat interval, timeout
and ``maxMissed``, the proxy's idle timeout and the clients' interval must
agree, or live clients are closed, idle ones are cut, or dead ones are held.

Rules, each a stable finding code:

- ``timeout-before-max-missed`` (error): ``timeout < interval x maxMissed``:
  the timeout fires before the allowed misses, so a client is closed after
  fewer missed heartbeats than configured.
- ``proxy-timeout-short`` (error): the proxy's idle timeout (nginx
  ``proxy_read_timeout``, haproxy ``timeout tunnel``/``client``) is not
  longer than a heartbeat interval: idle connections are cut between
  heartbeats.
- ``proxy-timeout-long`` (warning): the proxy's idle timeout is more than
  :data:`LONG_FACTOR` times the gateway's timeout (the incident's 86400 s
  against 120 s): the proxy holds connections the gateway declared dead.
- ``proxy-timeout-default`` (info): the directive is not set, nginx's 60 s
  default applies.
- ``proxy-timeout-none`` (warning): no HAProxy timeout applies to an upgraded
  connection on a route, so dead WebSockets are held forever.
- ``client-interval-not-tolerated`` (error): the clients' interval (from the
  profile), plus the planned latency, against the server's timeout:
  ``interval + latency >= timeout`` or ``interval x maxMissed + latency > timeout``.
- ``proxy-invalid-directive`` (error): e.g. ``proxy_read_timeout: 180s;``.
- ``proxy-no-websocket-location`` (warning): no location proxies WebSockets.
- ``channel-<rule>``: a per-channel override (``channels.<name>.heartbeat``)
  that breaks one of the rules above which the gateway's default keeps.
"""

from __future__ import annotations

from collections.abc import Sequence

from soak.config.profile import Profile
from soak.doctor.findings import CONSISTENCY, ERROR, INFO, RECOMMENDED, WARNING, Finding, fmt_s
from soak.doctor.gateway_config import GatewayHeartbeat, HeartbeatRule
from soak.doctor.timeouts import (
    HAPROXY,
    NGINX,
    NGINX_DEFAULT_TIMEOUT,
    ProxyConfig,
    ProxyLocation,
)

LONG_FACTOR = 10.0

_Keyed = tuple[tuple[str, str], Finding]  # ((code, location), finding)


def _recommend() -> str:
    return f"the incident's recommendation: {RECOMMENDED}"


def check_consistency(
    *,
    gateway: GatewayHeartbeat | None = None,
    proxy: ProxyConfig | None = None,
    profile: Profile | None = None,
    latency: float = 0.0,
    proxies: Sequence[ProxyConfig] = (),
) -> list[Finding]:
    """Every consistency finding for what was given (any may be None;
    ``proxies``: the chain's proxies besides ``proxy``)."""
    out: list[Finding] = []
    chain = ([proxy] if proxy is not None else []) + list(proxies)
    server: HeartbeatRule | None = None
    where = ""
    if gateway is not None:
        server, where = gateway.default, f"{gateway.path}: gateway.heartbeat"
    elif profile is not None and profile.target.server_heartbeat is not None:
        sh = profile.target.server_heartbeat
        server = HeartbeatRule(sh.interval, sh.timeout, sh.max_missed)
        where = f"{profile.path}: target.server_heartbeat"
    client = profile.heartbeat.interval if profile is not None else None
    client_where = f"{profile.path}: heartbeat.interval" if profile is not None else ""

    for p in chain:
        out.extend(_proxy_shape(p))

    base = _rules(server, where, chain, client, client_where, latency)
    out.extend(f for _, f in base)
    seen = {k for k, _ in base}
    if gateway is not None:
        for ch in gateway.channels:
            cwhere = f"{gateway.path}: channels.{ch.name}.heartbeat"
            fields = ", ".join(sorted(ch.overridden))
            for key, f in _rules(ch.rule, cwhere, chain, client, client_where, latency):
                if key in seen:
                    continue  # the default breaks it too: already said
                out.append(
                    Finding(
                        CONSISTENCY,
                        f.severity,
                        "channel-" + f.code,
                        f"{f.message} (the channel overrides {fields})",
                        f.fix,
                    )
                )
    return out


def _proxy_shape(proxy: ProxyConfig) -> list[Finding]:
    out: list[Finding] = []
    for p in proxy.problems:
        out.append(
            Finding(
                CONSISTENCY,
                ERROR,
                "proxy-invalid-directive",
                f"{p.file or proxy.path}: line {p.line}: `{p.text}`: {p.message}",
                p.fix,
            )
        )
    if not proxy.locations:
        what = (
            "no `location` block proxies WebSockets (none sets `proxy_set_header Upgrade`)"
            if proxy.kind == NGINX
            else "no haproxy section with a timeout was found"
        )
        out.append(
            Finding(
                CONSISTENCY,
                WARNING,
                "proxy-no-websocket-location",
                f"{proxy.path}: {what}; its timeouts were not checked",
                "point --nginx-conf at the file with the WebSocket location, or add "
                "`proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; "
                'proxy_set_header Connection "upgrade";` to it',
            )
        )
    for loc in proxy.locations:
        if loc.idle is None and proxy.kind == HAPROXY:
            out.append(
                Finding(
                    CONSISTENCY,
                    WARNING,
                    "proxy-timeout-none",
                    f"{proxy.path}: {loc.name} (line {loc.line}): no timeout applies to an "
                    "upgraded connection (no timeout tunnel, client or server): haproxy holds "
                    "idle and dead WebSockets forever",
                    "set `timeout tunnel` in the backend (or defaults), to about the gateway's "
                    "heartbeat timeout",
                )
            )
        if loc.idle is not None and loc.idle.source == "default":
            out.append(
                Finding(
                    CONSISTENCY,
                    INFO,
                    "proxy-timeout-default",
                    f"{loc.file or proxy.path}: {loc.name} (line {loc.line}): "
                    "proxy_read_timeout is not set, "
                    f"so nginx's default of {NGINX_DEFAULT_TIMEOUT:g} s applies",
                    "set proxy_read_timeout explicitly, to about the gateway's heartbeat timeout",
                )
            )
    return out


def _rules(
    server: HeartbeatRule | None,
    where: str,
    chain: Sequence[ProxyConfig],
    client: float | None,
    client_where: str,
    latency: float,
) -> list[_Keyed]:
    out: list[_Keyed] = []
    if server is not None:
        allowed = server.interval * server.max_missed
        if server.timeout < allowed:
            out.append(
                (
                    ("timeout-before-max-missed", ""),
                    Finding(
                        CONSISTENCY,
                        ERROR,
                        "timeout-before-max-missed",
                        f"{where}: timeout {fmt_s(server.timeout)} < interval "
                        f"{fmt_s(server.interval)} x maxMissed {server.max_missed} = "
                        f"{fmt_s(allowed)}: the timeout fires before the allowed misses, so "
                        "live clients that missed fewer heartbeats are closed",
                        f"set timeout >= interval x maxMissed ({fmt_s(allowed)}), or lower "
                        f"maxMissed; {_recommend()}",
                    ),
                )
            )
    for proxy in chain:
        for loc in proxy.locations:
            out.extend(_proxy_rules(proxy, loc, server, where, client, client_where))
    if server is not None and client is not None:
        out.extend(_client_rule(server, where, client, client_where, latency))
    return out


def _proxy_rules(
    proxy: ProxyConfig,
    loc: ProxyLocation,
    server: HeartbeatRule | None,
    where: str,
    client: float | None,
    client_where: str,
) -> list[_Keyed]:
    idle = loc.idle
    if idle is None or idle.seconds is None:
        return []  # none applies, or invalid (reported as such)
    out: list[_Keyed] = []
    at = f"{proxy.path}: {loc.name}"
    intervals = []
    if server is not None:
        intervals.append((server.interval, f"{where}.interval"))
    if client is not None:
        intervals.append((client, client_where))
    if intervals:
        interval, source = max(intervals)
        if idle.seconds <= interval:
            out.append(
                (
                    ("proxy-timeout-short", loc.name),
                    Finding(
                        CONSISTENCY,
                        ERROR,
                        "proxy-timeout-short",
                        f"{at}: {idle.describe()} is not longer than the heartbeat interval "
                        f"{fmt_s(interval)} ({source}): the proxy cuts connections that are "
                        "idle between heartbeats",
                        f"set {idle.directive} above the interval, to about the gateway's "
                        f"timeout; {_recommend() if server else 'e.g. 180s'}",
                    ),
                )
            )
    if server is not None and idle.seconds > LONG_FACTOR * server.timeout:
        out.append(
            (
                ("proxy-timeout-long", loc.name),
                Finding(
                    CONSISTENCY,
                    WARNING,
                    "proxy-timeout-long",
                    f"{at}: {idle.describe()} is more than {LONG_FACTOR:g}x the gateway's "
                    f"timeout {fmt_s(server.timeout)} ({where}): the proxy holds connections "
                    "the gateway declared dead, and the two sides' connection state diverges",
                    f"set {idle.directive} to about the gateway's timeout "
                    f"({fmt_s(server.timeout)}); with {RECOMMENDED}: {idle.directive} 180s",
                ),
            )
        )
    return out


def _client_rule(
    server: HeartbeatRule, where: str, client: float, client_where: str, latency: float
) -> list[_Keyed]:
    worst = client * server.max_missed + latency
    if client + latency < server.timeout and worst <= server.timeout:
        return []
    lat = f" + latency {fmt_s(latency)}" if latency else ""
    if client + latency >= server.timeout:
        why = (
            f"the client interval {fmt_s(client)}{lat} is not shorter than the server's "
            f"timeout {fmt_s(server.timeout)}"
        )
    else:
        why = (
            f"the client interval {fmt_s(client)} x the server's maxMissed {server.max_missed}"
            f"{lat} = {fmt_s(worst)} exceeds the server's timeout {fmt_s(server.timeout)}"
        )
    best = (server.timeout - latency) / server.max_missed
    return [
        (
            ("client-interval-not-tolerated", ""),
            Finding(
                CONSISTENCY,
                ERROR,
                "client-interval-not-tolerated",
                f"{client_where} ({fmt_s(client)}) against {where}: {why}; the server closes "
                "clients that are alive",
                f"set the client interval to at most {fmt_s(round(best, 3))}, or raise the "
                f"server's timeout; {_recommend()}",
            ),
        )
    ]
