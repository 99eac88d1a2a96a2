"""The profile's JSON Schema (soak.config.schema): generated from the
configuration types, shipped in the package and in docs/, accepting every
shipped and documented profile, rejecting what the loader rejects for the
common mistakes, and naming exactly the fields the loader reads."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from soak.cli import cli
from soak.config.kinds import DURATION_PATTERN, PERCENT_PATTERN, RATE_PATTERN
from soak.config.load import parse_profile
from soak.config.schema import profile_schema, schema_text
from soak.config.tables.target import PROTOCOL_TABLES
from soak.config.target import PROTOCOLS
from soak.config.units import parse_duration, parse_percent, parse_rate
from soak.errors import ProfileError
from soak.shipped import shipped
from soak.starter import Starter, render

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = profile_schema()
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)
ENV = {"OPENCLAW_GATEWAY_TOKEN": "t", "GW_TOKEN": "t"}


def _blocks(page: Path) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)


def documented() -> dict[str, str]:
    """The README's profile, and those of docs/profiles.md, as test_docs composes them."""
    (minimal,) = _blocks(ROOT / "README.md")
    full, impairment, openclaw, hops = _blocks(ROOT / "docs/profiles.md")
    return {
        "README minimal": minimal,
        "docs/profiles.md full": full,
        "docs/profiles.md impairment": minimal + impairment,
        "docs/profiles.md openclaw": minimal.replace('protocol = "json"', 'protocol = "openclaw"')
        + openclaw,
        "docs/profiles.md hops": minimal + hops,
    }


def every_profile() -> dict[str, str]:
    out = {f"shipped {p.name}": p.path.read_text(encoding="utf-8") for p in shipped()}
    out.update(documented())
    out.update({f"init {proto}": render(Starter(protocol=proto)) for proto in PROTOCOLS})
    return out


def test_the_shipped_copies_are_the_generated_schema() -> None:
    text = schema_text()
    assert (ROOT / "soak" / "profile.schema.json").read_text(encoding="utf-8") == text, (
        "regenerate: soak schema > soak/profile.schema.json && cp it to docs/"
    )
    assert (ROOT / "docs" / "profile.schema.json").read_text(encoding="utf-8") == text
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    assert result.output == text
    jsonschema.Draft7Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", sorted(every_profile()))
def test_every_shipped_and_documented_profile_validates(name: str) -> None:
    data = tomllib.loads(every_profile()[name])
    errors = [e.message for e in VALIDATOR.iter_errors(data)]
    assert not errors, f"{name}: {errors}"


BASE = """
[run]
label = "x"
[target]
url = "ws://127.0.0.1:8765/ws"
[clients]
[[clients.stages]]
kind = "ramp"
to = 10
duration = "10s"
[heartbeat]
interval = "10s"
"""


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    *tables, key = path.split(".")
    node: Any = out
    for t in tables:
        node = node[int(t)] if t.isdigit() else node.setdefault(t, {})
    node[key] = value
    return out


