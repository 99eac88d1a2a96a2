"""Pure: the timeouts nginx applies to WebSocket connections, read from its
config: the ``location`` blocks that proxy WebSockets (they set
``proxy_set_header Upgrade ...``) and their ``proxy_read_timeout``,
``proxy_send_timeout`` and ``proxy_connect_timeout``, inherited from the
enclosing ``server``/``http`` block when the location does not set them, and
nginx's default of 60 s when nobody does. nginx times: ``ms s m h d w``,
combinable (``1h30m``); a bare number is seconds.

Text in, :class:`~soak.doctor.timeouts.ProxyConfig` out. A directive that
nginx would reject, such as the incident's ``proxy_read_timeout: 180s;`` (a
colon), is reported as a :class:`~soak.doctor.timeouts.Problem` rather than
read. HAProxy's config: soak.doctor.haproxy; loading either: soak.doctor.proxies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from soak.doctor.timeouts import (
    NGINX,
    NGINX_DEFAULT_TIMEOUT,
    Problem,
    ProxyConfig,
    ProxyConfigError,
    ProxyLocation,
    Timeout,
    parse_time,
)

TIMEOUT_DIRECTIVES = ("proxy_read_timeout", "proxy_send_timeout", "proxy_connect_timeout")

_NGINX_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
# blocks whose lines are "key value;" pairs, not directives
_KEY_BLOCKS = frozenset({"map", "geo", "types", "split_clients", "charset_map", "match"})


# -- nginx -----------------------------------------------------------------------


@dataclass
class _Block:
    words: list[str]
    line: int
    parent: _Block | None
    directives: list[tuple[list[str], int]]


def _tokens(text: str, name: str, base: int = 0) -> list[tuple[str, int]]:
    """The file's tokens with their lines (plus ``base``: see :data:`_FILE_STRIDE`)."""
    out: list[tuple[str, int]] = []
    for n, line in enumerate(text.splitlines(), 1):
        lineno = base + n
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
                    raise ProxyConfigError(f"{name}: line {n}: unterminated quoted string")
                out.append((line[i : end + 1], lineno))
                i = end + 1
            else:
                j = i
                while j < len(line) and not line[j].isspace() and line[j] not in "{};#":
                    j += 1
                out.append((line[i:j], lineno))
                i = j
    return out


# A line in an included file is numbered (file index) x _FILE_STRIDE + line
# while parsing, and told apart again at the end (_where).
_FILE_STRIDE = 10_000_000
_MAX_INCLUDE_DEPTH = 16
Includer = Callable[[str], list[tuple[str, str]]]


def parse_nginx(text: str, name: str, include: Includer | None = None) -> ProxyConfig:
    """``include``: the files an ``include PATTERN;`` names, as (name, text)
    pairs in nginx's order (it raises ProxyConfigError, whose message is put
    after the file and line of the include); None: ``include`` is not
    followed (a directive like any other)."""
    files = [name]
    tokens = _expand(_tokens(text, name), files, include, 0)
    try:
        return _parse(tokens, files)
    except _Located as exc:
        file, line = _where(exc.line, files)
        raise ProxyConfigError(f"{file}: line {line}: {exc.message}") from None


class _Located(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _where(vline: int, files: list[str]) -> tuple[str, int]:
    return files[vline // _FILE_STRIDE], vline % _FILE_STRIDE


def _expand(
    tokens: list[tuple[str, int]], files: list[str], include: Includer | None, depth: int
) -> list[tuple[str, int]]:
    """``include X;`` replaced by X's tokens (recursively), where it starts a
    directive."""
    if include is None:
        return tokens
    out: list[tuple[str, int]] = []
    i = 0
    while i < len(tokens):
        tok, line = tokens[i]
        starts = not out or out[-1][0] in ("{", "}", ";")
        if starts and tok == "include" and i + 2 < len(tokens) and tokens[i + 2][0] == ";":
            file, at = _where(line, files)
            if depth >= _MAX_INCLUDE_DEPTH:
                raise ProxyConfigError(f"{file}: line {at}: includes nested too deep (a loop?)")
            pattern = tokens[i + 1][0].strip("\"'")
            try:
                found = include(pattern)
            except ProxyConfigError as exc:
                raise ProxyConfigError(f"{file}: line {at}: include {pattern}: {exc}") from None
            for inc_name, inc_text in found:
                files.append(inc_name)
                inner = _tokens(inc_text, inc_name, (len(files) - 1) * _FILE_STRIDE)
                out.extend(_expand(inner, files, include, depth + 1))
            i += 3
            continue
        out.append((tok, line))
        i += 1
    return out


def _parse(tokens: list[tuple[str, int]], files: list[str]) -> ProxyConfig:
    name = files[0]
    root = _Block([], 0, None, [])
    blocks = [root]
    cur = root
    words: list[str] = []
    first = 0
    for tok, lineno in tokens:
        if not words:
            first = lineno
        if tok == "{":
            block = _Block(words, first, cur, [])
            blocks.append(block)
            cur = block
            words = []
        elif tok == "}":
            if words:
                raise _Located(first, f"'{' '.join(words)}' is missing its ';'")
            if cur.parent is None:
                raise _Located(lineno, "unexpected '}'")
            cur = cur.parent
        elif tok == ";":
            if words:
                cur.directives.append((words, first))
            words = []
        else:
            words.append(tok)
    if words:
        raise _Located(first, f"'{' '.join(words)}' is missing its ';'")
    if cur is not root:
        file, line = _where(cur.line, files)
        raise ProxyConfigError(f"{file}: the block at line {line} is never closed ('}}')")

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
    return ProxyConfig(
        name,
        NGINX,
        tuple(_placed_location(loc, files) for loc in locations),
        tuple(_placed_problem(p, files) for p in problems),
    )


def _placed_timeout(t: Timeout, files: list[str]) -> Timeout:
    file, line = _where(t.line, files)
    return replace(t, line=line, file="" if file == files[0] else file)


def _placed_location(loc: ProxyLocation, files: list[str]) -> ProxyLocation:
    file, line = _where(loc.line, files)
    return replace(
        loc,
        line=line,
        file="" if file == files[0] else file,
        idle=None if loc.idle is None else _placed_timeout(loc.idle, files),
        timeouts=tuple(_placed_timeout(t, files) for t in loc.timeouts),
    )


def _placed_problem(p: Problem, files: list[str]) -> Problem:
    file, line = _where(p.line, files)
    return replace(p, line=line, file="" if file == files[0] else file)


def _proxies_websocket(block: _Block) -> bool:
    for dwords, _ in block.directives:
        head = dwords[0].rstrip(":").lower()
        if head == "proxy_set_header" and len(dwords) > 1 and dwords[1].lower() == "upgrade":
            return True
    return False
