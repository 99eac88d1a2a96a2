"""The reference gateway that ``soak`` tests against.

- :mod:`soak.gateway.config`: :class:`GatewayConfig`, validated.
- :mod:`soak.gateway.heartbeat`: sans-IO heartbeat manager (the fixed rule,
  and the incident's rule for the ``ignore-max-missed`` bug).
- :mod:`soak.gateway.bugs`: the incident's bugs as fault modes (``--bug``), parsed.
- :mod:`soak.gateway.faults`: what the bugs do, one sans-IO object the pump asks.
- :mod:`soak.gateway.counters`: the counters and the ``/api/stats`` document.
- :mod:`soak.gateway.truth`: the ground-truth log of every close the gateway makes.
- :mod:`soak.gateway.restart`: a simulated restart's outage (sans-IO) and its 1012.
- :mod:`soak.gateway.http`: request-head parsing for the shared port.
- :mod:`soak.gateway.routes`: the plain HTTP answers (stats, admin restart, 503, 404).
- :mod:`soak.gateway.connections`: the open connections, expiry, restart, truth records.
- :mod:`soak.gateway.pump`: one connection's task: heartbeats answered, then the close.
- :mod:`soak.gateway.accept`: one accepted stream, from request head to WebSocket or HTTP.
- :mod:`soak.gateway.server`: :class:`Gateway`, the parts wired; listener and checker.
- :mod:`soak.gateway.run`: the process entry point behind ``soak gateway``.
- :mod:`soak.gateway.cluster`: what the workers of ``--workers N`` share (mmap).
- :mod:`soak.gateway.supervisor`: the parent process of ``--workers N``.
"""

from soak.gateway.config import GatewayConfig
from soak.gateway.run import run_gateway
from soak.gateway.server import Gateway, serve

__all__ = ["Gateway", "GatewayConfig", "run_gateway", "serve"]
