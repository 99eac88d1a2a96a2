"""What soak reads from a proxy's config: the timeouts that apply to
WebSocket connections, where each was set, and what the proxy would reject.
Shared by the nginx and HAProxy readers (soak.doctor.nginx,
soak.doctor.haproxy); soak.doctor.proxies loads a file with either. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

NGINX = "nginx"
HAPROXY = "haproxy"
NGINX_DEFAULT_TIMEOUT = 60.0
KINDS = (NGINX, HAPROXY)

_PART = re.compile(r"(\d+)(ms|us|s|m|h|d|w)?")


class ProxyConfigError(ValueError):
    """Unreadable, or not parseable at all. The message names the file."""

    def __init__(self, message: str, *, unreadable: bool = False) -> None:
        super().__init__(message)
        self.unreadable = unreadable


@dataclass(frozen=True)
class Timeout:
    directive: str  # as nginx/haproxy names it, e.g. "proxy_read_timeout"
    seconds: float | None  # None: written but invalid (see the problems)
    source: str  # "set" (line N), "inherited" (line N), "default"
    line: int = 0
    file: str = ""  # an included file it was set in ("": the file given)

    def describe(self) -> str:
        if self.source == "default":
            return f"{self.directive} not set (nginx default {NGINX_DEFAULT_TIMEOUT:g} s)"
        where = f"{self.file} line" if self.file else "line"
        how = f"inherited from {where}" if self.source == "inherited" else where
        return f"{self.directive} {self.seconds:g} s ({how} {self.line})"


@dataclass(frozen=True)
class Problem:
    line: int
    text: str  # the directive as written
    message: str
    fix: str
    file: str = ""  # an included file it is in ("": the file given)


@dataclass(frozen=True)
class ProxyLocation:
    """One place that proxies WebSockets: an nginx location or a haproxy section."""

    name: str  # "location /ws" or "defaults"
    line: int
    idle: Timeout | None  # the timeout that cuts an idle WebSocket (None: none applies)
    timeouts: tuple[Timeout, ...]
    file: str = ""  # an included file it is in ("": the file given)


@dataclass(frozen=True)
class ProxyConfig:
    path: str
    kind: str
    locations: tuple[ProxyLocation, ...]
    problems: tuple[Problem, ...]


def parse_time(text: str, units: dict[str, float], bare: float) -> float | None:
    """``"180s"`` -> 180.0, ``"1h30m"`` -> 5400.0; a bare number is ``bare``
    seconds per unit. None if not a valid time."""
    pos = 0
    total = 0.0
    if not text:
        return None
    for m in _PART.finditer(text):
        if m.start() != pos:
            return None
        unit = m.group(2)
        if unit is not None and unit not in units:
            return None
        total += int(m.group(1)) * (units[unit] if unit else bare)
        pos = m.end()
    return total if pos == len(text) else None
