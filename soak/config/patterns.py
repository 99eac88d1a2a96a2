"""Pure: what a dialect described in a profile (``[target.dialect]``,
soak.config.dialect) is written in. Compiling checks: the ValueError says
what is wrong, and the parser names the field.

A **template** is text with the placeholders ``{seq}`` (the heartbeat's
number), ``{ts_ms}`` (the send time, epoch milliseconds) and ``{client_id}``;
every other brace is literal, so JSON is written as it is. With ``format =
"json"`` the client id is inserted JSON-escaped (write it inside quotes) and
the template is rendered with sample values and parsed; with ``format =
"hex"`` the template is bytes written in hex (no placeholders).

A **matcher** is one string:

- ``/type == "pong"``: the message is JSON and the value at that JSON
  pointer (RFC 6901) equals that JSON value (``/ok == true``, ``/type == 6``);
- ``/payload/seq``: the pointer exists;
- ``text:3``: the message is exactly this text;
- ``prefix:0{``: the message starts with this text;
- ``regex:^a\\[``: the regular expression matches somewhere in it;
- ``hex:d000``: a binary message of exactly these bytes.

Text matchers also read binary messages (decoded as UTF-8).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

PLACEHOLDERS = ("seq", "ts_ms", "client_id")
MATCHER_LIKE = (
    '\'/type == "pong"\', "/payload/seq", "text:3", "prefix:0{", "regex:^a\\\\[" or "hex:d000"'
)

_PLACE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SAMPLES = ({"seq": "1", "ts_ms": "1790000000000"}, {"seq": "4294967296", "ts_ms": "0"})
_SAMPLE_ID = 'soak-1"\\'  # a quote and a backslash: escaping must hold
SEQ, TS_MS = 0, 1  # the slots of a bound template


# -- templates ----------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A compiled template: literal text and placeholder names, in order."""

    parts: tuple[tuple[bool, str], ...]  # (is_placeholder, text or name)
    fmt: str  # json, text or hex
    raw: bytes = b""  # the bytes of a hex template

    def bind(self, client_id: str) -> list[str | int]:
        """The parts with the client id filled in: text, or SEQ / TS_MS slots."""
        cid = json.dumps(client_id)[1:-1] if self.fmt == "json" else client_id
        out: list[str | int] = []
        for is_place, text in self.parts:
            piece: str | int = text
            if is_place:
                piece = cid if text == "client_id" else (SEQ if text == "seq" else TS_MS)
            if isinstance(piece, str) and out and isinstance(out[-1], str):
                out[-1] = out[-1] + piece
            else:
                out.append(piece)
        return out

    def render(self, seq: int, ts_ms: int, client_id: str) -> str:
        return render(self.bind(client_id), seq, ts_ms)

    def format_string(self, client_id: str) -> str:
        """The bound template as a str.format string: ``{0}`` the seq,
        ``{1}`` the time (a heartbeat is then one C-level format call)."""
        out = []
        for p in self.bind(client_id):
            if isinstance(p, str):
                out.append(p.replace("{", "{{").replace("}", "}}"))
            else:
                out.append("{0}" if p == SEQ else "{1}")
        return "".join(out)

    @property
    def names(self) -> set[str]:
        return {text for is_place, text in self.parts if is_place}


def render(bound: list[str | int], seq: int, ts_ms: int) -> str:
    """A bound template's text for one heartbeat."""
    return "".join(p if isinstance(p, str) else str(seq if p == SEQ else ts_ms) for p in bound)


def compile_template(text: str, fmt: str, allowed: tuple[str, ...] = PLACEHOLDERS) -> Template:
    """The template ``text``, or ValueError saying what is wrong with it."""
    if fmt == "hex":
        if "{" in text:
            raise ValueError("a hex template has no placeholders")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError('expected hex digits like "c000"') from None
        return Template(((False, text),), fmt, raw)
    parts: list[tuple[bool, str]] = []
    at = 0
    for m in _PLACE.finditer(text):
        name = m.group(1)
        if name not in PLACEHOLDERS:
            raise ValueError(
                f"unknown placeholder {{{name}}}; expected "
                + ", ".join("{" + p + "}" for p in allowed)
            )
        if name not in allowed:
            raise ValueError(
                f"{{{name}}} is not known here; expected "
                + (", ".join("{" + p + "}" for p in allowed) or "no placeholders")
            )
        parts.append((False, text[at : m.start()]))
        parts.append((True, name))
        at = m.end()
    parts.append((False, text[at:]))
    tpl = Template(tuple(p for p in parts if p[0] or p[1]), fmt)
    if fmt == "json":
        for sample, client_id in zip(_SAMPLES, ("soak-1", _SAMPLE_ID), strict=True):
            bound = tpl.bind(client_id)
            shown = render(bound, int(sample["seq"]), int(sample["ts_ms"]))
            try:
                json.loads(shown)
            except ValueError as exc:
                msg = getattr(exc, "msg", str(exc))
                pos = getattr(exc, "pos", None)
                where = f" at character {pos}" if pos is not None else ""
                raise ValueError(
                    f"renders as {excerpt(shown)}, which is not JSON ({msg}{where}); "
                    'write {client_id} inside quotes, or use format = "text"'
                ) from None
    return tpl


