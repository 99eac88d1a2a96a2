"""The ``[thresholds]`` table and ``--threshold`` options: the same names
and values either way."""

from __future__ import annotations

import re
from typing import Any

from soak.config.thresholds import (
    COUNTS,
    LATENCY,
    SHARES,
    STRICT,
    THRESHOLD_HELP,
    THRESHOLD_NAMES,
    Threshold,
    percentile_of,
)
from soak.config.validation import Loader, Section


def parse_thresholds(s: Section) -> tuple[Threshold, ...]:
    ld = s.loader
    out: list[Threshold] = []
    for key, raw in s.data.items():
        if key == STRICT:
            continue  # not a threshold: parse_strict
        op = ">=" if key in ("heartbeat_success", *SHARES) else "<="
        out.append(_threshold(ld, s.where(key), key, op, raw))
    return tuple(out)


def parse_strict(s: Section) -> bool:
    """``[thresholds] strict = true``: a finding of error severity fails the run."""
    if STRICT not in s.data:
        return False
    return s.loader.boolean(s.where(STRICT), s.data[STRICT])


def _threshold(ld: Loader, where: str, key: str, op: str, raw: Any) -> Threshold:
    m = LATENCY.match(key)
    if m:
        q = percentile_of(m.group(2))
        if q is not None and not 0 < q <= 100:
            ld.fail(where, "expected a percentile between p1 and p100", key)
        return Threshold(key, ld.duration(where, raw), str(raw), op)
    if key == "heartbeat_success" or key in SHARES:
        return Threshold(key, ld.percent(where, raw), str(raw), op)
    if key in COUNTS:
        return Threshold(key, float(ld.integer(where, raw)), str(raw), op)
    ld.unknown(where, key, list(THRESHOLD_NAMES), THRESHOLD_HELP)


_THRESHOLD_OPTION = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=|==|<|>)\s*(\S+)\s*$")


def parse_threshold_option(text: str) -> Threshold:
    """``--threshold rtt_p99<250ms``, ``false_timeouts==0``,
    ``heartbeat_success>=99.9%``: the same names and values as [thresholds]."""
    ld = Loader("")
    m = _THRESHOLD_OPTION.match(text)
    if m is None:
        ld.fail(
            "--threshold",
            'expected NAME OP VALUE like "rtt_p99<250ms" or "false_timeouts==0" (OP: < <= == >= >)',
            text,
        )
    key, op, value = m.groups()
    raw: Any = value
    if key in COUNTS:
        try:
            raw = int(value)
        except ValueError:
            raw = value
    return _threshold(ld, f"--threshold {key}", key, op, raw)
