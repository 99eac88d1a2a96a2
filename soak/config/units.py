"""Pure: the units a profile and soak's options are written in (durations,
rates, percentages), parsed and shown. Every parser raises ValueError."""

from __future__ import annotations

import re
from decimal import Decimal

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """``"30s"`` -> 30.0, ``"1h30m"`` -> 5400.0, ``"250ms"`` -> 0.25.

    Raises ValueError for anything else, including bare numbers: a unit is
    required because "30" could mean seconds or milliseconds.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty")
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            raise ValueError(text)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise ValueError(text)
    return total


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration` for display: 90.0 -> ``"1m30s"``."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    out = []
    rest = seconds
    for unit, size in (("h", 3600), ("m", 60)):
        if rest >= size:
            n = int(rest // size)
            out.append(f"{n}{unit}")
            rest -= n * size
    if rest or not out:
        out.append(f"{rest:g}s")
    return "".join(out)


_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|KiB|MiB|GiB|bit|kbit|Mbit|Gbit)(?:/s)?")
_RATE_UNITS = {
    "B": 1.0,
    "kB": 1e3,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "KiB": 1024.0,
    "MiB": 1024.0**2,
    "GiB": 1024.0**3,
    "bit": 1 / 8,
    "kbit": 1e3 / 8,
    "Mbit": 1e6 / 8,
    "Gbit": 1e9 / 8,
}


def parse_rate(text: str) -> float:
    """``"100kB"`` -> 100000.0 bytes/s, ``"8Mbit"`` -> 1e6, ``"1MiB/s"`` ->
    1048576.0. A unit is required. Raises ValueError otherwise."""
    m = _RATE.fullmatch(text.strip())
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(text)
    return float(m.group(1)) * _RATE_UNITS[m.group(2)]


def parse_percent(text: str) -> float:
    """``"99.9%"`` -> 0.999 (exactly: in decimal, because float("99.9") / 100
    is 0.9990000000000001, and a run with exactly 999 of 1000 pongs would
    fail "99.9%"). Between 0% and 100%; raises ValueError otherwise."""
    if not text.endswith("%"):
        raise ValueError(text)
    try:
        value = float(Decimal(text[:-1]) / 100)
    except ArithmeticError:
        raise ValueError(text) from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(text)
    return value