# -- matchers -----------------------------------------------------------------------

_MISSING = object()  # a JSON pointer that leads nowhere
UNPARSED = object()  # a message whose JSON has not been parsed yet
NOT_JSON = object()  # a message that is not JSON


@dataclass(frozen=True)
class Matcher:
    """A compiled matcher (see the module)."""

    kind: str  # pointer, text, prefix, regex, hex
    source: str
    pointer: tuple[str, ...] = ()
    value: Any = _MISSING  # pointer: the value it must equal, or _MISSING (exists)
    text: str = ""
    pattern: re.Pattern[str] | None = None
    data: bytes = b""
    # a substring every matching text contains (a cheap pre-check), if any
    needle: str | None = None

    @property
    def json(self) -> bool:
        return self.kind == "pointer"

    def maybe(self, text: str) -> bool:
        """False when ``text`` cannot match (cheap)."""
        needle = self.needle
        return needle is None or needle in text

    def match_text(self, text: str, doc: Any = UNPARSED) -> bool:
        """Does the text message match? ``doc``: its JSON (parse_json), when
        the caller has parsed it already."""
        kind = self.kind
        if kind == "pointer":
            if doc is UNPARSED:
                doc = parse_json(text)
            if doc is NOT_JSON:
                return False
            found = resolve(doc, self.pointer)
            if found is _MISSING:
                return False
            return self.value is _MISSING or same(found, self.value)
        if kind == "text":
            return text == self.text
        if kind == "prefix":
            return text.startswith(self.text)
        if kind == "regex":
            assert self.pattern is not None
            return self.pattern.search(text) is not None
        return False

    def match_bytes(self, data: bytes) -> bool:
        if self.kind == "hex":
            return data == self.data
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return False
        return self.maybe(text) and self.match_text(text)


def parse_json(text: str) -> Any:
    """The JSON value of ``text``, or NOT_JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return NOT_JSON


def missing(value: Any) -> bool:
    return value is _MISSING


def same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def parse_pointer(text: str) -> tuple[str, ...]:
    """An RFC 6901 JSON pointer's tokens, or ValueError."""
    if not text.startswith("/"):
        raise ValueError('expected a JSON pointer like "/seq" or "/payload/seq"')
    if re.search(r"~[^01]|~$", text):
        raise ValueError("a JSON pointer escapes only ~0 (~) and ~1 (/)")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in text[1:].split("/"))


def resolve(doc: Any, tokens: tuple[str, ...]) -> Any:
    """The value at a JSON pointer, or _MISSING."""
    for token in tokens:
        if isinstance(doc, dict):
            if token not in doc:
                return _MISSING
            doc = doc[token]
        elif isinstance(doc, list):
            if not token.isdigit() or (token != "0" and token.startswith("0")):
                return _MISSING
            index = int(token)
            if index >= len(doc):
                return _MISSING
            doc = doc[index]
        else:
            return _MISSING
    return doc


_POINTER_EQ = re.compile(r"(/\S*)\s*(?:==\s*(.*\S))?\s*")


def compile_matcher(text: str) -> Matcher:
    """The matcher ``text``, or ValueError saying what is wrong with it."""
    if text.startswith("/"):
        m = _POINTER_EQ.fullmatch(text)
        if m is None:
            raise ValueError(f"expected a matcher like {MATCHER_LIKE}")
        pointer = parse_pointer(m.group(1))
        if m.group(2) is None:
            return Matcher("pointer", text, pointer)
        try:
            value = json.loads(m.group(2))
        except ValueError:
            raise ValueError(
                f"expected a JSON value after == (a string in double quotes), got {m.group(2)}"
            ) from None
        needle = json.dumps(value) if isinstance(value, str) else None
        return Matcher("pointer", text, pointer, value=value, needle=needle)
    kind, sep, rest = text.partition(":")
    if not sep or kind not in ("text", "prefix", "regex", "hex"):
        raise ValueError(f"expected a matcher like {MATCHER_LIKE}")
    if not rest:
        raise ValueError(f"expected something after {kind}:")
    if kind == "regex":
        try:
            pattern = re.compile(rest)
        except re.error as exc:
            raise ValueError(f"expected a regular expression ({exc})") from None
        return Matcher("regex", text, pattern=pattern)
    if kind == "hex":
        try:
            data = bytes.fromhex(rest)
        except ValueError:
            raise ValueError('expected hex digits after hex:, like "hex:d000"') from None
        return Matcher("hex", text, data=data)
    return Matcher(kind, text, text=rest, needle=rest)


def excerpt(text: str | bytes, size: int = 60) -> str:
    """A message as shown in an error: quoted and cut short."""
    if isinstance(text, bytes):
        cut = text[:size].hex(" ")
        return f"binary {cut}" + (" ..." if len(text) > size else "")
    return repr(text[:size] + ("..." if len(text) > size else ""))
