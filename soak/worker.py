"""A worker process of a multi-process run: ``python -m soak.worker``.

Started by :func:`soak.run.spawn.start_workers`, never by hand. It reads its
slice of the profile from stdin, says "ready", waits for the run's time
origin, then runs an ordinary :class:`~soak.run.runner.Runner` of clients in
this process whose sink ships everything to the parent on stdout instead of
writing files (soak.run.sinks). Anything else printed goes to stderr.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys

import trio

from soak.limits import raise_fd_limit
from soak.run.runner import Runner
from soak.run.sinks import Channel, PipeSink
from soak.run.spawn import WorkerSetup


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when its parent dies (a SIGKILLed
    parent must not leave workers holding thousands of connections)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> None:
    out = os.dup(1)
    os.dup2(2, 1)  # stray prints must not corrupt the pipe
    _die_with_parent()
    setup: WorkerSetup = pickle.load(sys.stdin.buffer)
    raise_fd_limit()
    os.write(out, b'{"m":"ready"}\n')
    line = sys.stdin.buffer.readline().split()
    if len(line) != 2:
        sys.exit(0)  # the parent gave up before the start
    origin, wall0 = float(line[0]), float(line[1])
    channel = Channel(out, origin)
    runner = Runner(
        setup.profile,
        PipeSink(channel, wall0),
        storm_inputs=channel.storm_log,
        on_status=channel.status,
        status_every=1.0,
        signals=True,
        origin_monotonic=origin,
    )
    channel.metrics = runner.metrics
    trio.run(runner.run)


if __name__ == "__main__":
    main()
