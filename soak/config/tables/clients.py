"""The ``[clients]`` table and its ``[[clients.stages]]``: one parser per
stage kind (:data:`STAGE_PARSERS`), each returning its own stage type."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable
from urllib.parse import urlsplit

from soak.config.stages import (
    DROP_HOW,
    STAGE_KINDS,
    Churn,
    ClientsConfig,
    Hold,
    Ramp,
    Spike,
    Stage,
    Storm,
)
from soak.config.validation import Section


def parse_clients(s: Section) -> ClientsConfig:
    ld = s.loader
    d = ClientsConfig()
    raw_stages = s.require("stages", lambda w, v: v)
    if not isinstance(raw_stages, list) or not raw_stages:
        ld.fail(s.where("stages"), "expected a list of [[clients.stages]] tables", raw_stages)
    stages = tuple(
        parse_stage(Section(ld, f"clients.stages[{i}]", raw)) for i, raw in enumerate(raw_stages)
    )
    clients = ClientsConfig(
        stages=stages,
        max_connecting=s.get("max_connecting", ld.at_least(1), d.max_connecting),
        client_id_prefix=s.get("client_id_prefix", ld.string, d.client_id_prefix),
    )
    s.finish()
    return clients


def parse_stage(s: Section) -> Stage:
    """One stage: its ``kind`` says which parser reads the rest."""
    ld = s.loader
    kind = s.require("kind", ld.choice(STAGE_KINDS))
    # a ramp may take no time (an instant jump); every other stage must last
    duration = s.require("duration", ld.duration if kind == Ramp.kind else ld.positive_duration)
    stage = STAGE_PARSERS[kind](s, duration)
    s.finish()
    return stage


def _ramp(s: Section, duration: float) -> Ramp:
    return Ramp(duration, to=s.require("to", s.loader.integer))


def _hold(s: Section, duration: float) -> Hold:
    return Hold(duration)


def _spike(s: Section, duration: float) -> Spike:
    return Spike(duration, add=s.require("add", s.loader.at_least(1)))


def _churn(s: Section, duration: float) -> Churn:
    rate = s.require("rate", s.loader.number)
    if rate <= 0:
        s.loader.fail(s.where("rate"), "expected clients per second greater than zero", rate)
    return Churn(duration, rate=rate)


def _storm(s: Section, duration: float) -> Storm:
    ld = s.loader
    drop = s.get("drop", ld.percent, 0.0)
    command = s.get("command", ld.string, None)
    if command is not None:
        try:
            words = shlex.split(command)
        except ValueError as exc:
            ld.fail(s.where("command"), f"expected a shell command ({exc})", command)
        if not words:
            ld.fail(s.where("command"), "expected a shell command", command)
        # fail before the run, not at the storm: a typo must not cost a soak
        if "=" not in words[0] and shutil.which(words[0]) is None:
            ld.fail(s.where("command"), f"executable '{words[0]}' not found on PATH", command)
    restart_url = s.get("restart_url", ld.string, None)
    if restart_url is not None:
        parts = urlsplit(restart_url)
        if parts.scheme != "http" or not parts.hostname:
            ld.fail(s.where("restart_url"), "expected an http:// URL with a host", restart_url)
    if not drop and command is None and restart_url is None:
        ld.fail(
            s.where("kind"),
            'a storm stage needs at least one of drop (e.g. "50%"), command or restart_url',
            None,
            found=False,
        )
    return Storm(
        duration,
        drop=drop,
        how=s.get("how", ld.choice(DROP_HOW), "clean"),
        command=command,
        command_timeout=s.get("command_timeout", ld.positive_duration, 30.0),
        restart_url=restart_url,
    )


# a stage kind's parser: the stage's table (kind and duration already read)
# and its duration in, the stage out
STAGE_PARSERS: dict[str, Callable[[Section, float], Stage]] = {
    Ramp.kind: _ramp,
    Hold.kind: _hold,
    Spike.kind: _spike,
    Churn.kind: _churn,
    Storm.kind: _storm,
}
