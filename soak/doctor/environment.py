"""Environment checks for a planned run: this machine, and the target.

Pure parts take their facts as arguments, so tests inject limits and
``/proc`` text instead of exhausting the machine: :func:`check_fds`,
:func:`check_ports`, :func:`check_memory`, :func:`parse_tcp_table`,
:func:`check_sockets`, :func:`check_loop_lag`. :func:`read_host` reads the
real facts; the async functions talk to the target, each under a short
timeout of its own.
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from soak.doctor.findings import ENVIRONMENT, ERROR, INFO, WARNING, Finding
from soak.errors import SoakError
from soak.limits import FD_RESERVE, WANTED_FDS
from soak.profile import Profile, StatsConfig
from soak.protocols import PROTOCOLS
from soak.protocols.base import HeartbeatProtocol
from soak.reconcile import display_url, extract, fetch_json
from soak.workers import resolve_workers

# client RSS per idle connection, measured (docs/benchmarks.md: 11.21-11.25 KiB)
BYTES_PER_CLIENT = 11.2 * 1024
TARGET_TIMEOUT = 5.0  # each of TCP, handshake and heartbeat
CLOSE_WAIT_SHARE = 0.10  # warn when CLOSE_WAIT is this share of the open sockets
LAG_WARN = 0.005  # baseline loop lag p99 above this: the tester's numbers carry noise

TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}


@dataclass(frozen=True)
class Host:
    """Facts about this machine; ``None`` where unknown."""

    fd_soft: int
    fd_hard: int
    port_range: str | None  # the text of /proc/sys/net/ipv4/ip_local_port_range
    mem_available: int | None  # bytes (MemAvailable)
    tcp_tables: tuple[str, ...]  # the texts of /proc/net/tcp and /proc/net/tcp6


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def read_host() -> Host:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    mem = None
    meminfo = _read("/proc/meminfo") or ""
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            mem = int(line.split()[1]) * 1024
    tables = tuple(t for t in (_read("/proc/net/tcp"), _read("/proc/net/tcp6")) if t is not None)
    return Host(
        fd_soft=2**31 if soft == inf else soft,
        fd_hard=2**31 if hard == inf else hard,
        port_range=_read("/proc/sys/net/ipv4/ip_local_port_range"),
        mem_available=mem,
        tcp_tables=tables,
    )


def _env(severity: str, code: str, message: str, fix: str = "") -> Finding:
    return Finding(ENVIRONMENT, severity, code, message, fix)


# -- pure checks -------------------------------------------------------------------


def check_fds(peak: int, soft: int, hard: int, workers: int = 1) -> list[Finding]:
    """One descriptor per connection, plus :data:`FD_RESERVE`, in each of
    ``workers`` processes. soak raises the soft limit towards the hard one (at
    most to ``WANTED_FDS``) at start."""
    each = -(-peak // max(1, workers))
    if workers > 1:
        return [
            dataclasses.replace(f, message=f"{workers} worker processes: " + f.message)
            for f in check_fds(each, soft, hard)
        ]
    needed = peak + FD_RESERVE
    reachable = min(hard, max(soft, WANTED_FDS))
    workers_needed = -(-peak // max(1, reachable - FD_RESERVE))
    limits = f"soft {soft}, hard {hard}"
    if soft >= needed:
        return [
            _env(
                INFO,
                "fd-limit-ok",
                f"{peak} clients at the peak need {needed} descriptors "
                f"({FD_RESERVE} in reserve); the limits are {limits}",
            )
        ]
    if reachable >= needed:
        return [
            _env(
                INFO,
                "fd-limit-raised",
                f"{peak} clients at the peak need {needed} descriptors; "
                f"the soft limit {soft} is lower, and soak raises it to {reachable} at start "
                f"({limits})",
            )
        ]
    return [
        _env(
            ERROR,
            "fd-limit-too-low",
            f"{peak} clients at the peak need {needed} descriptors ({FD_RESERVE} in reserve), "
            f"but one process may have at most {reachable} ({limits}): soak run refuses this "
            "profile in one process",
            f"run it in worker processes (soak run --workers {workers_needed} or --workers "
            f"auto: at most {max(0, reachable - FD_RESERVE)} clients each), or "
            f"raise the hard limit to at least {needed} (ulimit -Hn, nofile in "
            "/etc/security/limits.conf, or LimitNOFILE= for a systemd unit)",
        )
    ]


def parse_port_range(text: str) -> tuple[int, int]:
    parts = text.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"expected two port numbers, got {text.strip()!r}")
    lo, hi = int(parts[0]), int(parts[1])
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"not a port range: {lo} {hi}")
    return lo, hi


def check_ports(peak: int, range_text: str | None, pairs: int = 1) -> list[Finding]:
    """Each (source address, destination address and port) pair has the
    ephemeral range to itself: ``pairs`` is the profile's source addresses
    (``target.source_ips``) times its target addresses (``target.connect_to``)."""
    if range_text is None:
        return [
            _env(
                INFO,
                "ephemeral-ports-unknown",
                "the ephemeral port range is unknown "
                "(/proc/sys/net/ipv4/ip_local_port_range is not readable)",
            )
        ]
    try:
        lo, hi = parse_port_range(range_text)
    except ValueError as exc:
        return [_env(WARNING, "ephemeral-ports-unknown", f"ip_local_port_range: {exc}")]
    count = hi - lo + 1
    per_pair = math.ceil(peak / pairs)
    fix = (
        "use more source addresses (e.g. 127.0.0.2, 127.0.0.3, ... on loopback) or more "
        "destination addresses or ports (each pair has its own ports), more worker "
        "processes or machines, or widen the range: sysctl -w "
        'net.ipv4.ip_local_port_range="1024 65535"'
    )
    what = (
        f"{per_pair} clients per (source, destination) pair against {count} ephemeral ports "
        f"({lo}-{hi})"
    )
    if per_pair > count:
        return [
            _env(
                ERROR,
                "ephemeral-ports-exhausted",
                f"{what}: connections beyond {count} fail with EADDRNOTAVAIL",
                fix,
            )
        ]
    if per_pair > 0.8 * count:
        return [
            _env(
                WARNING,
                "ephemeral-ports-tight",
                f"{what}: over 80% in use, and reconnects leave ports in TIME_WAIT",
                fix,
            )
        ]
    return [_env(INFO, "ephemeral-ports-ok", what)]


def check_memory(peak: int, available: int | None) -> list[Finding]:
    est = peak * BYTES_PER_CLIENT
    what = (
        f"{peak} clients x {BYTES_PER_CLIENT / 1024:g} KiB (measured per idle connection) "
        f"= about {est / 2**20:.0f} MiB"
    )
    if available is None:
        return [_env(INFO, "memory-estimate", f"{what}; available memory unknown")]
    avail = f"{available / 2**20:.0f} MiB available"
    if est > available:
        return [
            _env(
                ERROR,
                "memory-short",
                f"{what}, more than the {avail}",
                "free memory, or split the clients across machines",
            )
        ]
    if est > 0.5 * available:
        return [
            _env(
                WARNING,
                "memory-tight",
                f"{what}, over half of the {avail}",
                "leave headroom: free memory or split the clients across machines",
            )
        ]
    return [_env(INFO, "memory-estimate", f"{what}; {avail}")]


def parse_tcp_table(text: str) -> list[tuple[int, int, str]]:
    """``/proc/net/tcp`` or ``tcp6`` -> (local port, remote port, state) per
    socket. Addresses are hex ``ADDR:PORT``; malformed lines are skipped."""
    out: list[tuple[int, int, str]] = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4:
            continue
        try:
            local = int(parts[1].rsplit(":", 1)[1], 16)
            remote = int(parts[2].rsplit(":", 1)[1], 16)
            state = int(parts[3], 16)
        except (IndexError, ValueError):
            continue
        out.append((local, remote, TCP_STATES.get(state, f"0x{state:02X}")))
    return out


def count_states(tables: Iterable[str], port: int) -> Counter[str]:
    """Sockets whose local or remote port is ``port``, by state."""
    counts: Counter[str] = Counter()
    for text in tables:
        for local, remote, state in parse_tcp_table(text):
            if port in (local, remote):
                counts[state] += 1
    return counts


def check_sockets(counts: Counter[str], port: int) -> list[Finding]:
    shown = ", ".join(f"{s} {n}" for s, n in sorted(counts.items())) or "none"
    out = [_env(INFO, "sockets", f"sockets on port {port} here, by state: {shown}")]
    est, cw = counts["ESTABLISHED"], counts["CLOSE_WAIT"]
    if cw and cw >= CLOSE_WAIT_SHARE * (est + cw):
        out.append(
            _env(
                WARNING,
                "sockets-close-wait",
                f"{cw} of {est + cw} open sockets on port {port} are in CLOSE_WAIT: the peer "
                "closed and this side never did. In the incident, this ratio against "
                "ESTABLISHED was the clue to connections held after the other side let go",
                "find the process that holds them (ss -tanp state close-wait); a gateway "
                "or proxy whose idle timeout is far above the heartbeat timeout keeps them",
            )
        )
    return out


def check_loop_lag(lateness: list[float]) -> list[Finding]:
    """``lateness``: how late each short sleep woke, seconds."""
    if not lateness:
        return []
    ordered = sorted(lateness)
    p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
    worst = ordered[-1]
    what = (
        f"this machine's baseline event-loop lag over {len(ordered)} sleeps of 10 ms: "
        f"p99 {p99 * 1000:.2f} ms, max {worst * 1000:.2f} ms"
    )
    if p99 > LAG_WARN:
        return [
            _env(
                WARNING,
                "loop-lag-high",
                f"{what}, before any load",
                "stop other work on this machine, or expect RTT noise of that size",
            )
        ]
    return [_env(INFO, "loop-lag", what)]


# -- I/O checks ----------------------------------------------------------------------


async def measure_loop_lag(count: int = 50, sleep: float = 0.01) -> list[float]:
    out = []
    for _ in range(count):
        start = trio.current_time()
        await trio.sleep(sleep)
        out.append(max(0.0, trio.current_time() - start - sleep))
    return out


async def check_target(profile: Profile, step_limit: float = TARGET_TIMEOUT) -> list[Finding]:
    """TCP (and TLS), then the WebSocket handshake, then one heartbeat in the
    profile's protocol with its RTT. Stops at the first step that fails."""
    from soak.client import url_opener

    target = profile.target
    url = display_url(target.url)
    parts = urlsplit(target.url)
    out: list[Finding] = []
    t0 = time.perf_counter()
    try:
        with trio.fail_after(step_limit):
            stream = await url_opener(target)()
    except (OSError, trio.BrokenResourceError, trio.TooSlowError, SoakError) as exc:
        why: object = (
            f"no connection within {step_limit:g} s" if isinstance(exc, trio.TooSlowError) else exc
        )
        return [
            _env(
                ERROR,
                "target-tcp-failed",
                f"{url}: cannot connect: {why}",
                "start the gateway, or check the URL, DNS, firewall and TLS settings",
            )
        ]
    out.append(
        _env(
            INFO, "target-tcp-ok", f"{url}: connected in {(time.perf_counter() - t0) * 1000:.1f} ms"
        )
    )
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        headers = [(k.encode(), v.encode()) for k, v in target.headers]
        if target.token is not None:
            value = target.token_prefix + target.token.value
            headers.append((target.token_header.encode(), value.encode()))
        resource_ = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rsplit("@", 1)[-1]
        t0 = time.perf_counter()
        try:
            with trio.fail_after(step_limit):
                await stream.send_all(
                    ws.send(Request(host=host, target=resource_, extra_headers=headers))
                )
                rejected = await _until_accepted(stream, ws)
        except (
            trio.TooSlowError,
            trio.BrokenResourceError,
            RemoteProtocolError,
            OSError,
            EOFError,
        ) as exc:
            why2: object = (
                f"no answer within {step_limit:g} s" if isinstance(exc, trio.TooSlowError) else exc
            )
            out.append(
                _env(
                    ERROR,
                    "target-handshake-failed",
                    f"{url}: the WebSocket handshake failed: {why2 or 'connection closed'}",
                    "check the path, the token and that a proxy passes Upgrade",
                )
            )
            return out
        if rejected is not None:
            out.append(
                _env(
                    ERROR,
                    "target-handshake-failed",
                    f"{url}: the WebSocket handshake was refused: HTTP {rejected}",
                    "check the path and the token (target.token_env)",
                )
            )
            return out
        out.append(
            _env(
                INFO,
                "target-handshake-ok",
                f"{url}: WebSocket handshake in {(time.perf_counter() - t0) * 1000:.1f} ms",
            )
        )
        proto_cls = PROTOCOLS[target.protocol]
        if getattr(proto_cls, "has_handshake", False):
            # a protocol that speaks first after the upgrade (e.g. a login):
            # not replayed here, so no heartbeat is tried
            out.append(
                _env(
                    INFO,
                    "target-heartbeat-skipped",
                    f"{url}: protocol {target.protocol} has its own handshake after the "
                    "upgrade; soak doctor checked TCP and the upgrade only",
                )
            )
            return out
        proto = proto_cls("soak-doctor")
        t0 = time.perf_counter()
        try:
            with trio.fail_after(step_limit):
                await stream.send_all(ws.send(proto.ping(1, int(time.time() * 1000))))
                await _until_pong(stream, ws, proto)
        except (
            trio.TooSlowError,
            trio.BrokenResourceError,
            RemoteProtocolError,
            LocalProtocolError,
            OSError,
            EOFError,
        ) as exc:
            why3: object = (
                f"no pong within {step_limit:g} s" if isinstance(exc, trio.TooSlowError) else exc
            )
            out.append(
                _env(
                    ERROR,
                    "target-heartbeat-failed",
                    f"{url}: one {target.protocol} heartbeat: {why3 or 'connection closed'}",
                    "check target.protocol: the gateway must answer this heartbeat",
                )
            )
            return out
        rtt = time.perf_counter() - t0
        out.append(
            _env(
                INFO,
                "target-heartbeat-ok",
                f"{url}: one {target.protocol} heartbeat, RTT {rtt * 1000:.2f} ms",
            )
        )
        with trio.move_on_after(1):
            try:
                await stream.send_all(ws.send(CloseConnection(code=1000, reason="soak doctor")))
            except (trio.BrokenResourceError, LocalProtocolError, OSError):
                pass
    return out


