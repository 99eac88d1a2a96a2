"""Pure: how a configuration field is written in a profile, where its Python
type does not say it (a duration is a float of seconds in the dataclass and
a string like "30s" in TOML). A field says it with ``Annotated``:

    interval: Duration = 30.0
    phase: Annotated[str, one_of(PHASES)] = "spread"

soak.config.schema reads the dataclasses, these annotations included, into
the profile's JSON Schema; the type checker sees only ``float`` and ``str``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

# soak.config.units.parse_duration's grammar
DURATION_PATTERN = r"^\s*([0-9]+(\.[0-9]+)?(us|ms|s|m|h|d))+\s*$"
PERCENT_PATTERN = r"^[0-9]+(\.[0-9]+)?%$"
# soak.config.units.parse_rate's grammar
RATE_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*(B|kB|KB|MB|GB|KiB|MiB|GiB|bit|kbit|Mbit|Gbit)(/s)?\s*$"


@dataclass(frozen=True, eq=False)  # hashed by identity: Annotated[...] | None hashes it
class Toml:
    """A field's schema in a profile. ``skip``: the field is not written in
    a profile at all (it is derived, like the token from ``token_env``).
    ``required``: a table the profile must have."""

    schema: Mapping[str, Any] = field(default_factory=dict)
    skip: bool = False
    required: bool = False


DURATION = Toml(
    {
        "type": "string",
        "pattern": DURATION_PATTERN,
        "description": 'a duration with a unit: "250ms", "30s", "5m", "1h30m"',
    }
)
PERCENT = Toml({"type": "string", "pattern": PERCENT_PATTERN, "description": 'like "99.9%"'})
RATE = Toml(
    {"type": "string", "pattern": RATE_PATTERN, "description": 'a rate like "100kB" or "8Mbit"'}
)
FRACTION = Toml({"type": "number", "minimum": 0, "maximum": 1})
NOT_IN_PROFILE = Toml(skip=True)
REQUIRED = Toml(required=True)

Duration = Annotated[float, DURATION]


def one_of(options: Iterable[str]) -> Toml:
    return Toml({"enum": list(options)})


def at_least(minimum: int) -> Toml:
    return Toml({"type": "integer", "minimum": minimum})


def string_table() -> Toml:
    """A table of string values (HTTP headers)."""
    return Toml({"type": "object", "additionalProperties": {"type": "string"}})
