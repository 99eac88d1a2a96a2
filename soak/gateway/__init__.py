"""The reference gateway that ``soak`` tests against.

- :mod:`soak.gateway.config`: :class:`GatewayConfig`, validated.
- :mod:`soak.gateway.heartbeat`: sans-IO heartbeat manager (the fixed rule,
  and the incident's rule for the ``ignore-max-missed`` bug).
- :mod:`soak.gateway.bugs`: the incident's bugs as fault modes (``--bug``).
- :mod:`soak.gateway.truth`: the ground-truth log of every close the gateway makes.
- :mod:`soak.gateway.http`: request-head parsing for the shared port.
- :mod:`soak.gateway.server`: one Trio task per connection, raw wsproto.
- :mod:`soak.gateway.run`: the process entry point behind ``soak gateway``.
"""

from soak.gateway.config import GatewayConfig
from soak.gateway.run import run_gateway
from soak.gateway.server import Gateway, serve

__all__ = ["Gateway", "GatewayConfig", "run_gateway", "serve"]
