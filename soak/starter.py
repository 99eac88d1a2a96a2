"""Pure: the commented starter profile ``soak init`` writes.

Every dialect soak speaks (soak.config.target.PROTOCOLS) gets a profile that
loads as written; a dialect with a table of its own under ``[target]``
(soak.config.tables.target.PROTOCOL_TABLES) gets that table with its
defaults, read from its parser, so a new dialect is covered without a change
here."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any

from soak.config.kinds import DURATION
from soak.config.tables.target import PROTOCOL_TABLES
from soak.config.target import PROTOCOLS
from soak.config.units import format_duration
from soak.config.validation import Loader, Section

DEFAULT_URL = "ws://127.0.0.1:8765/ws"


@dataclass(frozen=True)
class Starter:
    url: str = DEFAULT_URL
    protocol: str = "json"
    clients: int = 100
    ramp: float = 60.0  # seconds
    duration: float = 600.0  # the hold at full count, seconds
    heartbeat: float = 30.0  # seconds


def toml_value(value: Any) -> str:
    """A plain value (str, bool, int, float, tuple/list of them) as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _protocol_table(protocol: str) -> list[str]:
    # the table of this protocol (its name may differ: socket.io's is socketio)
    named = [(n, t) for n, t in PROTOCOL_TABLES.items() if t.protocol == protocol]
    if not named:
        return []
    name, table = named[0]
    defaults = table.parse(Section(Loader("soak init"), f"target.{name}", {}))
    assert dataclasses.is_dataclass(defaults)
    assert not isinstance(defaults, type)
    lines = [
        "",
        f"# the {protocol} dialect's own table, with its defaults",
        f"[target.{name}]",
    ]
    hints = typing.get_type_hints(type(defaults), include_extras=True)
    for f in dataclasses.fields(defaults):
        value = getattr(defaults, f.name)
        if value is None:  # no default value: left to the server or the URL
            lines.append(f"# {f.name} = ...")
            continue
        if DURATION in getattr(hints.get(f.name), "__metadata__", ()):
            lines.append(f"{f.name} = {_d(value)}")  # durations carry their unit
        else:
            lines.append(f"{f.name} = {toml_value(value)}")
    return lines


def _c(code: str, comment: str) -> str:
    """A line with its comment in the comment column."""
    return f"{code:<27} # {comment}"


def _d(seconds: float) -> str:
    return json.dumps(format_duration(seconds))


def render(s: Starter) -> str:
    """The starter profile's text."""
    timeout = min(10.0, s.heartbeat)
    label = "starter"
    lines = [
        f"# A starter profile: {s.clients:,} clients ramp up over {format_duration(s.ramp)},",
        f"# hold for {format_duration(s.duration)} with a heartbeat every "
        f"{format_duration(s.heartbeat)} ({s.protocol}).",
        "# See what it will do:  soak plan THIS_FILE",
        "# Run it:               soak run THIS_FILE",
        "# Every field: docs/profiles.md; the schema: docs/profile.schema.json.",
        "",
        "[run]",
        _c(f'label = "{label}"', "names the results directory"),
        _c('report_interval = "10s"', "a line of intervals.jsonl this often"),
        _c('# workers = "auto"', "client processes, when one cannot hold the peak"),
        "",
        "[target]",
        f"url = {toml_value(s.url)}",
        f"protocol = {toml_value(s.protocol)}" + "          # one of: " + ", ".join(PROTOCOLS),
        _c('# token_env = "SOAK_TOKEN"', "an environment variable holding the token"),
        '# connect_timeout = "10s"',
        *_protocol_table(s.protocol),
        "",
        "# what the server does about heartbeats, so its timeouts can be judged",
        "# (false or justified); fill in your server's settings",
        "# [target.server_heartbeat]",
        '# interval = "30s"',
        '# timeout = "120s"',
        "# max_missed = 3",
        "",
        "[clients]",
        "# max_connecting = 256      # handshakes in flight at once",
        "",
        "[[clients.stages]]",
        'kind = "ramp"',
        f"to = {s.clients}",
        f"duration = {_d(s.ramp)}",
        "",
        "[[clients.stages]]",
        'kind = "hold"',
        f"duration = {_d(s.duration)}",
        "",
        "# other stage kinds: spike (add), churn (rate), storm (drop, command, restart_url)",
        "",
        "[heartbeat]",
        f"interval = {_d(s.heartbeat)}",
        _c(f"timeout = {_d(timeout)}", "a pong later than this is missed"),
        _c("max_missed = 3", "missed in a row: the connection is a zombie"),
        _c('phase = "spread"', "spread, aligned, random or connect"),
        "",
        "[reconnect]",
        _c('# preset = "mqtt.js"', "an official client's policy; the fields below win"),
        'initial_delay = "1s"',
        "base = 2.0",
        'max_delay = "60s"',
        "max_attempts = 5",
        'jitter = "full"',
        "",
        _c("[thresholds]", "the run fails (exit code 1) when one does not hold"),
        'rtt_p99 = "250ms"',
        "false_timeouts = 0",
        'heartbeat_success = "99.9%"',
        "",
    ]
    return "\n".join(lines)
