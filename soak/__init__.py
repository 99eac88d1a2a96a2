"""soak: a Trio-based WebSocket load and soak tester."""

__version__ = "0.1.0"
