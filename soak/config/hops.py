"""``[[target.hops]]``: what stands between the clients and the gateway
(nginx, HAProxy, NAT, a load balancer, a CDN), one entry per hop in the
order a connection crosses them. Plain frozen dataclasses; parsed in
soak.config.tables.hops.

Each hop has an idle timeout (the longest silence it lets a connection
keep) and says which direction's traffic resets it. A kind supplies the
documented default where there is one; a kind without one needs
``idle_timeout`` (or, for nginx and HAProxy, ``config``: the file the
timeout is read from). soak judges each close no close frame explains
against every hop (soak.chain), and ``soak doctor --profile`` checks the
hops against the heartbeat intervals before a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from soak.config.kinds import NOT_IN_PROFILE, REQUIRED, Duration, one_of

# which direction's traffic resets a hop's idle timer
SERVER = "server"  # only frames from the gateway (towards the clients)
CLIENT = "client"  # only frames from the clients
EITHER = "either"  # a frame in either direction
RESETS = (EITHER, SERVER, CLIENT)


@dataclass(frozen=True)
class HopKind:
    """What soak knows about a kind of hop: its default idle timeout (None:
    it has none that can be assumed) and which traffic resets it."""

    name: str
    idle_timeout: float | None
    resets_on: str
    what: str  # where the default comes from, for messages
    reads_config: bool = False  # soak can read its config file (soak.doctor.proxies)
    reloads: bool = False  # has a graceful reload with a drain limit (shutdown_timeout)


HOP_KINDS: dict[str, HopKind] = {
    k.name: k
    for k in (
        # measured with nginx 1.22 on upgraded connections: frames from the
        # client reset proxy_read_timeout as well as frames from the upstream
        # (docs/intermediaries.md)
        HopKind("nginx", 60.0, EITHER, "proxy_read_timeout, default 60 s", True, True),
        HopKind("haproxy", None, EITHER, "timeout tunnel (or client/server)", True, True),
        HopKind("nat", None, EITHER, "the NAT's idle TCP mapping timeout"),
        HopKind("load_balancer", None, EITHER, "the load balancer's idle timeout"),
        HopKind("aws_alb", 60.0, EITHER, "ALB idle_timeout.timeout_seconds, default 60 s"),
        HopKind("aws_nlb", 350.0, EITHER, "NLB TCP idle timeout, default 350 s"),
        HopKind("azure_lb", 240.0, EITHER, "Azure Load Balancer idle timeout, default 4 min"),
        HopKind("cloudflare", 100.0, EITHER, "Cloudflare's WebSocket idle limit, 100 s"),
        # CloudFront counts only bytes from the origin (its origin response
        # timeout for WebSockets)
        HopKind("cloudfront", 600.0, SERVER, "CloudFront's idle timeout, 10 min of origin silence"),
        HopKind("envoy", 3600.0, EITHER, "Envoy's HTTP connection idle_timeout, default 1 h"),
        HopKind("other", None, EITHER, "its idle timeout"),
    )
}
KINDS = tuple(HOP_KINDS)


@dataclass(frozen=True)
class Hop:
    """One hop between the clients and the gateway, in the order a
    connection crosses them ([[target.hops]])."""

    kind: Annotated[str, one_of(KINDS), REQUIRED]
    name: str = ""  # how soak names it ("" : the kind, numbered if it repeats)
    # the longest silence it lets an upgraded connection keep (default: the kind's)
    idle_timeout: Duration | None = None
    resets_on: Annotated[str, one_of(RESETS)] | None = None  # default: the kind's
    config: str | None = None  # nginx.conf or haproxy.cfg to read the idle timeout from
    # how long a reload's old workers keep connections (nginx
    # worker_shutdown_timeout, HAProxy hard-stop-after)
    shutdown_timeout: Duration | None = None
    # where idle_timeout came from: "profile", the kind's default, or the
    # config file's line (filled in by the loader)
    source: Annotated[str, NOT_IN_PROFILE] = ""
    # the idle timeout the config file says, when the profile also gives one
    config_timeout: Annotated[float | None, NOT_IN_PROFILE] = None

    @property
    def timeout(self) -> float:
        """The idle timeout (the loader guarantees one)."""
        assert self.idle_timeout is not None
        return self.idle_timeout

    @property
    def resets(self) -> str:
        return self.resets_on or HOP_KINDS[self.kind].resets_on

    def label(self) -> str:
        return self.name or self.kind
