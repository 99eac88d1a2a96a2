"""Source and target addresses for spreading connections.

One (source address, target address:port) pair has at most as many
connections as the kernel has ephemeral ports (``ip_local_port_range``,
28,232 by default). ``[target] source_ips`` and ``soak run --source-ip`` give
the client several source addresses, used round-robin; ``[target]
connect_to`` several target addresses. Parsing is pure; whether an address
can be a source on this host is one injectable check (:func:`is_assignable`).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from collections.abc import Callable

# The most source addresses a profile may list (a /16).
MAX_SOURCE_IPS = 65536

# Linux: bind() picks no port, connect() does, so each source address gets the
# whole ephemeral range towards every target address. Missing from Python 3.11.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

EXAMPLE = '"127.0.0.1-127.0.0.20"'

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def bind_no_port(sock: socket.socket) -> bool:
    """Set IP_BIND_ADDRESS_NO_PORT where the kernel has it; True if set."""
    if sys.platform != "linux" or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    except OSError:
        return False  # an old kernel: bind() picks the port, as without it
    return True


def is_assignable(addr: IPAddress) -> bool:
    """True if a socket on this host can use ``addr`` as its source: all of
    127.0.0.0/8 (Linux routes it to ``lo``), or any address a bind accepts
    (an address of a local interface). The bind takes no port and sends nothing."""
    if isinstance(addr, ipaddress.IPv4Address) and addr.is_loopback:
        return True
    family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            bind_no_port(sock)
            sock.bind((str(addr), 0))
    except OSError as exc:
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL):
            return False
        raise
    return True


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _expand(item: str) -> list[IPAddress]:
    """One address, or a range ``first-last`` (both included). ValueError
    with the reason for anything else."""
    start_text, sep, end_text = item.partition("-")
    start = _address(start_text)
    if not sep:
        if start is None:
            raise ValueError(f'"{item}" is not an IP address or a range like {EXAMPLE}')
        return [start]
    end = _address(end_text)
    if start is None or end is None:
        raise ValueError(f'"{item}" is not an IP address or a range like {EXAMPLE}')
    if start.version != end.version:
        raise ValueError(f'range "{item}" mixes IPv4 and IPv6')
    if int(end) < int(start):
        raise ValueError(
            f'range "{item}" goes backwards (its start is after its end); write "{end}-{start}"'
        )
    count = int(end) - int(start) + 1
    if count > MAX_SOURCE_IPS:
        raise ValueError(f'range "{item}" has {count:,} addresses; at most {MAX_SOURCE_IPS:,}')
    kind = type(start)
    return [kind(int(start) + i) for i in range(count)]


def parse_source_ips(
    raw: object, assignable: Callable[[IPAddress], bool] = is_assignable
) -> tuple[str, ...]:
    """``"127.0.0.1-127.0.0.20"``, ``"10.0.0.5"``, ``"127.0.0.1,127.0.0.2"``,
    or a list of those -> the addresses in order, without repeats.

    Raises ValueError whose text says what is wrong with which item.
    """
    if isinstance(raw, str):
        items = [part for part in raw.split(",")]
    elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        items = [str(x) for x in raw]
    else:
        raise ValueError(f"expected an address range like {EXAMPLE}, an address, or a list")
    if not items or not any(item.strip() for item in items):
        raise ValueError(f"expected at least one address, e.g. {EXAMPLE}")
    out: dict[str, None] = {}
    for item in items:
        for addr in _expand(item.strip()):
            out[str(addr)] = None
        if len(out) > MAX_SOURCE_IPS:
            raise ValueError(f"{len(out):,} addresses; at most {MAX_SOURCE_IPS:,}")
    checked: set[str] = set()
    for text in out:
        addr = ipaddress.ip_address(text)
        if text not in checked and not assignable(addr):
            raise ValueError(
                f"{text} is not an address of this host (neither loopback nor on a local "
                "interface), so connections cannot use it as their source"
            )
        checked.add(text)
    return tuple(out)


def parse_host_port(text: object, *, allow_zero: bool = False) -> tuple[str, int]:
    """``"127.0.0.2:8765"`` or ``"[::1]:8765"`` -> (host, port); ValueError else.
    ``allow_zero``: port 0 is accepted (a listening address: any free port)."""
    if not isinstance(text, str):
        raise ValueError('expected "host:port" strings like "127.0.0.2:8765"')
    host, sep, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    lowest = 0 if allow_zero else 1
    if not sep or not host or not port_text.isdigit() or not lowest <= int(port_text) <= 65535:
        raise ValueError(f'"{text}" is not "host:port" with a port in {lowest}..65535')
    return host, int(port_text)


def family_of(host: str) -> int | None:
    """AF_INET or AF_INET6 for an IP literal, None for a name."""
    addr = _address(host)
    if addr is None:
        return None
    return socket.AF_INET if addr.version == 4 else socket.AF_INET6


__all__ = [
    "IP_BIND_ADDRESS_NO_PORT",
    "MAX_SOURCE_IPS",
    "bind_no_port",
    "family_of",
    "is_assignable",
    "parse_host_port",
    "parse_source_ips",
]
