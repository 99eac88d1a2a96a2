"""The timeouts a proxy applies to WebSocket connections, read from its config.

nginx: the ``location`` blocks that proxy WebSockets (they set
``proxy_set_header Upgrade ...``) and their ``proxy_read_timeout``,
``proxy_send_timeout`` and ``proxy_connect_timeout``, inherited from the
enclosing ``server``/``http`` block when the location does not set them, and
nginx's default of 60 s when nobody does. nginx times: ``ms s m h d w``,
combinable (``1h30m``); a bare number is seconds.

haproxy (a file with ``defaults``/``frontend``/``backend``/``listen``
sections and no braces): ``timeout tunnel`` (what applies to an upgraded
WebSocket) and ``timeout client``. haproxy times: ``us ms s m h d``; a bare
number is milliseconds.

Pure: text in, :class:`ProxyConfig` out. A directive that nginx would reject,
such as the incident's ``proxy_read_timeout: 180s;`` (a colon), is reported
as a :class:`Problem` rather than read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

NGINX = "nginx"
HAPROXY = "haproxy"
NGINX_DEFAULT_TIMEOUT = 60.0
TIMEOUT_DIRECTIVES = ("proxy_read_timeout", "proxy_send_timeout", "proxy_connect_timeout")

_NGINX_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_HAPROXY_UNITS = {"us": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+)(ms|us|s|m|h|d|w)?")
# blocks whose lines are "key value;" pairs, not directives
_KEY_BLOCKS = frozenset({"map", "geo", "types", "split_clients", "charset_map", "match"})
_HAPROXY_SECTION = re.compile(r"^(global|defaults|frontend|backend|listen)\b", re.MULTILINE)


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

    def describe(self) -> str:
        if self.source == "default":
            return f"{self.directive} not set (nginx default {NGINX_DEFAULT_TIMEOUT:g} s)"
        how = "inherited from line" if self.source == "inherited" else "line"
        return f"{self.directive} {self.seconds:g} s ({how} {self.line})"


@dataclass(frozen=True)
class Problem:
    line: int
    text: str  # the directive as written
    message: str
    fix: str


@dataclass(frozen=True)
class ProxyLocation:
    """One place that proxies WebSockets: an nginx location or a haproxy section."""

    name: str  # "location /ws" or "defaults"
    line: int
    idle: Timeout | None  # the timeout that cuts an idle WebSocket (None: none applies)
    timeouts: tuple[Timeout, ...]


@dataclass(frozen=True)
class ProxyConfig:
    path: str
    kind: str
    locations: tuple[ProxyLocation, ...]
    problems: tuple[Problem, ...]


def load_proxy_config(path: str | Path) -> ProxyConfig:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProxyConfigError(f"{name}: file not found", unreadable=True) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProxyConfigError(f"{name}: cannot read: {exc}", unreadable=True) from None
    return parse_proxy_config(text, name)


def parse_proxy_config(text: str, name: str) -> ProxyConfig:
    if "{" not in text and _HAPROXY_SECTION.search(text):
        return _parse_haproxy(text, name)
    return _parse_nginx(text, name)


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


# -- nginx -----------------------------------------------------------------------


@dataclass
class _Block:
    words: list[str]
    line: int
    parent: _Block | None
    directives: list[tuple[list[str], int]]


def _tokens(text: str, name: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        i = 0
        while i < len(line):
            ch = line[i]
            if ch.isspace():
                i += 1
            elif ch == "#":
                break
            elif ch in "{};":
                out.append((ch, lineno))
                i += 1
            elif ch in "\"'":
                end = line.find(ch, i + 1)
                if end < 0:
                    raise ProxyConfigError(f"{name}: line {lineno}: unterminated quoted string")
                out.append((line[i : end + 1], lineno))
                i = end + 1
            else:
                j = i
                while j < len(line) and not line[j].isspace() and line[j] not in "{};#":
                    j += 1
                out.append((line[i:j], lineno))
                i = j
    return out


def _parse_nginx(text: str, name: str) -> ProxyConfig:
    root = _Block([], 0, None, [])
    blocks = [root]
    cur = root
    words: list[str] = []
    first = 0
    for tok, lineno in _tokens(text, name):
        if not words:
            first = lineno
        if tok == "{":
            block = _Block(words, first, cur, [])
            blocks.append(block)
            cur = block
            words = []
        elif tok == "}":
            if words:
                raise ProxyConfigError(
                    f"{name}: line {first}: '{' '.join(words)}' is missing its ';'"
                )
            if cur.parent is None:
                raise ProxyConfigError(f"{name}: line {lineno}: unexpected '}}'")
            cur = cur.parent
        elif tok == ";":
            if words:
                cur.directives.append((words, first))
            words = []
        else:
            words.append(tok)
    if words:
        raise ProxyConfigError(f"{name}: line {first}: '{' '.join(words)}' is missing its ';'")
    if cur is not root:
        raise ProxyConfigError(f"{name}: the block at line {cur.line} is never closed ('}}')")

    problems: list[Problem] = []
    # values per block: directive -> (seconds or None, line)
    values: dict[int, dict[str, tuple[float | None, int]]] = {}
    for block in blocks:
        seen: dict[str, tuple[float | None, int]] = {}
        literal_keys = bool(block.words) and block.words[0] in _KEY_BLOCKS
        for dwords, line in block.directives:
            head = dwords[0]
            written = " ".join(dwords) + ";"
            bare = head.rstrip(":")
            # no nginx directive has a colon in its name; inside map-like
            # blocks the first word is a key, not a directive
            if head.endswith(":") and len(head) > 1 and not literal_keys:
                fixed = " ".join([bare, *dwords[1:]]) + ";"
                problems.append(
                    Problem(
                        line,
                        written,
                        f'unknown directive "{head}": nginx rejects the whole file '
                        "(nginx -t fails, a reload keeps the old config)",
                        f"write `{fixed}` (no colon), then check with `nginx -t`",
                    )
                )
                if bare in TIMEOUT_DIRECTIVES:
                    seen[bare] = (None, line)
            elif head in TIMEOUT_DIRECTIVES:
                value = parse_time(dwords[1], _NGINX_UNITS, 1.0) if len(dwords) == 2 else None
                if value is None:
                    problems.append(
                        Problem(
                            line,
                            written,
                            f'invalid value for "{head}": expected one time like 180s or 3m',
                            f"write e.g. `{head} 180s;`",
                        )
                    )
                seen[head] = (value, line)
        values[id(block)] = seen

    locations: list[ProxyLocation] = []
    for block in blocks:
        if not block.words or block.words[0] != "location" or not _proxies_websocket(block):
            continue
        timeouts: list[Timeout] = []
        for directive in TIMEOUT_DIRECTIVES:
            found: Timeout | None = None
            b: _Block | None = block
            while b is not None:
                if directive in values[id(b)]:
                    secs, line = values[id(b)][directive]
                    found = Timeout(directive, secs, "set" if b is block else "inherited", line)
                    break
                b = b.parent
            timeouts.append(found or Timeout(directive, NGINX_DEFAULT_TIMEOUT, "default"))
        locations.append(
            ProxyLocation(" ".join(block.words), block.line, timeouts[0], tuple(timeouts))
        )
    return ProxyConfig(name, NGINX, tuple(locations), tuple(problems))


def _proxies_websocket(block: _Block) -> bool:
    for dwords, _ in block.directives:
        head = dwords[0].rstrip(":").lower()
        if head == "proxy_set_header" and len(dwords) > 1 and dwords[1].lower() == "upgrade":
            return True
    return False


# -- haproxy ---------------------------------------------------------------------


def _parse_haproxy(text: str, name: str) -> ProxyConfig:
    problems: list[Problem] = []
    sections: list[tuple[str, int, dict[str, Timeout]]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if _HAPROXY_SECTION.match(line):
            sections.append((" ".join(words[:2]), lineno, {}))
            continue
        if words[0].rstrip(":") != "timeout" or not sections:
            continue
        if words[0] != "timeout" or len(words) != 3 or words[1].endswith(":"):
            problems.append(
                Problem(
                    lineno,
                    line,
                    "haproxy expects `timeout <name> <time>`",
                    "write e.g. `timeout tunnel 180s`",
                )
            )
            continue
        kind, value = words[1], parse_time(words[2], _HAPROXY_UNITS, 0.001)
        if value is None:
            problems.append(
                Problem(lineno, line, f"invalid time {words[2]!r}", "write e.g. 180s or 3m")
            )
        sections[-1][2][f"timeout {kind}"] = Timeout(f"timeout {kind}", value, "set", lineno)
    # defaults apply to the proxies after them; report every section that
    # proxies (frontend/listen/backend), with the defaults filled in
    locations: list[ProxyLocation] = []
    defaults: dict[str, Timeout] = {}
    for sname, sline, tos in sections:
        if sname.startswith("defaults"):
            defaults = {
                k: Timeout(v.directive, v.seconds, "inherited", v.line) for k, v in tos.items()
            }
            continue
        if sname.startswith("global") or not tos:
            continue  # a section without timeouts of its own: the defaults, once
        eff = {**defaults, **tos}
        idle = eff.get("timeout tunnel") or eff.get("timeout client")
        locations.append(ProxyLocation(sname, sline, idle, tuple(eff.values())))
    if not locations and defaults:
        idle = defaults.get("timeout tunnel") or defaults.get("timeout client")
        locations.append(ProxyLocation("defaults", 0, idle, tuple(defaults.values())))
    return ProxyConfig(name, HAPROXY, tuple(locations), tuple(problems))
