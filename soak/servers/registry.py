"""Every real server soak knows how to start, by name. One module per
dialect family defines its recipes (``RECIPES``, a tuple); add a new module
to ``_MODULES``."""

from __future__ import annotations

from soak.servers import actioncable, graphql_ws, mqtt, nats, rabbitmq, socketio, sockjs
from soak.servers.base import Recipe

_MODULES: tuple[tuple[Recipe, ...], ...] = (
    mqtt.RECIPES,
    graphql_ws.RECIPES,
    socketio.RECIPES,
    sockjs.RECIPES,
    actioncable.RECIPES,
    nats.RECIPES,
    rabbitmq.RECIPES,
)

RECIPES: dict[str, Recipe] = {r.name: r for group in _MODULES for r in group}


def recipe(name: str) -> Recipe:
    """The recipe called ``name``; KeyError's message lists the known ones."""
    try:
        return RECIPES[name]
    except KeyError:
        known = ", ".join(sorted(RECIPES)) or "none"
        raise KeyError(f"no real server called {name!r} (known: {known})") from None
