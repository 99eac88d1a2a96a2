"""The click commands of ``soak``, one module per command or group; soak.cli
registers them."""
