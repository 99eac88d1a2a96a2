"""Parsers of the small tables: ``[run]``, ``[heartbeat]``, ``[reconnect]``
and ``[storms]``."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from soak.config.heartbeat import (
    HINTS,
    JITTERS,
    PHASES,
    PRESET_NAMES,
    PRESETS,
    HeartbeatConfig,
    ReconnectConfig,
    StormConfig,
)
from soak.config.profile import MAX_WORKERS, WORKERS_AUTO, RunConfig
from soak.config.units import format_duration
from soak.config.validation import Loader, Section

_LABEL = re.compile(r"[A-Za-z0-9._+-]{1,80}")
LABEL_EXPECTED = "expected 1-80 letters, digits or . _ + -"


def label(ld: Loader, where: str, raw: Any) -> str:
    text = ld.string(where, raw)
    if not _LABEL.fullmatch(text):
        ld.fail(where, LABEL_EXPECTED, text)
    return text


def workers(ld: Loader, where: str, raw: Any) -> int:
    """A worker count: a positive whole number or "auto"."""
    if raw == "auto":
        return WORKERS_AUTO
    value = int(raw) if isinstance(raw, str) and raw.strip().isdigit() else raw
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WORKERS:
        return value
    ld.fail(where, f'expected a number of worker processes from 1 to {MAX_WORKERS}, or "auto"', raw)


MAX_SHARDS = 10_000
SHARD_EXPECTED = (
    f'expected "I/N": shard I of N, I from 0 to N-1, N from 1 to {MAX_SHARDS} (e.g. "0/4")'
)
START_AT_EXPECTED = "expected a UTC instant with its offset, like 2026-12-03T12:05:00Z"


def shard(ld: Loader, where: str, raw: Any) -> str:
    """A shard, ``"I/N"``, written back in that form."""
    text = raw.strip() if isinstance(raw, str) else None
    m = re.fullmatch(r"([0-9]+)/([0-9]+)", text or "")
    if m is None:
        ld.fail(where, SHARD_EXPECTED, raw)
    index, count = int(m.group(1)), int(m.group(2))
    if not 1 <= count <= MAX_SHARDS or index >= count:
        ld.fail(where, SHARD_EXPECTED, raw)
    return f"{index}/{count}"


def start_at(ld: Loader, where: str, raw: Any) -> float:
    """A wall-clock instant (a TOML offset date-time, or ISO 8601 text with
    ``Z`` or an offset), as epoch seconds."""
    when = raw
    if isinstance(raw, str):
        try:
            when = datetime.fromisoformat(raw.strip().replace("z", "Z"))
        except ValueError:
            ld.fail(where, START_AT_EXPECTED, raw)
    if not isinstance(when, datetime) or when.tzinfo is None:
        ld.fail(where, START_AT_EXPECTED, raw if isinstance(raw, str) else str(raw))
    return when.timestamp()


def port(ld: Loader, where: str, raw: Any) -> int:
    value = int(raw) if isinstance(raw, str) and raw.strip().isdigit() else raw
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
        return value
    ld.fail(where, "expected a TCP port from 0 to 65535 (0: any free port)", raw)


def parse_run(s: Section) -> RunConfig:
    ld = s.loader
    d = RunConfig()
    run = RunConfig(
        label=s.get("label", lambda w, v: label(ld, w, v), d.label),
        duration=s.get("duration", ld.positive_duration, None),
        report_interval=s.get("report_interval", ld.positive_duration, d.report_interval),
        seed=s.get("seed", ld.integer, d.seed),
        results_dir=s.get("results_dir", ld.string, d.results_dir),
        workers=s.get("workers", lambda w, v: workers(ld, w, v), d.workers),
        shard=s.get("shard", lambda w, v: shard(ld, w, v), d.shard),
        start_at=s.get("start_at", lambda w, v: start_at(ld, w, v), d.start_at),
        metrics_port=s.get("metrics_port", lambda w, v: port(ld, w, v), d.metrics_port),
        dashboard_port=s.get("dashboard_port", lambda w, v: port(ld, w, v), d.dashboard_port),
        batch_receive=s.get("batch_receive", ld.boolean, d.batch_receive),
    )
    s.finish()
    return run


def parse_heartbeat(s: Section) -> HeartbeatConfig:
    ld = s.loader
    d = HeartbeatConfig()
    hb = HeartbeatConfig(
        interval=s.get("interval", ld.positive_duration, d.interval),
        timeout=s.get("timeout", ld.positive_duration, d.timeout),
        max_missed=s.get("max_missed", ld.at_least(1), d.max_missed),
        phase=s.get("phase", ld.choice(PHASES), d.phase),
        kernel_timestamps=s.get("kernel_timestamps", ld.boolean, d.kernel_timestamps),
    )
    s.finish()
    return hb


def parse_storms(s: Section) -> StormConfig:
    ld = s.loader
    d = StormConfig()
    cfg = StormConfig(
        min_losses=s.get("min_losses", ld.at_least(2), d.min_losses),
        window=s.get("window", ld.positive_duration, d.window),
        quiet=s.get("quiet", ld.positive_duration, d.quiet),
    )
    s.finish()
    return cfg


def _range(ld: Loader, what: str, parse: Any) -> Any:
    """A [low, high] pair, each read by ``parse``, low <= high."""

    def read(where: str, raw: Any) -> tuple[float, float]:
        if not isinstance(raw, list) or len(raw) != 2:
            ld.fail(where, f"expected [low, high], like {what}", raw)
        lo, hi = parse(where, raw[0]), parse(where, raw[1])
        if lo > hi:
            ld.fail(where, f"expected low <= high, like {what}", raw)
        return (lo, hi)

    return read


def _fraction(ld: Loader) -> Any:
    def read(where: str, raw: Any) -> float:
        value = ld.number(where, raw, -1.0) if isinstance(raw, int | float) else None
        if value is None or value <= -1.0:
            ld.fail(where, "expected fractions above -1, like [-0.5, 0.5]", raw)
        return value

    return read


def _delays(ld: Loader) -> Any:
    def read(where: str, raw: Any) -> tuple[float, ...]:
        if not isinstance(raw, list) or not raw:
            ld.fail(where, 'expected a list of durations like ["0s", "2s", "10s"]', raw)
        return tuple(ld.duration(where, item) for item in raw)

    return read


def parse_reconnect(s: Section) -> ReconnectConfig:
    """[reconnect]; a ``preset`` fills the fields the profile leaves out."""
    ld = s.loader
    preset = s.get("preset", ld.choice(PRESET_NAMES), None)
    d = ReconnectConfig() if preset is None else ReconnectConfig(**PRESETS[preset])  # type: ignore[arg-type]
    rc = ReconnectConfig(
        enabled=s.get("enabled", ld.boolean, d.enabled),
        initial_delay=s.get("initial_delay", ld.duration, d.initial_delay),
        base=s.get("base", lambda w, v: ld.number(w, v, 1.0), d.base),
        max_delay=s.get("max_delay", ld.duration, d.max_delay),
        max_attempts=s.get("max_attempts", ld.integer, d.max_attempts),
        jitter=s.get("jitter", ld.choice(JITTERS), d.jitter),
        preset=preset,
        spread=s.get("spread", _range(ld, "[-0.5, 0.5]", _fraction(ld)), d.spread),
        first_spread=s.get("first_spread", _range(ld, "[0, 1.0]", _fraction(ld)), d.first_spread),
        add=s.get("add", _range(ld, '["300ms", "3s"]', ld.duration), d.add),
        delays=s.get("delays", _delays(ld), d.delays),
        hint=s.get("hint", ld.choice(HINTS), d.hint),
    )
    if rc.max_delay < rc.initial_delay:
        ld.fail(
            s.where("max_delay"),
            f"expected a duration >= initial_delay ({format_duration(rc.initial_delay)})",
            format_duration(rc.max_delay),
        )
    s.finish()
    return rc