def _toml(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def _write(data: dict[str, Any]) -> str:
    """A small dict back as TOML (tables, arrays of tables, plain values)."""
    lines: list[str] = []

    def table(prefix: str, node: dict[str, Any], array: bool = False) -> None:
        plain = {
            k: v
            for k, v in node.items()
            if not isinstance(v, dict | list)
            or (isinstance(v, list) and not any(isinstance(x, dict) for x in v))
        }
        if prefix:
            lines.append(f"[[{prefix}]]" if array else f"[{prefix}]")
        for k, v in plain.items():
            lines.append(f"{k} = {_toml(v)}")
        for k, v in node.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                table(name, v)
            elif isinstance(v, list) and any(isinstance(x, dict) for x in v):
                for item in v:
                    table(name, item, array=True)

    table("", data)
    return "\n".join(lines) + "\n"


MISTAKES = [
    ("heartbeat.intervall", '"10s"'),  # unknown field
    ("run.colour", '"blue"'),
    ("zzz", "1"),
    ("target.server_heartbeat.timeuot", '"1s"'),
    ("clients.stages.0.too", "10"),
    ("heartbeat.interval", "30"),  # wrong type: a duration needs its unit
    ("heartbeat.max_missed", '"3"'),
    ("reconnect.enabled", '"yes"'),
    ("target.protocol", '"jsonn"'),
    ("target.url", '"http://x/"'),
    ("clients.stages.0.kind", '"rampp"'),
    ("clients.stages.0.to", '"10"'),
    ("run.workers", '"many"'),
    ("thresholds.rtt_p99", "250"),
    ("thresholds.rtt_p99x", '"250ms"'),
    ("impairment.latency", "100"),
    ("impairment.latencyy", '"100ms"'),
    ("impairment.bandwidth", '"fast"'),
    ("impairment.fraction", "2"),
    ("target.openclaw.mode", '"nope"'),
]


@pytest.mark.parametrize(("path", "raw"), MISTAKES)
def test_the_common_mistakes_are_rejected_by_both(path: str, raw: str) -> None:
    data = _set(tomllib.loads(BASE), path, json.loads(raw))
    if path.startswith("target.openclaw"):
        data["target"]["protocol"] = "openclaw"
    assert list(VALIDATOR.iter_errors(data)), f"the schema accepts {path} = {raw}"
    with pytest.raises(ProfileError):
        parse_profile(_write(data), "x.toml", ENV)
    # and the same profile without the mistake is fine for both
    base = tomllib.loads(BASE)
    assert not list(VALIDATOR.iter_errors(base))
    parse_profile(_write(base), "x.toml", ENV)


def test_a_protocol_table_needs_its_protocol() -> None:
    data = _set(tomllib.loads(BASE), "target.openclaw.mode", "backend")
    assert list(VALIDATOR.iter_errors(data))
    with pytest.raises(ProfileError, match='is only used with protocol = "openclaw"'):
        parse_profile(_write(data), "x.toml", ENV)
    data["target"]["protocol"] = "openclaw"
    assert not list(VALIDATOR.iter_errors(data))


def _loader_fields(data: dict[str, Any], path: str) -> list[str]:
    """The fields the loader reads at ``path``, from its own message for an
    unknown one ("...; valid fields: a, b, c")."""
    bad = _set(data, f"{path}.zz_not_a_field" if path else "zz_not_a_field", 1)
    with pytest.raises(ProfileError) as info:
        parse_profile(_write(bad), "x.toml", ENV)
    m = re.search(r"valid fields: (.*)$", str(info.value))
    assert m, str(info.value)
    return m.group(1).split(", ")


def _schema_at(path: str, data: dict[str, Any]) -> dict[str, Any]:
    node = SCHEMA
    for part in path.split(".") if path else []:
        if part.isdigit():
            kind = data["clients"]["stages"][int(part)]["kind"]
            node = next(
                rule["then"]
                for rule in node["items"]["allOf"]
                if rule["if"]["properties"]["kind"]["const"] == kind
            )
            continue
        node = node["properties"][part]
        if "anyOf" in node:
            node = next(s for s in node["anyOf"] if s.get("type") == "object")
    return node


TABLES: dict[str, dict[str, Any]] = {
    "": {},
    "run": {},
    "target": {},
    "target.server_heartbeat": {},
    "target.stats": {"target.stats.url": "http://127.0.0.1:8765/api/stats"},
    # every dialect's own table, with its protocol
    **{f"target.{name}": {"target.protocol": t.protocol} for name, t in PROTOCOL_TABLES.items()},
    "clients": {},
    "clients.stages.0": {},
    "heartbeat": {},
    "reconnect": {},
    "storms": {},
    "impairment": {"impairment.seed": 1},
    "impairment.latency": {"impairment.latency.delay": "10ms"},
    "impairment.bandwidth": {"impairment.bandwidth.rate": "1MB"},
    "impairment.nat_idle": {"impairment.nat_idle.timeout": "1m"},
    "impairment.black_hole": {"impairment.black_hole.at": "1m"},
    "impairment.reset": {"impairment.reset.at": "1m"},
    "impairment.drop_heartbeat": {"impairment.drop_heartbeat.nth": 3},
}
STAGES: dict[str, dict[str, Any]] = {
    "ramp": {"to": 5},
    "hold": {},
    "spike": {"add": 5},
    "churn": {"rate": 1},
    "storm": {"drop": "10%"},
}


@pytest.mark.parametrize("path", list(TABLES))
def test_each_table_has_exactly_the_fields_the_loader_reads(path: str) -> None:
    data = tomllib.loads(BASE)
    for key, value in TABLES[path].items():
        data = _set(data, key, value)
    schema = _schema_at(path, data)
    assert sorted(schema["properties"]) == sorted(_loader_fields(data, path))
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("kind", list(STAGES))
def test_each_stage_kind_has_exactly_the_fields_the_loader_reads(kind: str) -> None:
    stage = {"kind": kind, "duration": "10s", **STAGES[kind]}
    data = _set(tomllib.loads(BASE), "clients.stages", [stage])
    assert not list(VALIDATOR.iter_errors(data))
    schema = _schema_at("clients.stages.0", data)
    assert sorted(schema["properties"]) == sorted(_loader_fields(data, "clients.stages.0"))
    required = set(schema["required"])
    for key in set(stage) - {"kind", "duration"}:
        assert key in required or key in ("drop",)


@pytest.mark.parametrize(
    ("pattern", "parse", "samples"),
    [
        (
            DURATION_PATTERN,
            parse_duration,
            ["30s", "1h30m", "250ms", " 5m ", "1.5s", "30", "s", "-1s", "1x", ""],
        ),
        (PERCENT_PATTERN, parse_percent, ["99.9%", "0%", "100%", "99.9", "%", "-1%"]),
        (RATE_PATTERN, parse_rate, ["100kB", "8Mbit", "1MiB/s", "100", "kB", "1 GB"]),
    ],
)
def test_the_value_patterns_match_the_parsers(pattern: str, parse: Any, samples: list[str]) -> None:
    for text in samples:
        try:
            parse(text)
            parsed = True
        except ValueError:
            parsed = False
        assert bool(re.search(pattern, text)) == parsed, text


def test_a_stages_kind_picks_the_table_its_mistakes_are_reported_against() -> None:
    stage = {"kind": "ramp", "duration": "10s", "to": 5, "rate": 1}
    data = _set(tomllib.loads(BASE), "clients.stages", [stage])
    messages = [e.message for e in VALIDATOR.iter_errors(data)]
    assert messages == ["Additional properties are not allowed ('rate' was unexpected)"]
    data = _set(tomllib.loads(BASE), "clients.stages", [{"kind": "rampp", "duration": "1s"}])
    (error,) = VALIDATOR.iter_errors(data)
    assert "'rampp' is not one of ['ramp', 'hold', 'spike', 'churn', 'storm']" in error.message
