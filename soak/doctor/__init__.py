"""``soak doctor``: check a planned run and its heartbeat configs before a soak.

- :mod:`soak.doctor.findings`: :class:`Finding` and the exit code (pure data).
- :mod:`soak.doctor.gateway_config`: the gateway's heartbeat config (YAML or JSON).
- :mod:`soak.doctor.nginx`: the proxy's timeouts (nginx, or haproxy), pure.
- :mod:`soak.doctor.consistency`: gateway, proxy and client must agree (pure).
- :mod:`soak.doctor.environment`: this machine's limits, sockets and loop lag.
- :mod:`soak.doctor.target`: one connection and one heartbeat to the target (I/O).
- :mod:`soak.doctor.render`: text and JSON output.
- :mod:`soak.doctor.diagnose`: loads the inputs and runs every check (``soak doctor``).
"""
