"""The whole profile: ``[run]`` and the :class:`Profile` every table ends up
in, with the form run.json shows (:meth:`Profile.redacted`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any

from soak.config.heartbeat import HeartbeatConfig, ReconnectConfig, StormConfig
from soak.config.impairment import IMPAIRMENT, Impairment
from soak.config.kinds import NOT_IN_PROFILE, REQUIRED, Duration, Toml, at_least
from soak.config.stages import ClientsConfig, stage_record
from soak.config.target import TargetConfig
from soak.config.thresholds import THRESHOLDS, Threshold
from soak.schedule import Schedule
from soak.urls import without_userinfo

WORKERS_AUTO = 0  # RunConfig.workers: decided from the load (soak.run.split.auto_workers)
MAX_WORKERS = 64
LABEL = Toml({"type": "string", "pattern": "^[A-Za-z0-9._+-]{1,80}$"})
WORKERS = Toml(
    {
        "anyOf": [
            {"type": "integer", "minimum": 1, "maximum": MAX_WORKERS},
            {"const": "auto"},
            {"type": "string", "pattern": "^[0-9]+$"},
        ]
    }
)
SHARD = Toml(
    {
        "type": "string",
        "pattern": "^[0-9]+/[0-9]+$",
        "description": 'this machine\'s part of a run over several: "I/N", I from 0 to N-1',
    }
)
START_AT = Toml(
    {
        "type": "string",
        "description": "the run's start as a UTC instant, e.g. 2026-12-03T12:05:00Z "
        "(a TOML date-time or a string)",
    }
)
PORT = Toml({"type": "integer", "minimum": 0, "maximum": 65535})


@dataclass(frozen=True)
class RunConfig:
    """[run]: the run as a whole."""

    label: Annotated[str, LABEL] = "run"
    duration: Duration | None = None  # None: the sum of the stages
    report_interval: Duration = 10.0
    seed: Annotated[int, at_least(0)] = 1
    results_dir: str = "results"
    workers: Annotated[int, WORKERS] = (
        1  # client processes; WORKERS_AUTO: as many as the load needs
    )
    # a run over several machines (soak.run.shard): this one's index and the
    # count, written "I/N"; None: the whole run is here
    shard: Annotated[str | None, SHARD] = None
    # the run's start, epoch seconds (every shard's intervals line up); None: now
    start_at: Annotated[float | None, START_AT] = None
    # serve live Prometheus metrics on 127.0.0.1:PORT (0: any free port); None: off
    metrics_port: Annotated[int | None, PORT] = None
    # serve the live page (soak.dashboard) on 127.0.0.1:PORT (0: any free port); None: off
    dashboard_port: Annotated[int | None, PORT] = None
    # one task reads every plain-TCP client's socket (soak.client.batch,
    # Linux); false: each client's task reads its own, as before
    batch_receive: bool = True


@dataclass(frozen=True)
class Profile:
    """A soak profile: a TOML file of these tables."""

    path: Annotated[str, NOT_IN_PROFILE]
    run: RunConfig
    target: Annotated[TargetConfig, REQUIRED]
    clients: Annotated[ClientsConfig, REQUIRED]
    heartbeat: HeartbeatConfig
    reconnect: ReconnectConfig
    thresholds: Annotated[tuple[Threshold, ...], THRESHOLDS] = ()
    impairment: Annotated[Impairment | None, IMPAIRMENT] = None
    storms: StormConfig = field(default_factory=StormConfig)
    # [thresholds] strict (or soak run --strict): an error finding fails the run
    strict: Annotated[bool, NOT_IN_PROFILE] = False

    @property
    def duration(self) -> float:
        if self.run.duration is not None:
            return self.run.duration
        return sum(s.duration for s in self.clients.stages)

    @property
    def peak_clients(self) -> int:
        """The most clients that may exist at once, planned from the stages."""
        return Schedule(self.clients.stages).peak

    def redacted(self) -> dict[str, Any]:
        """A plain dict for run.json, with every secret removed."""
        d = dataclasses.asdict(self)
        # the stages and the impairment in the flat form run.json has always had
        d["clients"]["stages"] = [stage_record(s) for s in self.clients.stages]
        d["impairment"] = None if self.impairment is None else self.impairment.record()
        d["target"].pop("token", None)
        for table in (
            "openclaw",
            "dialect",
            "mqtt",
            "graphql_ws",
            "graphql_ws_legacy",
            "socketio",
            "sockjs",
            "actioncable",
            "phoenix",
            "signalr",
            "pusher",
            "centrifugo",
            "stomp",
            "nats",
        ):  # only the dialect's own profiles show it
            if d["target"].get(table) is None:
                d["target"].pop(table, None)
        if d["target"].get("mqtt") is not None:
            for derived in ("password", "heartbeat_interval"):  # not the profile's to say
                d["target"]["mqtt"].pop(derived, None)
        for table, secrets in (
            ("stomp", ("passcode", "outgoing")),
            ("nats", ("password", "token")),
        ):
            for secret in secrets if d["target"].get(table) is not None else ():
                d["target"][table].pop(secret, None)  # never in the results
        for spread in ("source_ips", "connect_to", "hops"):  # only shown when used
            if not d["target"].get(spread):
                d["target"].pop(spread, None)
        # credentials in URLs (ws://user:secret@host) never reach the results
        d["target"]["url"] = _hidden(self.target.url)
        if self.target.stats is not None:
            d["target"]["stats"]["url"] = _hidden(self.target.stats.url)
        for stage in d["clients"]["stages"]:
            if stage.get("restart_url"):
                stage["restart_url"] = _hidden(stage["restart_url"])
        d["target"]["headers"] = {
            k: ("<redacted>" if _is_sensitive(k) else v) for k, v in self.target.headers
        }
        return d


def _hidden(url: str) -> str:
    return without_userinfo(url, mask="<redacted>")


def _is_sensitive(header: str) -> bool:
    h = header.lower()
    return any(w in h for w in ("auth", "token", "cookie", "secret", "key"))
