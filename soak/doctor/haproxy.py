"""Pure: the timeouts HAProxy applies to an upgraded (WebSocket) connection,
read from haproxy.cfg with HAProxy's own rules (2.4 and later):

- Sections start with a keyword at the start of a line: ``global``,
  ``defaults [NAME] [from NAME]``, ``frontend NAME [from NAME]``,
  ``backend NAME [from NAME]``, ``listen NAME [from NAME]``, and the
  sections that are not proxies (``resolvers``, ``peers``, ``userlist``,
  ``mailers``, ``program``, ``http-errors``, ``ring``, ``cache``,
  ``fcgi-app``): their own ``timeout`` lines (``resolvers`` has ``timeout
  resolve``) are not a proxy's.
- A proxy takes its settings from the last ``defaults`` section before it,
  or from the one its ``from`` names; a ``defaults`` section may itself
  inherit ``from`` another. A setting in the proxy overrides the default.
- ``timeout client`` is a frontend's setting (``frontend``, ``listen``),
  ``timeout server`` and ``timeout tunnel`` a backend's (``backend``,
  ``listen``); HAProxy ignores them, with a warning, in the other kind.
- Once a connection is upgraded, ``timeout tunnel`` (if set) replaces both
  ``timeout client`` and ``timeout server``, and counts silence in both
  directions. Without it, ``timeout client`` cuts a connection whose client
  is silent that long and ``timeout server`` one whose server is: the
  shorter of the two cuts an idle WebSocket first. Neither set: nothing
  cuts it (HAProxy warns at start).
- A frontend's routes: ``default_backend`` and every ``use_backend``; a
  ``listen`` section is its own backend.
- Times: ``us ms s m h d``; a bare number is milliseconds.

Text in, :class:`~soak.doctor.timeouts.ProxyConfig` out: one
:class:`~soak.doctor.timeouts.ProxyLocation` per route (``frontend ws ->
backend gateway``). A line HAProxy would reject is a
:class:`~soak.doctor.timeouts.Problem`; a file that cannot be read as
haproxy.cfg at all raises :class:`~soak.doctor.timeouts.ProxyConfigError`
naming the file and the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from soak.doctor.timeouts import (
    HAPROXY,
    Problem,
    ProxyConfig,
    ProxyConfigError,
    ProxyLocation,
    Timeout,
    parse_time,
)

UNITS = {"us": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
PROXIES = ("defaults", "frontend", "backend", "listen")
OTHER_SECTIONS = (
    "global",
    "resolvers",
    "peers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "fcgi-app",
)
TIMEOUTS = (
    "client",
    "server",
    "tunnel",
    "connect",
    "client-fin",
    "server-fin",
    "http-request",
    "http-keep-alive",
    "queue",
    "tarpit",
    "check",
)
FRONTEND_ONLY = ("client", "client-fin", "http-request", "http-keep-alive")
BACKEND_ONLY = ("server", "server-fin", "tunnel", "connect", "queue", "tarpit", "check")
_ANY = re.compile(r"^\S")


@dataclass
class _Section:
    kind: str  # defaults, frontend, backend, listen, or another section keyword
    name: str
    line: int
    parent: str | None  # the defaults section named by ``from``
    inherits: _Section | None = None  # the defaults section it takes settings from
    timeouts: dict[str, Timeout] = field(default_factory=dict)
    backends: list[tuple[str, int]] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.kind} {self.name}".strip()


def looks_like_haproxy(text: str) -> bool:
    """An unindented line that opens a section the haproxy way (``frontend
    public``, no brace): nginx has no such directive."""
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if words and _ANY.match(raw) and words[0] in (*PROXIES, "global") and "{" not in raw:
            return True
    return False


def parse_haproxy(text: str, name: str) -> ProxyConfig:
    problems: list[Problem] = []
    sections: list[_Section] = []
    named_defaults: dict[str, _Section] = {}
    last_defaults: _Section | None = None
    current: _Section | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        head = words[0]
        if _ANY.match(raw) and (head in PROXIES or head in OTHER_SECTIONS):
            current = _open(head, words, lineno, name, named_defaults, last_defaults)
            sections.append(current)
            if head == "defaults":
                if current.name:
                    named_defaults[current.name] = current
                last_defaults = current
            continue
        if current is None:
            raise ProxyConfigError(
                f"{name}: line {lineno}: `{line}` is outside any section; expected a "
                "section first (global, defaults, frontend, backend or listen)"
            )
        if current.kind not in PROXIES:
            continue  # resolvers' `timeout resolve` and the like
        if head in ("default_backend", "use_backend") and current.kind in ("frontend", "listen"):
            if len(words) >= 2:
                current.backends.append((words[1], lineno))
            continue
        if head.rstrip(":") != "timeout":
            continue
        problem = _timeout(current, words, line, lineno)
        if problem is not None:
            problems.append(problem)
    return ProxyConfig(name, HAPROXY, tuple(_routes(sections, problems, name)), tuple(problems))


def _open(
    head: str,
    words: list[str],
    lineno: int,
    name: str,
    named: dict[str, _Section],
    last: _Section | None,
) -> _Section:
    rest = words[1:]
    parent = None
    if "from" in rest:
        i = rest.index("from")
        if i + 1 >= len(rest):
            raise ProxyConfigError(
                f"{name}: line {lineno}: `{' '.join(words)}`: expected a defaults "
                "section's name after `from`"
            )
        parent = rest[i + 1]
        rest = rest[:i]
    if head in ("frontend", "backend", "listen") and not rest:
        raise ProxyConfigError(f"{name}: line {lineno}: `{head}` needs a name")
    section = _Section(head, rest[0] if rest else "", lineno, parent)
    if head in PROXIES:
        if parent is not None:
            if parent not in named:
                raise ProxyConfigError(
                    f"{name}: line {lineno}: `from {parent}`: no defaults section named "
                    f"{parent!r} before this line"
                )
            section.inherits = named[parent]
        elif head != "defaults":
            section.inherits = last
        # a defaults section without `from` starts afresh: it resets the
        # settings of the defaults before it
    return section


def _timeout(section: _Section, words: list[str], line: str, lineno: int) -> Problem | None:
    if words[0] != "timeout" or len(words) != 3 or words[1].endswith(":"):
        return Problem(
            lineno,
            line,
            "haproxy expects `timeout <name> <time>`",
            "write e.g. `timeout tunnel 1h`",
        )
    kind = words[1]
    if kind not in TIMEOUTS:
        return Problem(
            lineno,
            line,
            f"unknown timeout {kind!r}: haproxy rejects the file",
            "one of " + ", ".join(TIMEOUTS),
        )
    value = parse_time(words[2], UNITS, 0.001)
    directive = f"timeout {kind}"
    section.timeouts[directive] = Timeout(directive, value, "set", lineno)
    if value is None:
        return Problem(lineno, line, f"invalid time {words[2]!r}", "write e.g. 180s, 3m or 1h")
    if section.kind == "frontend" and kind in BACKEND_ONLY:
        return Problem(
            lineno,
            line,
            f"`{directive}` in a frontend is ignored by haproxy (a backend's setting)",
            "set it in the backend (or in defaults, or in a listen section)",
        )
    if section.kind == "backend" and kind in FRONTEND_ONLY:
        return Problem(
            lineno,
            line,
            f"`{directive}` in a backend is ignored by haproxy (a frontend's setting)",
            "set it in the frontend (or in defaults, or in a listen section)",
        )
    return None


def _effective(section: _Section) -> dict[str, Timeout]:
    """The section's timeouts, its defaults' filled in (marked inherited)."""
    chain: list[_Section] = []
    s: _Section | None = section
    while s is not None and s not in chain:
        chain.append(s)
        s = s.inherits
    out: dict[str, Timeout] = {}
    for s in reversed(chain):
        for k, v in s.timeouts.items():
            how = "set" if s is section else "inherited"
            out[k] = Timeout(v.directive, v.seconds, how, v.line)
    return out


def _idle(
    front: dict[str, Timeout], back: dict[str, Timeout]
) -> tuple[Timeout | None, list[Timeout]]:
    """What cuts an idle upgraded connection on this route, and the timeouts
    that apply to it."""
    tunnel = back.get("timeout tunnel")
    client = front.get("timeout client")
    server = back.get("timeout server")
    applying = [t for t in (tunnel, client, server) if t is not None]
    if tunnel is not None:
        return tunnel, applying
    valid = [t for t in (client, server) if t is not None and t.seconds is not None]
    return (min(valid, key=lambda t: t.seconds or 0.0) if valid else None), applying


def _routes(sections: list[_Section], problems: list[Problem], name: str) -> list[ProxyLocation]:
    backends = {s.name: s for s in sections if s.kind in ("backend", "listen")}
    out: list[ProxyLocation] = []
    for s in sections:
        if s.kind not in ("frontend", "listen"):
            continue
        front = _effective(s)
        targets: list[tuple[_Section, str]] = []
        if s.kind == "listen":
            targets.append((s, s.title))
        for bname, line in s.backends:
            b = backends.get(bname)
            if b is None:
                if "%" in bname or "[" in bname:
                    continue  # a backend chosen at run time: not known here
                problems.append(
                    Problem(
                        line,
                        f"use_backend {bname}",
                        f"no backend named {bname!r}: haproxy rejects the file",
                        "add the backend section, or fix the name",
                    )
                )
                continue
            if b is not s:
                targets.append((b, f"{s.title} -> {b.title}"))
        if not targets:
            targets.append((s, s.title))  # no backend: the frontend's own settings
        for b, title in targets:
            idle, applying = _idle(front, _effective(b) if b is not s else front)
            out.append(ProxyLocation(title, s.line, idle, tuple(applying)))
    if not out:
        # only defaults (a fragment): what a proxy inheriting them would get
        for s in reversed(sections):
            if s.kind == "defaults":
                eff = _effective(s)
                idle, applying = _idle(eff, eff)
                out.append(ProxyLocation(s.title, s.line, idle, tuple(applying)))
                break
    return out
