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
