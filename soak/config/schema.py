"""The profile's JSON Schema, generated from the configuration types: every
table is a frozen dataclass (soak.config.profile.Profile and the types it
holds), every key one of its fields, and where the TOML form differs from the
Python type the field says so with ``Annotated`` (soak.config.kinds). No
second description is written by hand.

``soak schema`` prints it; the copies shipped in the package
(``soak/profile.schema.json``) and in ``docs/profile.schema.json`` are this
output, which a test checks.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Union, get_args, get_origin, get_type_hints

from soak.config.kinds import Toml
from soak.config.profile import Profile
from soak.config.tables.target import PROTOCOL_TABLES

# draft-07: what editors' TOML support (Taplo) reads; nothing newer is used
DIALECT = "http://json-schema.org/draft-07/schema#"


def _doc(cls: type) -> str | None:
    doc = cls.__doc__ or ""
    if doc.startswith(f"{cls.__name__}("):  # dataclasses' generated signature
        return None
    first = doc.strip().split("\n\n")[0]
    return " ".join(first.split()) or None


def _marker(meta: tuple[Any, ...]) -> Toml | None:
    for m in meta:
        if isinstance(m, Toml):
            return m
    return None


def type_schema(tp: Any) -> dict[str, Any]:
    """The schema of a value of type ``tp`` as a profile writes it."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        base, *meta = get_args(tp)
        marker = _marker(tuple(meta))
        if marker is not None and marker.schema:
            return dict(marker.schema)
        return type_schema(base)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if len(options) == 1:
            return type_schema(options[0])
        if all(isinstance(getattr(a, "kind", None), str) for a in options):
            return _by_kind(options)
        return {"anyOf": [type_schema(a) for a in options]}
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": type_schema(args[0])}
        raise TypeError(f"no profile form for {tp!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return table_schema(tp)
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if tp in simple:
        return {"type": simple[tp]}
    raise TypeError(f"no profile form for {tp!r}")


def _by_kind(options: list[Any]) -> dict[str, Any]:
    """A union of tables told apart by ``kind`` (the stages): ``kind`` picks
    the table, so a mistake is reported against the right one."""
    kinds = [a.kind for a in options]
    return {
        "type": "object",
        "properties": {"kind": {"enum": kinds}},
        "required": ["kind"],
        "allOf": [
            {
                "if": {"properties": {"kind": {"const": a.kind}}, "required": ["kind"]},
                "then": table_schema(a),
            }
            for a in options
        ],
    }


def _is_table(tp: Any) -> bool:
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        return all(_is_table(a) for a in get_args(tp) if a is not type(None))
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def table_schema(cls: type) -> dict[str, Any]:
    """One table: the dataclass's fields, nothing else. A field is required
    when the dataclass has no default for it (a nested table never is, as
    the loader supplies its defaults) or when it is marked so."""
    hints = get_type_hints(cls, include_extras=True)
    props: dict[str, Any] = {}
    required: list[str] = []
    kind = getattr(cls, "kind", None)
    if isinstance(kind, str):  # a stage: its ClassVar kind names it
        props["kind"] = {"const": kind}
        required.append("kind")
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        marker = _marker(get_args(tp)[1:]) if get_origin(tp) is typing.Annotated else None
        if marker is not None and marker.skip:
            continue
        props[f.name] = type_schema(tp)
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if (marker is not None and marker.required) or (no_default and not _is_table(tp)):
            required.append(f.name)
    schema: dict[str, Any] = {"type": "object"}
    doc = _doc(cls)
    if doc:
        schema["description"] = doc
    schema["properties"] = props
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def _stage_fields(schema: dict[str, Any]) -> None:
    # [[clients.stages]]: a non-empty list, each item one stage kind's table
    stages = schema["properties"]["clients"]["properties"]["stages"]
    stages["minItems"] = 1


def _protocol_tables(schema: dict[str, Any]) -> None:
    # a protocol's own table ([target.NAME]) only goes with that protocol
    target = schema["properties"]["target"]
    rules = []
    for name, table in PROTOCOL_TABLES.items():
        rules.append(
            {
                "if": {"required": [name]},
                "then": {
                    "required": ["protocol"],
                    "properties": {"protocol": {"const": table.protocol}},
                },
            }
        )
    if rules:
        target["allOf"] = rules


def profile_schema() -> dict[str, Any]:
    """The JSON Schema of a profile."""
    body = table_schema(Profile)
    _stage_fields(body)
    _protocol_tables(body)
    return {
        "$schema": DIALECT,
        "title": "soak profile",
        **body,
    }


def schema_text() -> str:
    """The schema as the shipped files hold it."""
    return json.dumps(profile_schema(), indent=2) + "\n"
