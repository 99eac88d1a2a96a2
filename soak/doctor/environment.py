"""Environment checks for a planned run: this machine, and the target.

Pure parts take their facts as arguments, so tests inject limits and
``/proc`` text instead of exhausting the machine: :func:`check_fds`,
:func:`check_ports`, :func:`check_memory`, :func:`parse_tcp_table`,
:func:`check_sockets`, :func:`check_loop_lag`. :func:`read_host` reads the
real facts; :mod:`soak.doctor.target` talks to the target, and
:func:`run_environment` runs every check in the text output's order.
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import trio

from soak.config.profile import Profile
from soak.doctor.findings import ERROR, INFO, WARNING, Finding
from soak.doctor.findings import environment_finding as _env
from soak.doctor.target import TARGET_TIMEOUT, check_stats, check_target
from soak.limits import CLIENT_BYTES, FD_RESERVE, WANTED_FDS
from soak.run.split import resolve_workers

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
    est = peak * CLIENT_BYTES
    what = (
        f"{peak} clients x {CLIENT_BYTES / 1024:g} KiB (measured per idle connection, "
        "plus headroom) "
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
