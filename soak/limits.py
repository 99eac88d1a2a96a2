"""Process limits that decide how many connections fit in one process."""

from __future__ import annotations

import resource

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
# client RSS per held connection, with a margin (benchmarks/engine.py measured
# 11.2 KiB at 10,000 and 19,000 connections)
CLIENT_BYTES = 16 * 1024


def worker_capacity(fd_soft: int, proxied: bool) -> int:
    """Connections one process can hold with ``fd_soft`` descriptors; an
    in-process impairment proxy holds both ends of each connection."""
    return max(1, (fd_soft - FD_RESERVE) // (2 if proxied else 1))


def fd_problem(peak: int, workers: int, fd_soft: int, proxied: bool) -> str | None:
    """Why ``workers`` processes cannot hold ``peak`` connections, or None."""
    cap = worker_capacity(fd_soft, proxied)
    per_worker = -(-peak // workers)
    if per_worker <= cap:
        return None
    need = -(-peak // cap)
    proxy = ", 2 descriptors each with the impairment proxy" if proxied else ""
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
