"""The click commands of ``soak``, one module per command or group; soak.cli
registers them.

A command imports its machinery (the gateway, the report's matplotlib, the
doctor) inside its function, not at the top of its module: ``soak --help``
and ``soak run`` then do not pay for loading what they do not use. These are
the only function-level imports in soak, and none of them avoids a cycle
(soak has no import cycle)."""
