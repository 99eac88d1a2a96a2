"""Reading ``[impairment]`` (flat settings and ``[impairment.NAME]`` tables)
and ``soak proxy``'s options into one :class:`Impairment`, with the same
value parsers for both: the same bad value gets the same message, placed
at the field or at the option."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from soak.config.impairment import (
    DIRECTIONS,
    DISTS,
    FLAT,
    SCOPED,
    TABLES,
    BandwidthImpairment,
    DropHeartbeatImpairment,
    Impairment,
    LatencyImpairment,
    NatIdleImpairment,
    TimedImpairment,
    Window,
    window_fields,
)
from soak.config.units import format_duration, parse_rate
from soak.config.validation import Loader, Parser, Section, did_you_mean

# how an impairment's own setting is shown in an example: the proxy's options
# have always said "100ms"
DELAY_LIKE = '"100ms"'
RATE_LIKE = 'expected a rate like "100kB", "1MiB" or "8Mbit"'

# flat keys that belong to an impairment given as a table
_FLAT_PARTS = {"jitter": "latency", "jitter_dist": "latency", "drop_heartbeat_p": "drop_heartbeat"}
_FLAT_NAMES = {"black_hole": "black_hole_at", "reset": "reset_at"}


def setting(ld: Loader, key: str) -> Parser[Any]:
    """The parser of one flat [impairment] setting or scope key: the same
    for a profile and for soak proxy's options."""

    def rate(where: str, raw: Any) -> float:
        try:
            return parse_rate(ld.string(where, raw))
        except ValueError:
            ld.fail(where, RATE_LIKE, raw)

    def fraction(where: str, raw: Any) -> float:
        value = ld.number(where, raw)
        if value > 1:
            ld.fail(where, "expected a fraction between 0 and 1", raw)
        return value

    def delay(where: str, raw: Any) -> float:
        return ld.duration(where, raw, DELAY_LIKE)

    parsers: dict[str, Callable[[str, Any], Any]] = {
        "latency": delay,
        "jitter": delay,
        "jitter_dist": ld.choice(DISTS),
        "direction": ld.choice(DIRECTIONS),
        "fraction": fraction,
        "bandwidth": rate,
        "nat_idle": lambda w, v: ld.positive_duration(w, v, DELAY_LIKE),
        "black_hole_at": delay,
        "reset_at": delay,
        "drop_heartbeat": ld.at_least(1),
        "drop_heartbeat_p": fraction,
        "seed": ld.integer,
        "from": ld.duration,
        "until": ld.positive_duration,
    }
    return parsers[key]


def _table(s: Section, name: str, *, own: bool) -> tuple[dict[str, Any], Window]:
    """One [impairment.NAME] table (without its ``own`` settings: one
    ``--scope NAME:...`` option): its settings as flat fields, and its window."""
    ld = s.loader
    out: dict[str, Any] = {}
    for key, flat in TABLES[name].items() if own else ():
        if key in s.data:
            out[flat] = s.get(key, setting(ld, flat), None)
        else:
            s.allowed.append(key)
    scope: dict[str, Any] = {}
    for key in SCOPED[name]:
        if key in s.data:
            scope[key] = s.get(key, setting(ld, key), None)
        else:
            s.allowed.append(key)
    s.finish()
    start, end = scope.get("from"), scope.get("until")
    if start is not None and end is not None and end <= start:
        ld.fail(
            s.where("until"),
            f"expected a time after from ({format_duration(start)})",
            format_duration(end),
        )
    window = Window(scope.get("fraction"), start, end, scope.get("direction"))
    if not own:
        return out, window
    if name == "drop_heartbeat" and "drop_heartbeat" not in out and "drop_heartbeat_p" not in out:
        ld.fail(s.where("nth"), "is required (or p): which heartbeat to drop", None, found=False)
    main = TABLES[name]
    first = next(iter(main))
    if name != "drop_heartbeat" and main[first] not in out:
        ld.fail(s.where(first), "is required", None, found=False)
    return out, window


