"""``[clients]`` and its stages: the load shape as typed stages.

A stage is one of :class:`Ramp`, :class:`Hold`, :class:`Spike`,
:class:`Churn` and :class:`Storm` (the :data:`Stage` union); code that
treats kinds differently matches on the type. ``kind`` is each class's name
in a profile, and :func:`stage_record` the form run.json has always shown:
every stage with every stage field, the unused ones at their defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from soak.config.kinds import PERCENT, Duration, Toml, at_least, one_of

DROP_HOW = ("clean", "abrupt")
POSITIVE = Toml({"type": "number", "exclusiveMinimum": 0})
STAGES = Toml(required=True)  # [[clients.stages]]: at least one


@dataclass(frozen=True)
class Ramp:
    """Move linearly from the current count to ``to`` over the stage (a ramp
    of zero seconds is an instant jump)."""

    kind: ClassVar[str] = "ramp"
    duration: Duration  # zero: an instant jump
    to: Annotated[int, at_least(0)]


@dataclass(frozen=True)
class Hold:
    """Keep the current count."""

    kind: ClassVar[str] = "hold"
    duration: Duration


@dataclass(frozen=True)
class Spike:
    """``add`` extra clients for the stage, then back."""

    kind: ClassVar[str] = "spike"
    duration: Duration
    add: Annotated[int, at_least(1)]


@dataclass(frozen=True)
class Churn:
    """Keep the count, but close and reopen ``rate`` clients per second."""

    kind: ClassVar[str] = "churn"
    duration: Duration
    rate: Annotated[float, POSITIVE]


@dataclass(frozen=True)
class Storm:
    """At the stage's start, any combination of: drop a fraction of the
    connected clients, run a command, ask the gateway to restart. The count
    holds."""

    kind: ClassVar[str] = "storm"
    duration: Duration
    drop: Annotated[float, PERCENT] = 0.0  # the fraction of connected clients that drop at once
    how: Annotated[str, one_of(DROP_HOW)] = (
        "clean"  # clean: a close frame (1001); abrupt: a TCP reset, no frame
    )
    command: str | None = None  # run with /bin/sh -c; output goes into events.jsonl
    command_timeout: Duration = 30.0
    restart_url: str | None = None  # POSTed to, e.g. the reference gateway's admin endpoint


Stage = Ramp | Hold | Spike | Churn | Storm
STAGE_TYPES: tuple[type[Stage], ...] = (Ramp, Hold, Spike, Churn, Storm)
STAGE_KINDS = tuple(t.kind for t in STAGE_TYPES)

# run.json's stage record: every field of every kind, in this order
_RECORD: dict[str, Any] = {
    "kind": "",
    "duration": 0.0,
    "to": 0,
    "add": 0,
    "rate": 0.0,
    "drop": 0.0,
    "how": "clean",
    "command": None,
    "command_timeout": 30.0,
    "restart_url": None,
}


def stage_record(stage: Stage) -> dict[str, Any]:
    """The stage as run.json shows it: ``kind`` and every stage field (those
    of other kinds at their defaults), in one fixed order."""
    record = dict(_RECORD, kind=stage.kind)
    record.update(dataclasses.asdict(stage))
    return record


@dataclass(frozen=True)
class ClientsConfig:
    """[clients]: the load shape, as stages, and how fast clients connect."""

    stages: Annotated[tuple[Stage, ...], STAGES] = ()
    max_connecting: Annotated[int, at_least(1)] = 256
    client_id_prefix: str = "soak"
