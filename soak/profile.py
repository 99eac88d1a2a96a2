"""Compatibility facade: the profile schema now lives in :mod:`soak.config`
(see its docstring for the layout). Kept while imports move; new code
imports from ``soak.config.*`` directly."""

from soak.config.heartbeat import (
    JITTERS,
    PHASES,
    HeartbeatConfig,
    ReconnectConfig,
    ServerHeartbeat,
    StormConfig,
)
from soak.config.impairment import (
    BandwidthImpairment,
    DropHeartbeatImpairment,
    Impairment,
    LatencyImpairment,
    NatIdleImpairment,
    TimedImpairment,
    Window,
)
from soak.config.load import load_profile, parse_profile
from soak.config.openclaw import (
    OPENCLAW_MODES,
    OPENCLAW_PREAUTH_BUDGET,
    OPENCLAW_ROLES,
    OPENCLAW_SERVER_HEARTBEAT,
    OpenClawConfig,
)
from soak.config.overrides import override
from soak.config.profile import MAX_WORKERS, WORKERS_AUTO, Profile, RunConfig
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
from soak.config.tables.impairment import parse_scope, parse_scope_option
from soak.config.tables.thresholds import parse_threshold_option
from soak.config.target import (
    PROTOCOLS,
    Secret,
    StatsConfig,
    TargetConfig,
    openclaw_connecting,
)
from soak.config.thresholds import THRESHOLD_HELP, THRESHOLD_NAMES, Threshold, percentile_of
from soak.config.units import format_duration, parse_duration

__all__ = [
    "DROP_HOW",
    "JITTERS",
    "MAX_WORKERS",
    "OPENCLAW_MODES",
    "OPENCLAW_PREAUTH_BUDGET",
    "OPENCLAW_ROLES",
    "OPENCLAW_SERVER_HEARTBEAT",
    "PHASES",
    "PROTOCOLS",
    "STAGE_KINDS",
    "THRESHOLD_HELP",
    "THRESHOLD_NAMES",
    "WORKERS_AUTO",
    "BandwidthImpairment",
    "Churn",
    "ClientsConfig",
    "DropHeartbeatImpairment",
    "HeartbeatConfig",
    "Hold",
    "Impairment",
    "LatencyImpairment",
    "NatIdleImpairment",
    "OpenClawConfig",
    "Profile",
    "Ramp",
    "ReconnectConfig",
    "RunConfig",
    "Secret",
    "ServerHeartbeat",
    "Spike",
    "Stage",
    "StatsConfig",
    "Storm",
    "StormConfig",
    "TargetConfig",
    "Threshold",
    "TimedImpairment",
    "Window",
    "format_duration",
    "load_profile",
    "openclaw_connecting",
    "override",
    "parse_duration",
    "parse_profile",
    "parse_scope",
    "parse_scope_option",
    "parse_threshold_option",
    "percentile_of",
]
