"""Helpers shared by the test modules (fixtures live in tests/conftest.py).

- :mod:`tests.support.runs`: profiles from TOML bodies, and runs of the
  real Runner with no sockets (in-memory streams to an in-process gateway or
  a hand-written server), and reading a run's events back.
- :mod:`tests.support.wsclient`: a tiny wsproto client for poking the
  reference gateway over memory streams, and the deadlock watchdog.
- :mod:`tests.support.chromium`: a page opened in headless Chromium.
- :mod:`tests.support.hostile`: a WebSocket server on loopback that
  misbehaves on purpose, one behaviour per connection number, in a child
  process of its own.
- :mod:`tests.support.disk`: a results disk that fails on demand (a full
  disk, with half-written writes).
- :mod:`tests.support.fakes`: servers of dialects with no real server
  installable here, as their specifications describe them.

Test modules import from here, never from one another.
"""
