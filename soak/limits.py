"""Process limits that decide how many connections fit in one process."""

from __future__ import annotations

import errno
import ipaddress
import resource

from soak.errors import root_cause

# Each connection is one file descriptor; the common default soft limit of
# 1024 would cap a client or gateway process far below ~19,000 connections.
WANTED_FDS = 65536


def raise_fd_limit(wanted: int = WANTED_FDS) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (never above the hard
    limit) and return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


# descriptors a process keeps for itself (results files, pipes, the event loop)
FD_RESERVE = 64
# Tester memory per held connection, for the memory checks of `soak run`
# (memory_problem) and `soak doctor` (memory-estimate): benchmarks/engine.py's
# rss_per_conn measured 7.8 KiB at 19,000 and 7.95 KiB at 10,000 idle
# connections (README, "Benchmarks"). 10 KiB is that plus ~25% headroom for
# what the benchmark does not hold (send buffers under traffic, reconnect
# churn), and is the ceiling the benchmark itself holds the client to
# (its rss_per_conn target), so a figure above it fails there first.
CLIENT_BYTES = 10 * 1024


# descriptors per client with an in-process impairment proxy: the client's
# socket and both of the proxy's
PROXIED_FDS = 3


def worker_capacity(fd_soft: int, proxied: bool) -> int:
    """Connections one process can hold with ``fd_soft`` descriptors."""
    return max(1, (fd_soft - FD_RESERVE) // (PROXIED_FDS if proxied else 1))


def fd_problem(peak: int, workers: int, fd_soft: int, proxied: bool) -> str | None:
    """Why ``workers`` processes cannot hold ``peak`` connections, or None."""
    cap = worker_capacity(fd_soft, proxied)
    per_worker = -(-peak // workers)
    if per_worker <= cap:
        return None
    need = -(-peak // cap)
    proxy = f", {PROXIED_FDS} descriptors each with [impairment]" if proxied else ""
    held = "one process holds" if workers == 1 else f"{workers} worker processes hold"
    return (
        f"this profile needs {peak:,} connections at its peak, but one process may open at "
        f"most {fd_soft:,} descriptors ({FD_RESERVE} kept in reserve), so {held} at most "
        f"{cap * workers:,} ({cap:,} per process{proxy}): use --workers {need} or more "
        f"(or --workers auto), or lower the peak to {cap * workers:,}"
    )


def memory_available() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes; None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_problem(peak: int, available: int | None) -> str | None:
    """Why ``peak`` clients will not fit in memory, or None."""
    if available is None:
        return None
    need = peak * CLIENT_BYTES
    if need <= available:
        return None
    fits = available // CLIENT_BYTES
    return (
        f"this profile needs {peak:,} connections at its peak, about {need / 2**20:,.0f} MiB "
        f"of tester memory at ~{CLIENT_BYTES // 1024} KiB each, but only "
        f"{available / 2**20:,.0f} MiB is available: at most {fits:,} clients fit on this machine"
    )


# -- when connections run out of descriptors or ports ------------------------------

PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
FILE_MAX_FILE = "/proc/sys/fs/file-max"
# The kernel's default ip_local_port_range, if the file cannot be read.
DEFAULT_PORT_RANGE = (32768, 60999)


def port_range(path: str = PORT_RANGE_FILE) -> tuple[int, int]:
    """The ephemeral port range (first, last), both included."""
    try:
        with open(path, encoding="ascii") as f:
            first, last = (int(x) for x in f.read().split()[:2])
    except (OSError, ValueError):
        return DEFAULT_PORT_RANGE
    return first, last


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def ports_per_pair(ports: tuple[int, int]) -> int:
    return max(0, ports[1] - ports[0] + 1)


def sources_needed(needed: int, ports: tuple[int, int], targets: int = 1) -> int:
    """Source addresses needed for ``needed`` connections spread over ``targets``."""
    per = ports_per_pair(ports) * max(1, targets)
    return max(1, -(-needed // per)) if per else 1


def loopback_range(count: int) -> str:
    """``127.0.0.1-...``: ``count`` loopback addresses a fix can use."""
    if count <= 1:
        return "127.0.0.1"
    return f"127.0.0.1-{ipaddress.IPv4Address(int(ipaddress.IPv4Address('127.0.0.1')) + count - 1)}"


def _is_loopback_target(target: str) -> bool:
    host = target.rpartition(":")[0].strip("[]") or target
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _spread_hint(
    needed: int, ports: tuple[int, int], sources: int, targets: int, target: str
) -> str:
    # at least one more than now: the ports ran out (TIME_WAIT, other sockets)
    want = max(sources + 1, sources_needed(needed, ports, targets))
    if _is_loopback_target(target):
        return f"spread with --source-ip {loopback_range(want)}"
    return f"spread over {want} addresses of this host with --source-ip (or target.source_ips)"


def ports_exhausted_message(
    source: str | None,
    target: str,
    *,
    needed: int,
    sources: int = 1,
    targets: int = 1,
    ports: tuple[int, int] | None = None,
) -> str:
    """Why a connect (or a bind) failed with EADDRNOTAVAIL/EADDRINUSE, and the fix."""
    ports = port_range() if ports is None else ports
    per = ports_per_pair(ports)
    src = source or "the default source address"
    capacity = per * max(1, sources) * max(1, targets)
    return (
        f"ephemeral ports exhausted for {src} -> {target} (ip_local_port_range "
        f"{ports[0]}-{ports[1]} = {per:,} ports per source address; {sources} source "
        f"address(es) x {targets} target address(es) = {capacity:,}, the profile needs "
        f"{needed:,} connections); {_spread_hint(needed, ports, sources, targets, target)}, "
        f"or widen net.ipv4.ip_local_port_range"
    )


def fds_exhausted_message(
    err: int, *, needed: int, soft: int | None = None, hard: int | None = None
) -> str:
    """Why opening a socket failed with EMFILE (this process) or ENFILE (the
    whole system), and the fix."""
    if err == errno.ENFILE:
        file_max = _read_int(FILE_MAX_FILE)
        shown = f"{file_max:,}" if file_max is not None else "unknown"
        return (
            f"the system-wide open-file limit is reached (fs.file-max = {shown}); the profile "
            f"needs {needed:,} connections: raise it, e.g. sysctl -w fs.file-max="
            f"{max(needed * 2, 2 * 65536)}"
        )
    if soft is None or hard is None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard_text = "unlimited" if hard == resource.RLIM_INFINITY else f"{hard:,}"
    return (
        f"descriptors exhausted: this process may open {soft:,} files (RLIMIT_NOFILE, hard "
        f"limit {hard_text}) and the profile needs {needed:,} connections plus a few for "
        f"files; raise it (ulimit -n {needed + 64}, or LimitNOFILE= under systemd) or run "
        f"fewer clients per process"
    )


def os_errno(exc: BaseException) -> int | None:
    """The errno of the error that says why a connect failed
    (:func:`soak.errors.root_cause`), or None if that is not an OSError."""
    root = root_cause(exc)
    return root.errno if isinstance(root, OSError) else None


def limit_message(
    exc: BaseException,
    *,
    needed: int,
    target: str,
    sources: tuple[str, ...] = (),
    targets: int = 1,
) -> str | None:
    """The message for a connect that ran out of descriptors or ports, or
    None if ``exc`` is something else. ``exc.source`` (set by the opener)
    names the source address that was used, if one was chosen."""
    err = os_errno(exc)
    if err in (errno.EMFILE, errno.ENFILE):
        return fds_exhausted_message(err, needed=needed)
    if err in (errno.EADDRNOTAVAIL, errno.EADDRINUSE):
        source = getattr(exc, "source", None)
        return ports_exhausted_message(
            source, target, needed=needed, sources=max(1, len(sources)), targets=targets
        )
    return None


def check_port_capacity(
    needed: int,
    target: str,
    *,
    sources: int = 1,
    targets: int = 1,
    ports: tuple[int, int] | None = None,
) -> str | None:
    """Before a run: None if ``needed`` connections fit in the ephemeral ports
    of the (source, target) pairs, else the message saying what would fit."""
    ports = port_range() if ports is None else ports
    per = ports_per_pair(ports)
    capacity = per * max(1, sources) * max(1, targets)
    if needed <= capacity:
        return None
    return (
        f"the profile needs {needed:,} connections at its peak, but at most {capacity:,} fit "
        f"towards {target} (ip_local_port_range {ports[0]}-{ports[1]} = {per:,} ports per "
        f"source address; {sources} source address(es) x {targets} target address(es)); "
        f"{_spread_hint(needed, ports, sources, targets, target)}, or widen "
        f"net.ipv4.ip_local_port_range"
    )