async def _receive(stream: trio.abc.Stream, ws: WSConnection) -> None:
    data = await stream.receive_some(65536)
    if not data:
        raise EOFError("connection closed")
    ws.receive_data(cast(bytes, data))


async def _until_accepted(stream: trio.abc.Stream, ws: WSConnection) -> int | None:
    """None when accepted, else the refusal's HTTP status."""
    while True:
        await _receive(stream, ws)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                return None
            if isinstance(event, RejectConnection):
                return event.status_code


async def _until_pong(stream: trio.abc.Stream, ws: WSConnection, proto: HeartbeatProtocol) -> None:
    text: list[str] = []
    while True:
        await _receive(stream, ws)
        for event in ws.events():
            if isinstance(event, Ping):
                await stream.send_all(ws.send(event.response()))
            elif isinstance(event, Pong) and proto.pong_control(bytes(event.payload)) == 1:
                return
            elif isinstance(event, TextMessage):
                text.append(event.data)
                if event.message_finished:
                    if proto.pong_text("".join(text)) == 1:
                        return
                    text = []
            elif isinstance(event, CloseConnection):
                raise EOFError(f"the server closed: {event.code} {event.reason}")


async def check_stats(stats: StatsConfig) -> list[Finding]:
    url = display_url(stats.url)
    try:
        with trio.fail_after(stats.timeout):
            doc = await fetch_json(stats.url)
        value = extract(doc, stats.field)
    except trio.TooSlowError:
        why = f"no answer within {stats.timeout:g} s"
    except SoakError as exc:
        why = str(exc)
    else:
        return [_env(INFO, "stats-ok", f"{url}: {stats.field} = {value}")]
    return [
        _env(
            WARNING,
            "stats-unreadable",
            f"target.stats: {why}",
            "check target.stats.url and field; without it the run cannot compare the "
            "server's count with its own",
        )
    ]


async def run_environment(
    profile: Profile, host: Host, *, target_timeout: float = TARGET_TIMEOUT
) -> list[Finding]:
    """Every environment check for ``profile``, in the text output's order."""
    peak = profile.peak_clients
    parts = urlsplit(profile.target.url)
    port = parts.port or (443 if profile.target.secure else 80)
    reachable = min(host.fd_hard, max(host.fd_soft, WANTED_FDS))
    workers = resolve_workers(profile, reachable, os.cpu_count() or 1)
    out = check_fds(peak, host.fd_soft, host.fd_hard, workers)
    t = profile.target
    out += check_ports(peak, host.port_range, max(1, len(t.source_ips)) * max(1, len(t.connect_to)))
    out += check_memory(peak, host.mem_available)
    out += await check_target(profile, target_timeout)
    if profile.target.stats is not None:
        out += await check_stats(profile.target.stats)
    out += check_loop_lag(await measure_loop_lag())
    if host.tcp_tables:
        out += check_sockets(count_states(host.tcp_tables, port), port)
    else:
        out.append(_env(INFO, "sockets", "socket states unknown: /proc/net/tcp is not readable"))
    return out