def assemble(flat: Mapping[str, Any], windows: Mapping[str, Window]) -> Impairment:
    """The impairment from validated flat settings (see FLAT) and the
    impairments' own windows, by table name."""

    def window(name: str) -> Window:
        return windows.get(name, Window())

    lat = None
    if any(k in flat for k in ("latency", "jitter", "jitter_dist")):
        lat = LatencyImpairment(
            flat.get("latency"),
            flat.get("jitter"),
            flat.get("jitter_dist", "uniform"),
            window("latency"),
        )
    hb = None
    if "drop_heartbeat" in flat or "drop_heartbeat_p" in flat:
        hb = DropHeartbeatImpairment(
            flat.get("drop_heartbeat"), flat.get("drop_heartbeat_p", 0.0), window("drop_heartbeat")
        )

    def timed(name: str) -> TimedImpairment | None:
        at = flat.get(f"{name}_at")
        return None if at is None else TimedImpairment(at, window(name).fraction)

    return Impairment(
        latency=lat,
        bandwidth=None
        if flat.get("bandwidth") is None
        else BandwidthImpairment(flat["bandwidth"], window("bandwidth")),
        nat_idle=None
        if flat.get("nat_idle") is None
        else NatIdleImpairment(flat["nat_idle"], window("nat_idle")),
        black_hole=timed("black_hole"),
        reset=timed("reset"),
        drop_heartbeat=hb,
        direction=flat.get("direction", "both"),
        fraction=flat.get("fraction", 1.0),
        seed=flat.get("seed", 1),
    )


def parse_impairment(s: Section) -> Impairment:
    """The ``[impairment]`` table, flat settings and tables alike."""
    ld = s.loader
    flat: dict[str, Any] = {}
    windows: dict[str, Window] = {}
    tables = [name for name in TABLES if isinstance(s.data.get(name), dict)]
    for name in tables:
        fields, windows[name] = _table(Section(ld, s.where(name), s.data[name]), name, own=True)
        flat.update(fields)
    for name, at in _FLAT_NAMES.items():
        s.allowed.append(name)
        if name in s.data and name not in tables:
            ld.fail(
                s.where(name), f"expected a table like [impairment.{name}] (or {at})", s.data[name]
            )
        if name in tables and at in s.data:
            ld.fail(s.where(at), f"is given twice: here and in [impairment.{name}]", s.data[at])
    for key, owner in _FLAT_PARTS.items():
        if owner in tables and key in s.data:
            ld.fail(
                s.where(key),
                f"goes in the [impairment.{owner}] table when {owner} is one",
                s.data[key],
            )
    for key in FLAT:
        if key in tables:
            s.allowed.append(key)
            continue
        value = s.get(key, setting(ld, key), None)
        if value is not None:
            flat[key] = value
    for key, raw in s.data.items():
        if key not in s.allowed and isinstance(raw, dict):
            ld.fail(
                s.where(key),
                f"unknown impairment{did_you_mean(key, TABLES)}; impairments: {', '.join(TABLES)}",
                None,
                found=False,
            )
    s.finish()
    imp = assemble(flat, windows)
    try:
        imp.proxy_config()
    except ValueError as exc:
        ld.fail(s.name, f"expected a consistent impairment ({exc})", None, found=False)
    return imp


def parse_scope(text: str) -> tuple[str, Window]:
    """``--scope latency:fraction=0.5,from=10s,until=1m,direction=down``: the
    same keys and values as an [impairment.NAME] table."""
    ld = Loader("")
    name, sep, rest = text.partition(":")
    name = name.strip()
    if name not in SCOPED:
        ld.fail(
            "--scope",
            f"expected NAME:KEY=VALUE,... with NAME one of {', '.join(SCOPED)}"
            f"{did_you_mean(name, SCOPED)}",
            text,
        )
    data: dict[str, Any] = {}
    for item in rest.split(",") if sep and rest.strip() else []:
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            ld.fail(f"--scope {name}", "expected KEY=VALUE items like fraction=0.5", item)
        if key in data:
            ld.fail(f"--scope {name}.{key}", "is given twice", value)
        raw: Any = value
        if key == "fraction":
            try:
                raw = float(value)
            except ValueError:
                raw = value
        data[key] = raw
    if not data:
        ld.fail(
            "--scope", f"expected at least one of {', '.join(SCOPED[name])} after {name}:", text
        )
    _, window = _table(Section(ld, f"--scope {name}", data), name, own=False)
    return name, window


def parse_scope_option(text: str) -> dict[str, Any]:
    """:func:`parse_scope` as flat fields: ``{"latency_fraction": 0.5, ...}``."""
    name, window = parse_scope(text)
    return window_fields(name, window)
