"""``[target]``: where the clients connect and what they know about the
server. Plain frozen dataclasses; parsed in soak.config.tables.target."""

from __future__ import annotations

from dataclasses import dataclass, field

from soak.config.heartbeat import ServerHeartbeat
from soak.config.openclaw import OPENCLAW_PREAUTH_BUDGET, OpenClawConfig

PROTOCOLS = ("json", "ws-ping", "openclaw")  # must match soak.protocols.PROTOCOLS


@dataclass(frozen=True)
class Secret:
    """A token. Its repr never shows the value, so it cannot leak into logs."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret(<redacted>)"


@dataclass(frozen=True)
class StatsConfig:
    """The server's own count of connections, polled every interval."""

    url: str
    field: str = "connections"  # a dotted path into the JSON document
    timeout: float = 2.0


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


def openclaw_connecting(target: TargetConfig) -> int:
    """The default handshake cap for OpenClaw: its pre-auth budget per
    source address, times the addresses the clients spread over."""
    return OPENCLAW_PREAUTH_BUDGET * max(1, len(target.source_ips))
