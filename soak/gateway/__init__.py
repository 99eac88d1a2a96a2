"""The reference gateway that ``soak`` tests against.

- :mod:`soak.gateway.config`: :class:`GatewayConfig`, validated.
- :mod:`soak.gateway.heartbeat`: sans-IO heartbeat manager (the fixed rule).
- :mod:`soak.gateway.http`: request-head parsing for the shared port.
- :mod:`soak.gateway.server`: one Trio task per connection, raw wsproto.
- :mod:`soak.gateway.run`: the process entry point behind ``soak gateway``.
"""

from soak.gateway.config import GatewayConfig
from soak.gateway.run import run_gateway
from soak.gateway.server import Gateway, serve

__all__ = ["Gateway", "GatewayConfig", "run_gateway", "serve"]
