"""A tiny YAML reader for the simple subset a gateway config uses.

PyYAML is not a dependency. This reads indentation-based nested mappings of
``key: value`` lines, where a value is a scalar (integer, float, true/false,
null, a plain or quoted string) or nothing (a nested mapping follows, indented
more). ``#`` comments and blank lines are ignored. Anything else (lists,
flow ``{}``/``[]`` collections, multi-line strings, anchors, tabs used for
indentation, several documents) is refused with a :class:`YamlError` naming
the line, rather than being misread.
"""

from __future__ import annotations

import re
from typing import Any

_KEY = re.compile(r"""^(?P<key>[A-Za-z0-9_.\-]+|"[^"]*"|'[^']*')\s*:(?:\s+(?P<value>.*))?$""")
_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$")


class YamlError(ValueError):
    """The text is not in the supported subset; the message names the line."""


def _strip_comment(line: str) -> str:
    out = []
    quote: str | None = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        out.append(ch)
    return "".join(out).rstrip()


def _scalar(text: str, lineno: int) -> Any:
    if text[0] in "\"'":
        if len(text) < 2 or text[-1] != text[0]:
            raise YamlError(f"line {lineno}: unterminated quoted string")
        return text[1:-1]
    if text[0] in "[{&*!|>-" and (text[0] != "-" or not _FLOAT.match(text)):
        raise YamlError(
            f"line {lineno}: {text!r}: only scalars and nested mappings are supported "
            "(no lists, flow collections, anchors, tags or block strings)"
        )
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("null", "~"):
        return None
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def loads(text: str) -> dict[str, Any]:
    """Parse ``text``; the top level must be a mapping."""
    root: dict[str, Any] = {}
    # (indent, mapping) from the outside in; a mapping just opened by "key:"
    # has indent None until its first line fixes it
    stack: list[tuple[int | None, dict[str, Any]]] = [(0, root)]
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if not line.strip():
            continue
        if line.strip() in ("---", "..."):
            if lineno == 1 or not root:
                continue
            raise YamlError(f"line {lineno}: several documents are not supported")
        body = line.lstrip(" ")
        if body.startswith("\t") or "\t" in line[: len(line) - len(body)]:
            raise YamlError(f"line {lineno}: tabs cannot indent YAML")
        indent = len(line) - len(body)
        if body.startswith("- ") or body == "-":
            raise YamlError(f"line {lineno}: lists are not supported, only nested mappings")
        m = _KEY.match(body)
        if m is None:
            raise YamlError(f"line {lineno}: expected 'key: value' or 'key:', got {body!r}")
        if stack[-1][0] is None:
            parent_indent = stack[-2][0]
            assert parent_indent is not None
            if indent > parent_indent:
                stack[-1] = (indent, stack[-1][1])
            else:
                stack.pop()  # "key:" with nothing under it: an empty mapping
        while len(stack) > 1 and indent < (stack[-1][0] or 0):
            stack.pop()
        if indent != stack[-1][0]:
            raise YamlError(f"line {lineno}: inconsistent indentation")
        mapping = stack[-1][1]
        key = m.group("key")
        if key[0] in "\"'":
            key = key[1:-1]
        if key in mapping:
            raise YamlError(f"line {lineno}: duplicate key {key!r}")
        value = m.group("value")
        if value is None or not value.strip():
            child: dict[str, Any] = {}
            mapping[key] = child
            stack.append((None, child))
        else:
            mapping[key] = _scalar(value.strip(), lineno)
    return root
