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
first character is ``{``) is JSON; anything else is read as YAML with the
small subset :mod:`soak.doctor.miniyaml` supports.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soak.doctor.miniyaml import YamlError, loads
from soak.profile import parse_duration


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
    if name.endswith(".json") or text.lstrip().startswith("{"):
        try:
            data: Any = json.loads(text)
        except ValueError as exc:
            raise GatewayConfigError(f"{name}: invalid JSON: {exc}") from None
    else:
        try:
            data = loads(text)
        except YamlError as exc:
            raise GatewayConfigError(
                f"{name}: unsupported or invalid YAML: {exc} (soak reads a simple subset: "
                "nested 'key: value' mappings; convert other files to JSON)"
            ) from None
    if not isinstance(data, dict):
        raise GatewayConfigError(f"{name}: expected a mapping at the top level")
    gw = data.get("gateway")
    if not isinstance(gw, dict) or not isinstance(gw.get("heartbeat"), dict):
        raise GatewayConfigError(
            f"{name}: gateway.heartbeat: expected a mapping with interval, timeout and maxMissed"
        )
    raw = _fields(name, "gateway.heartbeat", gw["heartbeat"])
    missing = [k for k in _FIELDS if k not in raw]
    if missing:
        raise GatewayConfigError(f"{name}: gateway.heartbeat: missing {', '.join(missing)}")
    default = HeartbeatRule(raw["interval"], raw["timeout"], int(raw["maxMissed"]))
    channels: list[ChannelOverride] = []
    chans = data.get("channels", {})
    if chans is None:
        chans = {}
    if not isinstance(chans, dict):
        raise GatewayConfigError(f"{name}: channels: expected a mapping of channel names")
    for cname, body in chans.items():
        if not isinstance(body, dict):
            raise GatewayConfigError(f"{name}: channels.{cname}: expected a mapping")
        hb = body.get("heartbeat")
        if hb is None:
            continue
        where = f"channels.{cname}.heartbeat"
        if not isinstance(hb, dict):
            raise GatewayConfigError(f"{name}: {where}: expected a mapping")
        over = _fields(name, where, hb)
        if not over:
            continue
        rule = HeartbeatRule(
            over.get("interval", default.interval),
            over.get("timeout", default.timeout),
            int(over.get("maxMissed", default.max_missed)),
        )
        channels.append(ChannelOverride(str(cname), rule, frozenset(over)))
    return GatewayHeartbeat(name, default, tuple(channels))


def _fields(name: str, where: str, raw: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in raw.items():
        k = _ALIASES.get(key, key)
        if k not in _FIELDS:
            continue
        if k in out:
            raise GatewayConfigError(f"{name}: {where}: {key} given twice")
        if k == "maxMissed":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GatewayConfigError(
                    f"{name}: {where}.{key}: expected a whole number >= 1, got {value!r}"
                )
            out[k] = value
        else:
            out[k] = _millis(name, f"{where}.{key}", value)
    return out


def _millis(name: str, where: str, value: Any) -> float:
    """Milliseconds (a number or a string of digits), or a duration with a
    unit; returns seconds."""
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
        raise GatewayConfigError(
            f'{name}: {where}: expected milliseconds (30000) or a duration ("30s"), got {value!r}'
        )
    return seconds
