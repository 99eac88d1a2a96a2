"""The validation framework every table is read with.

A :class:`Loader` knows the file (or, for command-line options, nothing:
the option names itself) and turns a bad value into one line:

    profiles/x.toml: heartbeat.interval: expected a duration like "30s", got -1

A :class:`Section` reads one TOML table, remembers which keys were read, and
reports any other key as unknown, with the nearest valid name. Value parsers
have the shape ``(where, raw) -> value`` and fail through the loader.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from soak.config.units import parse_duration, parse_percent
from soak.errors import ProfileError

T = TypeVar("T")
Parser = Callable[[str, Any], T]

DURATION_LIKE = '"30s", "5m" or "250ms"'


def nearest(word: str, options: Iterable[str], cutoff: float = 0.5) -> str | None:
    """The option closest to a misspelt ``word``, if any is close enough."""
    near = difflib.get_close_matches(word, list(options), n=1, cutoff=cutoff)
    return near[0] if near else None


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """``" (did you mean 'latency'?)"``, or ``""`` when nothing is close."""
    near = nearest(word, options)
    return f" (did you mean '{near}'?)" if near else ""


def show(value: Any) -> str:
    """A value as the profile wrote it, for messages."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    return repr(value)


class FieldError(ProfileError):
    """A bad value: ``where`` (``heartbeat.interval``, ``--latency``) and
    ``detail`` (``expected ..., got ...``) apart, for a front end (such as
    click's) that places them itself."""

    def __init__(self, message: str, where: str, detail: str) -> None:
        super().__init__(message)
        self.where = where
        self.detail = detail


class Loader:
    """Fails with messages that name the file (``path``; "" for options)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _prefix(self) -> str:
        # command-line overrides have no file to name: the option says it all
        return f"{self.path}: " if self.path else ""

    def fail(self, where: str, expected: str, got: Any, *, found: bool = True) -> NoReturn:
        detail = f"{expected}, got {show(got)}" if found else expected
        raise FieldError(f"{self._prefix()}{where}: {detail}", where, detail)

    def unknown(
        self, where: str, key: str, allowed: list[str], valid: str | None = None
    ) -> NoReturn:
        valid = valid or "valid fields: " + ", ".join(allowed)
        detail = f"unknown field{did_you_mean(key, allowed)}; {valid}"
        raise FieldError(f"{self._prefix()}{where}: {detail}", where, detail)

    # value parsers: (where, raw) -> value
    def duration(self, where: str, raw: Any, like: str = DURATION_LIKE) -> float:
        if isinstance(raw, str):
            try:
                value = parse_duration(raw)
            except ValueError:
                pass
            else:
                return value
            if raw.strip().startswith("-"):
                self.fail(where, "expected a duration of zero or more", raw)
        return self.fail(where, f"expected a duration like {like}", raw)

    def positive_duration(self, where: str, raw: Any, like: str = DURATION_LIKE) -> float:
        value = self.duration(where, raw, like)
        if value <= 0:
            self.fail(where, "expected a duration greater than zero", raw)
        return value

    def string(self, where: str, raw: Any) -> str:
        if not isinstance(raw, str):
            self.fail(where, "expected a string", raw)
        return str(raw)

    def existing_file(self, where: str, raw: Any) -> str:
        text = self.string(where, raw)
        if not Path(text).is_file():
            self.fail(where, "expected the path of an existing file", raw)
        return text

    def boolean(self, where: str, raw: Any) -> bool:
        if not isinstance(raw, bool):
            self.fail(where, "expected true or false", raw)
        return bool(raw)

    def integer(self, where: str, raw: Any, minimum: int = 0) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
            self.fail(where, f"expected a whole number >= {minimum}", raw)
        return int(raw)

    def at_least(self, minimum: int) -> Parser[int]:
        """:meth:`integer` with a minimum, as a value parser."""
        return lambda where, raw: self.integer(where, raw, minimum)

    def number(self, where: str, raw: Any, minimum: float = 0.0) -> float:
        ok = isinstance(raw, int | float) and not isinstance(raw, bool)
        if not ok or not math.isfinite(raw) or raw < minimum:
            self.fail(where, f"expected a number >= {minimum:g}", raw)
        return float(raw)

    def percent(self, where: str, raw: Any) -> float:
        if isinstance(raw, str):
            try:
                return parse_percent(raw)
            except ValueError:
                pass
        return self.fail(where, 'expected a percentage like "99.9%"', raw)

    def choice(self, options: tuple[str, ...]) -> Parser[str]:
        def parse(where: str, raw: Any) -> str:
            if raw not in options:
                hint = did_you_mean(str(raw), options)
                self.fail(where, f"expected one of {', '.join(options)}{hint}", raw)
            return str(raw)

        return parse

    def url(self, where: str, raw: Any) -> str:
        text = self.string(where, raw)
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:  # e.g. "Port out of range 0-65535"
            return self.fail(where, f"expected a ws:// or wss:// URL ({exc})", raw)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            self.fail(where, "expected a ws:// or wss:// URL with a host", raw)
        if port == 0:
            self.fail(where, "expected a port between 1 and 65535", raw)
        return text

    def section(self, where: str, raw: Any) -> Section:
        """A nested table, as a value parser."""
        return Section(self, where, raw)


class Section:
    """Reads one TOML table, remembers which keys were used, and complains
    about the rest with the nearest valid name."""

    def __init__(self, loader: Loader, name: str, data: Any) -> None:
        self.loader = loader
        self.name = name
        if not isinstance(data, dict):
            loader.fail(name, "expected a table", data)
        self.data: dict[str, Any] = data
        self.allowed: list[str] = []

    def where(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def get(self, key: str, parse: Parser[T], default: T) -> T:
        self.allowed.append(key)
        if key not in self.data:
            return default
        return parse(self.where(key), self.data[key])

    def require(self, key: str, parse: Parser[T]) -> T:
        self.allowed.append(key)
        if key not in self.data:
            self.loader.fail(self.where(key), "is required", None, found=False)
        return parse(self.where(key), self.data[key])

    def table(self, key: str) -> Section:
        """The nested table ``key``, or an empty one where it is missing."""
        return self.get(key, self.loader.section, Section(self.loader, self.where(key), {}))

    def finish(self) -> None:
        for key in self.data:
            if key not in self.allowed:
                self.loader.unknown(self.where(key), key, self.allowed)
