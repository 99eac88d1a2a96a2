"""The one schema: a TOML profile loaded into frozen dataclasses.

Everything a run does is described here and validated here, in one place.
Every error names the file, the field, what was expected and what was found:

    profiles/x.toml: heartbeat.interval: expected a duration like "30s", got -1

CLI options only override fields of an already valid profile (see
:func:`override`), and are validated by the same functions.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import shlex
import shutil
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from soak.errors import ProfileError

PROTOCOLS = ("json", "ws-ping", "openclaw")  # must match soak.protocols.PROTOCOLS
PHASES = ("spread", "aligned", "random", "connect")
JITTERS = ("none", "full", "equal", "decorrelated")
STAGE_KINDS = ("ramp", "hold", "spike", "churn", "storm")
DROP_HOW = ("clean", "abrupt")

T = TypeVar("T")


# -- durations -------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """``"30s"`` -> 30.0, ``"1h30m"`` -> 5400.0, ``"250ms"`` -> 0.25.

    Raises ValueError for anything else, including bare numbers: a unit is
    required because "30" could mean seconds or milliseconds.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty")
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            raise ValueError(text)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise ValueError(text)
    return total


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration` for display: 90.0 -> ``"1m30s"``."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    out = []
    rest = seconds
    for unit, size in (("h", 3600), ("m", 60)):
        if rest >= size:
            n = int(rest // size)
            out.append(f"{n}{unit}")
            rest -= n * size
    if rest or not out:
        out.append(f"{rest:g}s")
    return "".join(out)


# -- the schema --------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    label: str = "run"
    duration: float | None = None  # None: the sum of the stages
    report_interval: float = 10.0
    seed: int = 1
    results_dir: str = "results"
    workers: int = 1  # client processes; WORKERS_AUTO: as many as the load needs


@dataclass(frozen=True)
class Secret:
    """A token. Its repr never shows the value, so it cannot leak into logs."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret(<redacted>)"


@dataclass(frozen=True)
class ServerHeartbeat:
    """What the server does about heartbeats, as far as we know it. With it,
    a server close that matches the heartbeat-timeout signature is judged
    against the client's evidence: a false or a justified timeout."""

    interval: float = 30.0
    timeout: float = 120.0
    max_missed: int = 3
    # the signature of the server's heartbeat-timeout close; any match counts
    close_codes: tuple[int, ...] = (4000,)
    reason_pattern: str = "heartbeat"  # a regular expression, case-insensitive
    abrupt_after: float | None = None  # an abrupt close (1006) this long after the last pong
    abrupt_tolerance: float = 5.0
    # an abrupt close at 2, 3, ... times this after the connection was ready:
    # a server whose per-connection ping timer terminates the socket (OpenClaw)
    abrupt_period: float | None = None


# The OpenClaw Gateway's limit of unauthenticated sockets per source address:
# the default max_connecting for protocol = "openclaw".
OPENCLAW_PREAUTH_BUDGET = 32


def openclaw_connecting(target: TargetConfig) -> int:
    """The default handshake cap for OpenClaw: its pre-auth budget per
    source address, times the addresses the clients spread over."""
    return OPENCLAW_PREAUTH_BUDGET * max(1, len(target.source_ips))


# The OpenClaw Gateway's heartbeat, used for protocol = "openclaw" when the
# profile has no [target.server_heartbeat]: a ping every 25 s from
# authentication; a client whose pong has not come by the next tick is
# terminated with no close frame, so the end falls at 50, 75, ... s.
OPENCLAW_SERVER_HEARTBEAT = ServerHeartbeat(
    interval=25.0,
    timeout=50.0,
    max_missed=1,
    close_codes=(),
    reason_pattern="heartbeat",
    abrupt_tolerance=2.0,
    abrupt_period=25.0,
)


@dataclass(frozen=True)
class StatsConfig:
    """The server's own count of connections, polled every interval."""

    url: str
    field: str = "connections"  # a dotted path into the JSON document
    timeout: float = 2.0


# what an OpenClaw Gateway accepts in connect.params (see docs/openclaw.md)
OPENCLAW_MODES = ("webchat", "cli", "ui", "backend", "node", "worker", "probe", "test")
OPENCLAW_ROLES = ("operator", "node", "worker")


@dataclass(frozen=True)
class OpenClawConfig:
    """``[target.openclaw]``: who the client says it is in its ``connect``
    request. The token comes from ``target.token_env``."""

    client_id: str = "gateway-client"  # one of the gateway's fixed list
    mode: str = "backend"
    role: str = "operator"
    scopes: tuple[str, ...] = ("operator.read",)
    # the largest text frame accepted, in characters (the gateway's own
    # policy.maxPayload); a larger one is a protocol error on its connection
    max_frame: int = 26_214_400


@dataclass(frozen=True)
class TargetConfig:
    url: str = ""
    protocol: str = "json"
    headers: tuple[tuple[str, str], ...] = ()
    token_env: str | None = None
    token_header: str = "Authorization"
    token_prefix: str = "Bearer "
    connect_timeout: float = 10.0
    tls_verify: bool = True  # false: accept any certificate (self-signed test gateways)
    ca_file: str | None = None  # a PEM bundle to trust instead of the system's
    server_heartbeat: ServerHeartbeat | None = None
    stats: StatsConfig | None = None
    token: Secret | None = None  # resolved from token_env by load_profile
    openclaw: OpenClawConfig | None = None  # [target.openclaw]; defaults when None
    # source addresses, used round-robin (see soak.addresses); () lets the kernel pick
    source_ips: tuple[str, ...] = ()
    # TCP goes to these host:port pairs, round-robin, instead of the URL's
    connect_to: tuple[tuple[str, int], ...] = ()

    @property
    def secure(self) -> bool:
        return self.url.startswith("wss://")


@dataclass(frozen=True)
class Stage:
    kind: str
    duration: float
    to: int = 0  # ramp: target count at the end
    add: int = 0  # spike: clients added for the stage
    rate: float = 0.0  # churn: clients closed and reopened per second
    # storm: what happens at the stage's start (any combination); the count holds
    drop: float = 0.0  # the fraction of connected clients that drop at once
    how: str = "clean"  # clean: a close frame (1001); abrupt: a TCP reset, no frame
    command: str | None = None  # run with /bin/sh -c; output goes into events.jsonl
    command_timeout: float = 30.0
    restart_url: str | None = None  # POSTed to, e.g. the reference gateway's admin endpoint


@dataclass(frozen=True)
class ClientsConfig:
    stages: tuple[Stage, ...] = ()
    max_connecting: int = 256
    client_id_prefix: str = "soak"


@dataclass(frozen=True)
class HeartbeatConfig:
    interval: float = 30.0
    timeout: float = 10.0
    max_missed: int = 3
    phase: str = "spread"


@dataclass(frozen=True)
class ReconnectConfig:
    enabled: bool = True
    initial_delay: float = 1.0
    base: float = 2.0
    max_delay: float = 60.0
    max_attempts: int = 5  # 0 means no limit
    jitter: str = "full"


@dataclass(frozen=True)
class Threshold:
    name: str  # as written, e.g. "rtt_p99"
    limit: float  # seconds for latencies, a fraction for rates, a count otherwise
    text: str  # as written, e.g. "250ms", for messages
    # how the run's value must compare with the limit; in a profile it is
    # "<=" (">=" for heartbeat_success), on the command line it is written
    op: str = "<="

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.limit)


_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda v, lim: v < lim,
    "<=": lambda v, lim: v <= lim,
    "==": lambda v, lim: v == lim,
    ">=": lambda v, lim: v >= lim,
    ">": lambda v, lim: v > lim,
}


@dataclass(frozen=True)
class Impairment:
    """``[impairment]``: the network between the clients and the target,
    made worse by soak's in-process proxy (see soak.proxy). Seconds, bytes/s."""

    latency: float | None = None
    jitter: float | None = None
    jitter_dist: str = "uniform"
    direction: str = "both"
    fraction: float = 1.0
    bandwidth: float | None = None
    nat_idle: float | None = None
    black_hole_at: float | None = None
    reset_at: float | None = None
    drop_heartbeat: int | None = None
    drop_heartbeat_p: float = 0.0
    seed: int = 1
    # one impairment's own scope ([impairment.NAME] tables); None: the shared
    # fraction and direction, the whole run. from/until: seconds since the start
    latency_fraction: float | None = None
    latency_from: float | None = None
    latency_until: float | None = None
    latency_direction: str | None = None
    bandwidth_fraction: float | None = None
    bandwidth_from: float | None = None
    bandwidth_until: float | None = None
    bandwidth_direction: str | None = None
    nat_idle_fraction: float | None = None
    nat_idle_from: float | None = None
    nat_idle_until: float | None = None
    drop_heartbeat_fraction: float | None = None
    drop_heartbeat_from: float | None = None
    drop_heartbeat_until: float | None = None
    drop_heartbeat_direction: str | None = None
    black_hole_fraction: float | None = None
    reset_fraction: float | None = None


@dataclass(frozen=True)
class StormConfig:
    """[storms]: when lost connections make a reconnect storm (soak.storm)."""

    min_losses: int = 10  # at least this many losses ...
    window: float = 1.0  # ... within this many seconds start a storm
    quiet: float = 10.0  # a storm nothing happens in for this long is over


@dataclass(frozen=True)
class Profile:
    path: str
    run: RunConfig
    target: TargetConfig
    clients: ClientsConfig
    heartbeat: HeartbeatConfig
    reconnect: ReconnectConfig
    thresholds: tuple[Threshold, ...] = ()
    impairment: Impairment | None = None
    storms: StormConfig = StormConfig()

    @property
    def duration(self) -> float:
        if self.run.duration is not None:
            return self.run.duration
        return sum(s.duration for s in self.clients.stages)

    @property
    def peak_clients(self) -> int:
        """The most clients that may exist at once, planned from the stages."""
        from soak.schedule import Schedule

        return Schedule(self.clients.stages).peak

    def redacted(self) -> dict[str, Any]:
        """A plain dict for run.json, with every secret removed."""
        d = dataclasses.asdict(self)
        d["target"].pop("token", None)
        if d["target"].get("openclaw") is None:
            d["target"].pop("openclaw", None)  # only OpenClaw profiles show it
        for spread in ("source_ips", "connect_to"):  # only shown when used
            if not d["target"].get(spread):
                d["target"].pop(spread, None)
        # credentials in URLs (ws://user:secret@host) never reach the results
        d["target"]["url"] = _without_userinfo(self.target.url)
        if self.target.stats is not None:
            d["target"]["stats"]["url"] = _without_userinfo(self.target.stats.url)
        for stage in d["clients"]["stages"]:
            if stage.get("restart_url"):
                stage["restart_url"] = _without_userinfo(stage["restart_url"])
        d["target"]["headers"] = {
            k: ("<redacted>" if _is_sensitive(k) else v) for k, v in self.target.headers
        }
        return d


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="<redacted>@" + parts.netloc.rpartition("@")[2]).geturl()


def _is_sensitive(header: str) -> bool:
    h = header.lower()
    return any(w in h for w in ("auth", "token", "cookie", "secret", "key"))


# -- thresholds --------------------------------------------------------------

# latency thresholds: <histogram>_p<digits> or <histogram>_max, e.g. rtt_p99,
# rtt_p999 (99.9th), connect_p50, lag_max
_LATENCY = re.compile(r"^(rtt|rtt_service|connect|reconnect|lag)_(p\d+|max)$")
_COUNTS = (
    "false_timeouts",
    "missed",
    "zombies",
    "handshake_failures",
    "reconnect_failed",
    "dropped_samples",
)
THRESHOLD_HELP = (
    "valid thresholds: <histogram>_p<NN> (p99, p999 = 99.9th, ...) or <histogram>_max "
    "for rtt, rtt_service, connect, reconnect and lag; heartbeat_success (a percentage); "
    "counts: " + ", ".join(_COUNTS)
)
# common names, for "did you mean" suggestions
THRESHOLD_NAMES = (
    "rtt_p50",
    "rtt_p99",
    "rtt_p999",
    "rtt_max",
    "rtt_service_p99",
    "connect_p99",
    "lag_p99",
    "heartbeat_success",
    *_COUNTS,
)


def percentile_of(name: str) -> float | None:
    """``"p99"`` -> 99.0, ``"p999"`` -> 99.9, ``"p50"`` -> 50.0, ``"max"`` -> None."""
    if name == "max":
        return None
    digits = name[1:]
    if len(digits) <= 2 or digits == "100":  # "p100" is the 100th, not the 10.0th
        return float(digits)
    return float(digits[:2] + "." + digits[2:])


# -- loading -----------------------------------------------------------------


class _Section:
    """Reads one TOML table, remembers which keys were used, and complains
    about the rest with the nearest valid name."""

    def __init__(self, loader: _Loader, name: str, data: Any) -> None:
        self.loader = loader
        self.name = name
        if not isinstance(data, dict):
            loader.fail(name, "expected a table", data)
        self.data: dict[str, Any] = data
        self.allowed: list[str] = []

    def where(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def get(self, key: str, parse: Callable[[str, Any], T], default: T) -> T:
        self.allowed.append(key)
        if key not in self.data:
            return default
        return parse(self.where(key), self.data[key])

    def require(self, key: str, parse: Callable[[str, Any], T]) -> T:
        self.allowed.append(key)
        if key not in self.data:
            self.loader.fail(self.where(key), "is required", None, found=False)
        return parse(self.where(key), self.data[key])

    def finish(self) -> None:
        for key in self.data:
            if key not in self.allowed:
                self.loader.unknown(self.where(key), key, self.allowed)


class _Loader:
    def __init__(self, path: str) -> None:
        self.path = path

    def _prefix(self) -> str:
        # command-line overrides have no file to name: the option says it all
        return f"{self.path}: " if self.path else ""

    def fail(self, where: str, expected: str, got: Any, *, found: bool = True) -> NoReturn:
        got_text = f", got {_show(got)}" if found else ""
        raise ProfileError(f"{self._prefix()}{where}: {expected}{got_text}")

    def unknown(
        self, where: str, key: str, allowed: list[str], valid: str | None = None
    ) -> NoReturn:
        near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        valid = valid or "valid fields: " + ", ".join(allowed)
        raise ProfileError(f"{self._prefix()}{where}: unknown field{hint}; {valid}")

    # value parsers: (where, raw) -> value
    def duration(self, where: str, raw: Any) -> float:
        if isinstance(raw, str):
            try:
                value = parse_duration(raw)
            except ValueError:
                pass
            else:
                return value
            if raw.strip().startswith("-"):
                self.fail(where, "expected a duration of zero or more", raw)
        return self.fail(where, 'expected a duration like "30s", "5m" or "250ms"', raw)

    def positive_duration(self, where: str, raw: Any) -> float:
        value = self.duration(where, raw)
        if value <= 0:
            self.fail(where, "expected a duration greater than zero", raw)
        return value

    def string(self, where: str, raw: Any) -> str:
        if not isinstance(raw, str):
            self.fail(where, "expected a string", raw)
        return str(raw)

    def existing_file(self, where: str, raw: Any) -> str:
        text = self.string(where, raw)
        if not Path(text).is_file():
            self.fail(where, "expected the path of an existing file", raw)
        return text

    def boolean(self, where: str, raw: Any) -> bool:
        if not isinstance(raw, bool):
            self.fail(where, "expected true or false", raw)
        return bool(raw)

    def integer(self, where: str, raw: Any, minimum: int = 0) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
            self.fail(where, f"expected a whole number >= {minimum}", raw)
        return int(raw)

    def number(self, where: str, raw: Any, minimum: float = 0.0) -> float:
        ok = isinstance(raw, int | float) and not isinstance(raw, bool)
        if not ok or not math.isfinite(raw) or raw < minimum:
            self.fail(where, f"expected a number >= {minimum:g}", raw)
        return float(raw)

    def choice(self, options: tuple[str, ...]) -> Callable[[str, Any], str]:
        def parse(where: str, raw: Any) -> str:
            if raw not in options:
                near = difflib.get_close_matches(str(raw), options, n=1, cutoff=0.5)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                self.fail(where, f"expected one of {', '.join(options)}{hint}", raw)
            return str(raw)

        return parse

    def url(self, where: str, raw: Any) -> str:
        text = self.string(where, raw)
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:  # e.g. "Port out of range 0-65535"
            return self.fail(where, f"expected a ws:// or wss:// URL ({exc})", raw)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            self.fail(where, "expected a ws:// or wss:// URL with a host", raw)
        if port == 0:
            self.fail(where, "expected a port between 1 and 65535", raw)
        return text


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    return repr(value)


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
    ld = _Loader(name)
    top = _Section(ld, "", data)

    run = _parse_run(top.get("run", lambda w, v: _Section(ld, w, v), _Section(ld, "run", {})))
    target = _parse_target(top.require("target", lambda w, v: _Section(ld, w, v)), environ)
    clients = _parse_clients(top.require("clients", lambda w, v: _Section(ld, w, v)))
    if target.protocol == "openclaw" and "max_connecting" not in (data.get("clients") or {}):
        # the gateway's pre-auth budget: beyond 32 handshakes in flight per
        # source address its upgrades get HTTP 503
        clients = dataclasses.replace(clients, max_connecting=openclaw_connecting(target))
    hb = _parse_heartbeat(
        top.get("heartbeat", lambda w, v: _Section(ld, w, v), _Section(ld, "heartbeat", {}))
    )
    rc = _parse_reconnect(
        top.get("reconnect", lambda w, v: _Section(ld, w, v), _Section(ld, "reconnect", {}))
    )
    impairment = top.get("impairment", lambda w, v: _parse_impairment(_Section(ld, w, v)), None)
    th = _parse_thresholds(
        top.get("thresholds", lambda w, v: _Section(ld, w, v), _Section(ld, "thresholds", {}))
    )
    storms = _parse_storms(
        top.get("storms", lambda w, v: _Section(ld, w, v), _Section(ld, "storms", {}))
    )
    top.finish()
    profile = Profile(name, run, target, clients, hb, rc, th, impairment, storms)
    if run.duration is None and profile.duration <= 0:
        ld.fail("run.duration", "is required when the stages add up to no time", None, found=False)
    return profile


def _parse_run(s: _Section) -> RunConfig:
    ld = s.loader
    d = RunConfig()
    label = s.get("label", ld.string, d.label)
    if not re.fullmatch(r"[A-Za-z0-9._+-]{1,80}", label):
        ld.fail(s.where("label"), "expected 1-80 letters, digits or . _ + -", label)
    run = RunConfig(
        label=label,
        duration=s.get("duration", ld.positive_duration, None),
        report_interval=s.get("report_interval", ld.positive_duration, d.report_interval),
        seed=s.get("seed", ld.integer, d.seed),
        results_dir=s.get("results_dir", ld.string, d.results_dir),
        workers=s.get("workers", lambda w, v: _workers(ld, w, v), d.workers),
    )
    s.finish()
    return run


WORKERS_AUTO = 0  # RunConfig.workers: decided from the load (soak.workers.auto_workers)


def _workers(ld: _Loader, where: str, raw: Any) -> int:
    """A worker count: a positive whole number or "auto"."""
    if raw == "auto":
        return WORKERS_AUTO
    value = int(raw) if isinstance(raw, str) and raw.strip().isdigit() else raw
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WORKERS:
        return value
    ld.fail(where, f'expected a number of worker processes from 1 to {MAX_WORKERS}, or "auto"', raw)


MAX_WORKERS = 64


def _parse_target(s: _Section, environ: Mapping[str, str]) -> TargetConfig:
    ld = s.loader
    d = TargetConfig()
    url = s.require("url", ld.url)
    protocol = s.get("protocol", ld.choice(PROTOCOLS), d.protocol)
    headers_raw = s.get("headers", lambda w, v: _Section(ld, w, v), None)
    headers: list[tuple[str, str]] = []
    if headers_raw is not None:
        for k, v in headers_raw.data.items():
            headers.append((k, ld.string(headers_raw.where(k), v)))
    token_env = s.get("token_env", ld.string, None)
    token = None
    if token_env is not None:
        value = environ.get(token_env)
        if not value:
            ld.fail(
                s.where("token_env"),
                f"environment variable {token_env} is not set (it should hold the token)",
                None,
                found=False,
            )
        token = Secret(str(value))
    target = TargetConfig(
        url=url,
        protocol=protocol,
        headers=tuple(headers),
        token_env=token_env,
        token_header=s.get("token_header", ld.string, d.token_header),
        token_prefix=s.get("token_prefix", ld.string, d.token_prefix),
        connect_timeout=s.get("connect_timeout", ld.positive_duration, d.connect_timeout),
        tls_verify=s.get("tls_verify", ld.boolean, d.tls_verify),
        ca_file=s.get("ca_file", ld.existing_file, d.ca_file),
        server_heartbeat=s.get(
            "server_heartbeat", lambda w, v: _parse_server_heartbeat(_Section(ld, w, v)), None
        ),
        stats=s.get("stats", lambda w, v: _parse_stats(_Section(ld, w, v)), None),
        token=token,
        openclaw=s.get("openclaw", lambda w, v: _parse_openclaw(_Section(ld, w, v)), None),
        source_ips=s.get("source_ips", _source_ips(ld), ()),
        connect_to=s.get("connect_to", _connect_to(ld), ()),
    )
    s.finish()
    if target.openclaw is not None and protocol != "openclaw":
        ld.fail(s.where("openclaw"), 'is only used with protocol = "openclaw"', protocol)
    if protocol == "openclaw" and target.server_heartbeat is None:
        target = dataclasses.replace(target, server_heartbeat=OPENCLAW_SERVER_HEARTBEAT)
    _check_families(ld, s.where("source_ips"), target)
    return target


def _source_ips(ld: _Loader) -> Callable[[str, Any], tuple[str, ...]]:
    def parse(where: str, raw: Any) -> tuple[str, ...]:
        from soak.addresses import parse_source_ips

        try:
            return parse_source_ips(raw)
        except ValueError as exc:
            return ld.fail(where, str(exc), raw)

    return parse


def _connect_to(ld: _Loader) -> Callable[[str, Any], tuple[tuple[str, int], ...]]:
    def parse(where: str, raw: Any) -> tuple[tuple[str, int], ...]:
        from soak.addresses import parse_host_port

        if not isinstance(raw, list) or not raw:
            ld.fail(where, 'expected a list like ["127.0.0.1:8765", "127.0.0.2:8765"]', raw)
        try:
            return tuple(parse_host_port(item) for item in raw)
        except ValueError as exc:
            return ld.fail(where, str(exc), raw)

    return parse


def _check_families(ld: _Loader, where: str, target: TargetConfig) -> None:
    """Source addresses must be of the family of the address dialled (when
    that is an IP literal; a name is resolved to the family at connect time)."""
    from soak.addresses import family_of

    if not target.source_ips:
        return
    sources = {family_of(a) for a in target.source_ips}
    if len(sources) > 1:
        ld.fail(where, "expected addresses of one family (all IPv4 or all IPv6)", None, found=False)
    dials = [h for h, _p in target.connect_to] or [urlsplit(target.url).hostname or ""]
    for host in dials:
        family = family_of(host)
        if family is not None and family not in sources:
            ld.fail(
                where,
                f"expected addresses of the same family as the target {host} "
                f"(IPv{4 if family == socket.AF_INET else 6})",
                target.source_ips[0],
            )


def _parse_openclaw(s: _Section) -> OpenClawConfig:
    ld = s.loader
    d = OpenClawConfig()
    client_id = s.get("client_id", ld.string, d.client_id)
    if not client_id:
        ld.fail(s.where("client_id"), 'expected a client id like "gateway-client"', client_id)
    scopes = s.get("scopes", lambda w, v: v, list(d.scopes))
    if not isinstance(scopes, list) or not all(isinstance(x, str) and x for x in scopes):
        ld.fail(s.where("scopes"), 'expected a list of scopes like ["operator.read"]', scopes)
    cfg = OpenClawConfig(
        client_id=client_id,
        mode=s.get("mode", ld.choice(OPENCLAW_MODES), d.mode),
        role=s.get("role", ld.choice(OPENCLAW_ROLES), d.role),
        scopes=tuple(scopes),
        max_frame=s.get("max_frame", lambda w, v: ld.integer(w, v, 1024), d.max_frame),
    )
    s.finish()
    return cfg


def _parse_server_heartbeat(s: _Section) -> ServerHeartbeat:
    ld = s.loader
    d = ServerHeartbeat()
    codes = s.get("close_codes", lambda w, v: v, list(d.close_codes))
    if not isinstance(codes, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) and 1000 <= c <= 4999 for c in codes
    ):
        ld.fail(s.where("close_codes"), "expected a list of close codes 1000-4999", codes)
    pattern = s.get("reason_pattern", ld.string, d.reason_pattern)
    try:
        re.compile(pattern)
    except re.error as exc:
        ld.fail(s.where("reason_pattern"), f"expected a regular expression ({exc})", pattern)
    sh = ServerHeartbeat(
        interval=s.get("interval", ld.positive_duration, d.interval),
        timeout=s.get("timeout", ld.positive_duration, d.timeout),
        max_missed=s.get("max_missed", lambda w, v: ld.integer(w, v, 1), d.max_missed),
        close_codes=tuple(codes),
        reason_pattern=pattern,
        abrupt_after=s.get("abrupt_after", ld.positive_duration, d.abrupt_after),
        abrupt_tolerance=s.get("abrupt_tolerance", ld.duration, d.abrupt_tolerance),
        abrupt_period=s.get("abrupt_period", ld.positive_duration, d.abrupt_period),
    )
    s.finish()
    return sh


def _parse_stats(s: _Section) -> StatsConfig:
    ld = s.loader
    url = s.require("url", ld.string)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "http" or not parts.hostname or port == -1 or port == 0:
        ld.fail(s.where("url"), "expected an http:// URL with a host and a valid port", url)
    field_path = s.get("field", ld.string, "connections")
    if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", field_path):
        ld.fail(s.where("field"), 'expected a dotted path like "stats.connections"', field_path)
    stats = StatsConfig(
        url=url, field=field_path, timeout=s.get("timeout", ld.positive_duration, 2.0)
    )
    s.finish()
    return stats


def _parse_clients(s: _Section) -> ClientsConfig:
    ld = s.loader
    d = ClientsConfig()
    raw_stages = s.require("stages", lambda w, v: v)
    if not isinstance(raw_stages, list) or not raw_stages:
        ld.fail(s.where("stages"), "expected a list of [[clients.stages]] tables", raw_stages)
    stages = tuple(
        _parse_stage(_Section(ld, f"clients.stages[{i}]", raw)) for i, raw in enumerate(raw_stages)
    )
    clients = ClientsConfig(
        stages=stages,
        max_connecting=s.get("max_connecting", lambda w, v: ld.integer(w, v, 1), d.max_connecting),
        client_id_prefix=s.get("client_id_prefix", ld.string, d.client_id_prefix),
    )
    s.finish()
    return clients


def _parse_stage(s: _Section) -> Stage:
    ld = s.loader
    kind = s.require("kind", ld.choice(STAGE_KINDS))
    # a ramp may take no time (an instant jump); every other stage must last
    duration = s.require("duration", ld.duration if kind == "ramp" else ld.positive_duration)
    stage = Stage(kind=kind, duration=duration)
    if kind == "ramp":
        stage = Stage(kind, duration, to=s.require("to", ld.integer))
    elif kind == "spike":
        stage = Stage(kind, duration, add=s.require("add", lambda w, v: ld.integer(w, v, 1)))
    elif kind == "churn":
        rate = s.require("rate", ld.number)
        if rate <= 0:
            ld.fail(s.where("rate"), "expected clients per second greater than zero", rate)
        stage = Stage(kind, duration, rate=rate)
    elif kind == "storm":
        stage = _parse_storm(s, duration)
    s.finish()
    return stage


def _parse_storm(s: _Section, duration: float) -> Stage:
    ld = s.loader
    drop = s.get("drop", lambda w, v: _parse_percent(ld, w, v), 0.0)
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
    return Stage(
        "storm",
        duration,
        drop=drop,
        how=s.get("how", ld.choice(DROP_HOW), "clean"),
        command=command,
        command_timeout=s.get("command_timeout", ld.positive_duration, 30.0),
        restart_url=restart_url,
    )


def _parse_heartbeat(s: _Section) -> HeartbeatConfig:
    ld = s.loader
    d = HeartbeatConfig()
    hb = HeartbeatConfig(
        interval=s.get("interval", ld.positive_duration, d.interval),
        timeout=s.get("timeout", ld.positive_duration, d.timeout),
        max_missed=s.get("max_missed", lambda w, v: ld.integer(w, v, 1), d.max_missed),
        phase=s.get("phase", ld.choice(PHASES), d.phase),
    )
    s.finish()
    return hb


def _parse_storms(s: _Section) -> StormConfig:
    ld = s.loader
    d = StormConfig()
    cfg = StormConfig(
        min_losses=s.get("min_losses", lambda w, v: ld.integer(w, v, 2), d.min_losses),
        window=s.get("window", ld.positive_duration, d.window),
        quiet=s.get("quiet", ld.positive_duration, d.quiet),
    )
    s.finish()
    return cfg


def _parse_reconnect(s: _Section) -> ReconnectConfig:
    ld = s.loader
    d = ReconnectConfig()
    rc = ReconnectConfig(
        enabled=s.get("enabled", ld.boolean, d.enabled),
        initial_delay=s.get("initial_delay", ld.duration, d.initial_delay),
        base=s.get("base", lambda w, v: ld.number(w, v, 1.0), d.base),
        max_delay=s.get("max_delay", ld.duration, d.max_delay),
        max_attempts=s.get("max_attempts", ld.integer, d.max_attempts),
        jitter=s.get("jitter", ld.choice(JITTERS), d.jitter),
    )
    if rc.max_delay < rc.initial_delay:
        ld.fail(
            s.where("max_delay"),
            f"expected a duration >= initial_delay ({format_duration(rc.initial_delay)})",
            format_duration(rc.max_delay),
        )
    s.finish()
    return rc


# [impairment.NAME]: the table's keys for the impairment itself, each with
# the flat [impairment] field it fills (the scope's keys are in SCOPED)
_IMPAIRMENT_TABLES: dict[str, dict[str, str]] = {
    "latency": {"delay": "latency", "jitter": "jitter", "dist": "jitter_dist"},
    "bandwidth": {"rate": "bandwidth"},
    "nat_idle": {"timeout": "nat_idle"},
    "black_hole": {"at": "black_hole_at"},
    "reset": {"at": "reset_at"},
    "drop_heartbeat": {"nth": "drop_heartbeat", "p": "drop_heartbeat_p"},
}
# flat keys that belong to an impairment given as a table
_FLAT_PARTS = {"jitter": "latency", "jitter_dist": "latency", "drop_heartbeat_p": "drop_heartbeat"}
_FLAT_NAMES = {"black_hole": "black_hole_at", "reset": "reset_at"}


def _impairment_value(ld: _Loader, field_name: str) -> Callable[[str, Any], Any]:
    """The parser of one flat [impairment] field (also used for the same
    setting inside an [impairment.NAME] table)."""
    from soak.proxy.config import parse_rate

    def rate(where: str, raw: Any) -> float:
        try:
            return parse_rate(ld.string(where, raw))
        except ValueError:
            ld.fail(where, 'expected a rate like "100kB", "1MiB" or "8Mbit"', raw)

    def fraction(where: str, raw: Any) -> float:
        value = ld.number(where, raw)
        if value > 1:
            ld.fail(where, "expected a fraction between 0 and 1", raw)
        return value

    parsers: dict[str, Callable[[str, Any], Any]] = {
        "latency": ld.duration,
        "jitter": ld.duration,
        "jitter_dist": ld.choice(("uniform", "normal", "pareto")),
        "direction": ld.choice(("up", "down", "both")),
        "fraction": fraction,
        "bandwidth": rate,
        "nat_idle": ld.positive_duration,
        "black_hole_at": ld.duration,
        "reset_at": ld.duration,
        "drop_heartbeat": lambda w, v: ld.integer(w, v, 1),
        "drop_heartbeat_p": fraction,
        "seed": ld.integer,
        "from": ld.duration,
        "until": ld.positive_duration,
    }
    return parsers[field_name]


def scope_fields(ld: _Loader, name: str, s: _Section, *, own: bool = True) -> dict[str, Any]:
    """One [impairment.NAME] table (or, without its ``own`` settings, one
    ``--scope NAME:...`` option) as flat Impairment fields, validated: names
    the field of any bad value."""
    from soak.proxy.config import SCOPED

    out: dict[str, Any] = {}
    for key, flat in _IMPAIRMENT_TABLES[name].items() if own else ():
        if key in s.data:
            out[flat] = s.get(key, _impairment_value(ld, flat), None)
        else:
            s.allowed.append(key)
    for key in SCOPED[name]:
        if key in s.data:
            out[f"{name}_{key}"] = s.get(key, _impairment_value(ld, key), None)
        else:
            s.allowed.append(key)
    s.finish()
    start, end = out.get(f"{name}_from"), out.get(f"{name}_until")
    if start is not None and end is not None and end <= start:
        ld.fail(
            s.where("until"),
            f"expected a time after from ({format_duration(start)})",
            format_duration(end),
        )
    if not own:
        return out
    if name == "drop_heartbeat" and "drop_heartbeat" not in out and "drop_heartbeat_p" not in out:
        ld.fail(s.where("nth"), "is required (or p): which heartbeat to drop", None, found=False)
    main = _IMPAIRMENT_TABLES[name]
    first = next(iter(main))
    if name != "drop_heartbeat" and main[first] not in out:
        ld.fail(s.where(first), "is required", None, found=False)
    return out


def _parse_impairment(s: _Section) -> Impairment:
    from soak.proxy.config import build_config

    ld = s.loader
    fields: dict[str, Any] = {}
    tables = [name for name in _IMPAIRMENT_TABLES if isinstance(s.data.get(name), dict)]
    for name in tables:
        fields.update(scope_fields(ld, name, _Section(ld, s.where(name), s.data[name])))
    for name, flat in _FLAT_NAMES.items():
        s.allowed.append(name)
        if name in s.data and name not in tables:
            ld.fail(
                s.where(name),
                f"expected a table like [impairment.{name}] (or {flat})",
                s.data[name],
            )
        if name in tables and flat in s.data:
            ld.fail(s.where(flat), f"is given twice: here and in [impairment.{name}]", s.data[flat])
    for flat, owner in _FLAT_PARTS.items():
        if owner in tables and flat in s.data:
            ld.fail(
                s.where(flat),
                f"goes in the [impairment.{owner}] table when {owner} is one",
                s.data[flat],
            )
    for flat in (
        "latency",
        "jitter",
        "jitter_dist",
        "direction",
        "fraction",
        "bandwidth",
        "nat_idle",
        "black_hole_at",
        "reset_at",
        "drop_heartbeat",
        "drop_heartbeat_p",
        "seed",
    ):
        if flat in tables:
            s.allowed.append(flat)
            continue
        value = s.get(flat, _impairment_value(ld, flat), None)
        if value is not None:
            fields[flat] = value
    for key, raw in s.data.items():
        if key not in s.allowed and isinstance(raw, dict):
            near = difflib.get_close_matches(key, list(_IMPAIRMENT_TABLES), n=1, cutoff=0.5)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            ld.fail(
                s.where(key),
                f"unknown impairment{hint}; impairments: {', '.join(_IMPAIRMENT_TABLES)}",
                None,
                found=False,
            )
    s.finish()
    imp = Impairment(**fields)
    try:
        build_config(**dataclasses.asdict(imp))
    except ValueError as exc:
        ld.fail("impairment", f"expected a consistent impairment ({exc})", None, found=False)
    return imp


def parse_scope_option(text: str) -> dict[str, Any]:
    """``--scope latency:fraction=0.5,from=10s,until=1m,direction=down``: the
    same keys and values as an [impairment.NAME] table, as flat fields."""
    from soak.proxy.config import SCOPED

    ld = _Loader("")
    name, sep, rest = text.partition(":")
    name = name.strip()
    if name not in SCOPED:
        near = difflib.get_close_matches(name, list(SCOPED), n=1, cutoff=0.5)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        ld.fail(
            "--scope",
            f"expected NAME:KEY=VALUE,... with NAME one of {', '.join(SCOPED)}{hint}",
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
    return scope_fields(ld, name, _Section(ld, f"--scope {name}", data), own=False)


def _parse_thresholds(s: _Section) -> tuple[Threshold, ...]:
    ld = s.loader
    out: list[Threshold] = []
    for key, raw in s.data.items():
        op = ">=" if key == "heartbeat_success" else "<="
        out.append(_threshold(ld, s.where(key), key, op, raw))
    return tuple(out)


def _threshold(ld: _Loader, where: str, key: str, op: str, raw: Any) -> Threshold:
    m = _LATENCY.match(key)
    if m:
        q = percentile_of(m.group(2))
        if q is not None and not 0 < q <= 100:
            ld.fail(where, "expected a percentile between p1 and p100", key)
        return Threshold(key, ld.duration(where, raw), str(raw), op)
    if key == "heartbeat_success":
        return Threshold(key, _parse_percent(ld, where, raw), str(raw), op)
    if key in _COUNTS:
        return Threshold(key, float(ld.integer(where, raw)), str(raw), op)
    ld.unknown(where, key, list(THRESHOLD_NAMES), THRESHOLD_HELP)


_THRESHOLD_OPTION = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=|==|<|>)\s*(\S+)\s*$")


def parse_threshold_option(text: str) -> Threshold:
    """``--threshold rtt_p99<250ms``, ``false_timeouts==0``,
    ``heartbeat_success>=99.9%``: the same names and values as [thresholds]."""
    ld = _Loader("")
    m = _THRESHOLD_OPTION.match(text)
    if m is None:
        ld.fail(
            "--threshold",
            'expected NAME OP VALUE like "rtt_p99<250ms" or "false_timeouts==0" (OP: < <= == >= >)',
            text,
        )
    key, op, value = m.groups()
    raw: Any = value
    if key in _COUNTS:
        try:
            raw = int(value)
        except ValueError:
            raw = value
    return _threshold(ld, f"--threshold {key}", key, op, raw)


def _parse_percent(ld: _Loader, where: str, raw: Any) -> float:
    if isinstance(raw, str) and raw.endswith("%"):
        try:
            # in decimal: float("99.9") / 100 is 0.9990000000000001, and a run
            # with exactly 999 of 1000 pongs would fail "99.9%"
            value = float(Decimal(raw[:-1]) / 100)
        except (ValueError, ArithmeticError):
            pass
        else:
            if 0.0 <= value <= 1.0:
                return value
    return float(ld.fail(where, 'expected a percentage like "99.9%"', raw))


# -- overrides from the command line -------------------------------------------


def override(
    profile: Profile,
    *,
    url: str | None = None,
    label: str | None = None,
    duration: str | None = None,
    results_dir: str | None = None,
    thresholds: tuple[str, ...] = (),
    workers: str | None = None,
    source_ip: str | None = None,
) -> Profile:
    """Apply CLI overrides, validated with the same parsers as the file. A
    ``--threshold`` replaces the profile's threshold of the same name."""
    ld = _Loader("")
    run = profile.run
    target = profile.target
    if url is not None:
        target = dataclasses.replace(target, url=ld.url("--url", url))
    clients = profile.clients
    if source_ip is not None:
        before = target
        target = dataclasses.replace(target, source_ips=_source_ips(ld)("--source-ip", source_ip))
        if target.protocol == "openclaw" and clients.max_connecting == openclaw_connecting(before):
            # the default cap follows the addresses (a cap the profile set stays)
            clients = dataclasses.replace(clients, max_connecting=openclaw_connecting(target))
    if source_ip is not None or url is not None:
        _check_families(ld, "--source-ip" if source_ip else "target.source_ips", target)
    if label is not None:
        if not re.fullmatch(r"[A-Za-z0-9._+-]{1,80}", label):
            ld.fail("--label", "expected 1-80 letters, digits or . _ + -", label)
        run = dataclasses.replace(run, label=label)
    if duration is not None:
        run = dataclasses.replace(run, duration=ld.positive_duration("--duration", duration))
    if results_dir is not None:
        run = dataclasses.replace(run, results_dir=results_dir)
    if workers is not None:
        run = dataclasses.replace(run, workers=_workers(ld, "--workers", workers))
    checks = list(profile.thresholds)
    for text in thresholds:
        th = parse_threshold_option(text)
        checks = [c for c in checks if c.name != th.name] + [th]
    return dataclasses.replace(
        profile, run=run, target=target, clients=clients, thresholds=tuple(checks)
    )
