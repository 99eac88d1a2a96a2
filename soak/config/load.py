"""Loading a profile: the TOML file, each table through its parser
(soak.config.tables), and the checks that span tables."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from soak.config.mqtt import resolve_mqtt
from soak.config.nats import resolve_nats
from soak.config.profile import Profile
from soak.config.stomp import resolve_stomp
from soak.config.tables.clients import parse_clients
from soak.config.tables.impairment import parse_impairment
from soak.config.tables.run import parse_heartbeat, parse_reconnect, parse_run, parse_storms
from soak.config.tables.target import parse_target
from soak.config.tables.thresholds import parse_strict, parse_thresholds
from soak.config.target import openclaw_connecting
from soak.config.validation import Loader, Section
from soak.errors import ProfileError


def load_profile(path: str | Path, environ: Mapping[str, str] | None = None) -> Profile:
    """Load and validate a profile. ``environ`` supplies the token variable
    (default: the process environment); it is read here and nowhere else."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{name}: profile not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{name}: cannot read profile: {exc}") from exc
    return parse_profile(text, name, os.environ if environ is None else environ)


def parse_profile(text: str, name: str, environ: Mapping[str, str]) -> Profile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{name}: invalid TOML: {exc}") from None
    ld = Loader(name)
    top = Section(ld, "", data)

    run = parse_run(top.table("run"))
    target = parse_target(top.require("target", ld.section), environ)
    clients = parse_clients(top.require("clients", ld.section))
    if target.protocol == "openclaw" and "max_connecting" not in (data.get("clients") or {}):
        # the gateway's pre-auth budget: beyond 32 handshakes in flight per
        # source address its upgrades get HTTP 503
        clients = dataclasses.replace(clients, max_connecting=openclaw_connecting(target))
    hb = parse_heartbeat(top.table("heartbeat"))
    if target.protocol == "mqtt":  # the keepalive against [heartbeat], the password
        mqtt, sh = resolve_mqtt(ld, target.mqtt, target.server_heartbeat, hb, environ)
        target = dataclasses.replace(target, mqtt=mqtt, server_heartbeat=sh)
    if target.protocol == "nats":  # the password or token
        target = resolve_nats(ld, target, environ)
    if target.protocol == "stomp":  # the heart-beat against [heartbeat], the passcode
        target = resolve_stomp(ld, target, hb, environ)
    rc = parse_reconnect(top.table("reconnect"))
    impairment = top.get("impairment", lambda w, v: parse_impairment(ld.section(w, v)), None)
    th_table = top.table("thresholds")
    th = parse_thresholds(th_table)
    storms = parse_storms(top.table("storms"))
    top.finish()
    profile = Profile(
        name, run, target, clients, hb, rc, th, impairment, storms, strict=parse_strict(th_table)
    )
    if run.duration is None and profile.duration <= 0:
        ld.fail("run.duration", "is required when the stages add up to no time", None, found=False)
    return profile
