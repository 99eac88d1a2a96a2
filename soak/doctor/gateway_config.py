"""The gateway's heartbeat config, in the incident's shape (YAML or JSON)::

    gateway:
      heartbeat:
        interval: 30000     # milliseconds, as the incident's gateway wrote them
        timeout: 120000
        maxMissed: 3
    channels:
      wecom:
        heartbeat:
          interval: 60000   # a per-channel override; unset fields inherit

Numbers are milliseconds; a string with a unit (``"30s"``, ``"2m"``) is read
as in a profile. ``max_missed`` is accepted for ``maxMissed``. Other keys are
ignored: a real gateway config has many. A file ending in ``.json`` (or whose
first character is ``{``) is JSON; anything else is YAML (PyYAML's safe
loader: lists, flow collections and block strings elsewhere in the file are
fine; a key given twice in one mapping is refused rather than the last one
silently winning, which could check another config than the one that runs).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from soak.config.units import parse_duration


class GatewayConfigError(ValueError):
    """The file could not be read (``unreadable``) or is not a config we
    understand. The message names the file and, where it can, the field."""

    def __init__(self, message: str, *, unreadable: bool = False) -> None:
        super().__init__(message)
        self.unreadable = unreadable


@dataclass(frozen=True)
class HeartbeatRule:
    """Seconds, and how many heartbeats may be missed before a close."""

    interval: float
    timeout: float
    max_missed: int


@dataclass(frozen=True)
class ChannelOverride:
    name: str
    rule: HeartbeatRule  # effective: the override over the gateway's default
    overridden: frozenset[str] = field(default_factory=frozenset)  # of interval/timeout/maxMissed


@dataclass(frozen=True)
class GatewayHeartbeat:
    path: str
    default: HeartbeatRule
    channels: tuple[ChannelOverride, ...] = ()


_FIELDS = {"interval": "interval", "timeout": "timeout", "maxMissed": "maxMissed"}
_ALIASES = {"max_missed": "maxMissed"}


def load_gateway_config(path: str | Path) -> GatewayHeartbeat:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GatewayConfigError(f"{name}: file not found", unreadable=True) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GatewayConfigError(f"{name}: cannot read: {exc}", unreadable=True) from None
    return parse_gateway_config(text, name)


def parse_gateway_config(text: str, name: str) -> GatewayHeartbeat:
    src = _Source(name)
    if name.endswith(".json") or text.lstrip().startswith("{"):
        try:
            data: Any = json.loads(text)
        except ValueError as exc:
            raise GatewayConfigError(f"{name}: invalid JSON: {exc}") from None
    else:
        data = src.load_yaml(text)
    if not isinstance(data, dict):
        raise src.error("expected a mapping at the top level")
    gw = data.get("gateway")
    if not isinstance(gw, dict) or not isinstance(gw.get("heartbeat"), dict):
        at = (gw, "heartbeat") if isinstance(gw, dict) and "heartbeat" in gw else (data, "gateway")
        raise src.error(
            "gateway.heartbeat: expected a mapping with interval, timeout and maxMissed", at
        )
    raw = _fields(src, "gateway.heartbeat", gw["heartbeat"])
    missing = [k for k in _FIELDS if k not in raw]
    if missing:
        raise src.error(f"gateway.heartbeat: missing {', '.join(missing)}", (gw, "heartbeat"))
    default = HeartbeatRule(raw["interval"], raw["timeout"], int(raw["maxMissed"]))
    channels: list[ChannelOverride] = []
    chans = data.get("channels", {})
    if chans is None:
        chans = {}
    if not isinstance(chans, dict):
        raise src.error("channels: expected a mapping of channel names", (data, "channels"))
    for cname, body in chans.items():
        if not isinstance(body, dict):
            raise src.error(f"channels.{cname}: expected a mapping", (chans, cname))
        hb = body.get("heartbeat")
        if hb is None:
            continue
        where = f"channels.{cname}.heartbeat"
        if not isinstance(hb, dict):
            raise src.error(f"{where}: expected a mapping", (body, "heartbeat"))
        over = _fields(src, where, hb)
        if not over:
            continue
        rule = HeartbeatRule(
            over.get("interval", default.interval),
            over.get("timeout", default.timeout),
            int(over.get("maxMissed", default.max_missed)),
        )
        channels.append(ChannelOverride(str(cname), rule, frozenset(over)))
    return GatewayHeartbeat(name, default, tuple(channels))


class _Source:
    """The file being read: its name, and (for YAML) the line of each value,
    so that an error names the file and the line of what is wrong."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: dict[tuple[int, Any], int] = {}

    def load_yaml(self, text: str) -> Any:
        loader = _Loader(text)
        try:
            return loader.get_single_data()
        except yaml.YAMLError as exc:
            raise GatewayConfigError(f"{self.name}: invalid YAML: {_yaml_problem(exc)}") from None
        finally:
            self.lines = loader.lines
            loader.dispose()

    def error(self, message: str, at: tuple[Any, Any] | None = None) -> GatewayConfigError:
        """``at``: (mapping, key) of the value the message is about."""
        line = self.lines.get((id(at[0]), at[1])) if at is not None else None
        where = f"line {line}: " if line is not None else ""
        return GatewayConfigError(f"{self.name}: {where}{message}")


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a key given twice in one
    mapping is an error instead of the last one winning silently, and the
    line of every value in a mapping is kept: ``lines[(id(mapping), key)]``,
    from 1."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[tuple[int, Any], int] = {}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable: construct_mapping says so below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
        mapping = super().construct_mapping(node, deep=deep)
        # the dict the document holds (construct_yaml_map fills it from ours)
        owner = self.constructed_objects.get(node, mapping)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            self.lines[(id(owner), key)] = value_node.start_mark.line + 1
        return mapping


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """``line N: what`` from a PyYAML error (the line where it has one)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        what = ", ".join(x for x in (exc.context, exc.problem) if x) or "not YAML"
        mark = exc.problem_mark or exc.context_mark
        return f"line {mark.line + 1}: {what}" if mark is not None else what
    return str(exc)


def _fields(src: _Source, where: str, raw: dict[Any, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in raw.items():
        k = _ALIASES.get(key, key)
        if k not in _FIELDS:
            continue
        if k in out:
            raise src.error(f"{where}: {key} given twice", (raw, key))
        if k == "maxMissed":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise src.error(
                    f"{where}.{key}: expected a whole number >= 1, got {value!r}", (raw, key)
                )
            out[k] = value
        else:
            seconds = _seconds(value)
            if seconds is None:
                raise src.error(
                    f"{where}.{key}: expected milliseconds (30000) or a duration "
                    f'("30s"), got {value!r}',
                    (raw, key),
                )
            out[k] = seconds
    return out


def _seconds(value: Any) -> float | None:
    """Milliseconds (a number or a string of digits), or a duration with a
    unit, in seconds; None if ``value`` is neither, or not above zero."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text) / 1000 if text.replace(".", "", 1).isdigit() else None
            if seconds is None:
                seconds = parse_duration(text)
        except ValueError:
            seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds
