"""I/O: starting a multi-process run's worker processes
(``python -m soak.worker``) and telling them when the run starts.

All processes share one time origin: CLOCK_MONOTONIC is system-wide, so the
parent hands the workers the ``time.monotonic()`` instant the run starts at,
and interval boundaries line up to the microsecond.

Parent to worker (its stdin): a pickled :class:`WorkerSetup`, then one line
``<origin monotonic> <origin wall>`` when every worker is ready. Worker to
parent (its stdout): ``{"m":"ready"}``, then one JSON document per line
(soak.run.sinks).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from soak.config.profile import Profile
from soak.run.split import slice_profile

# a worker that has not said "ready" by then failed to start
BOOT_TIMEOUT = 60.0
# the run starts this long after the last worker is ready
LEAD = 0.2


class WorkerError(Exception):
    """The workers could not be started."""


@dataclass
class WorkerSetup:
    profile: Profile
    index: int
    count: int


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen[bytes]
    planned: int  # its peak clients
    reported: int = -1  # the last interval it reported
    upto: float = 0.0  # seconds since the start its storm inputs cover
    status: dict[str, Any] = field(default_factory=dict)
    connected: int = 0
    connecting: int = 0
    target: int = 0
    gave_up: int = 0
    rss_bytes: int = 0
    final: dict[str, Any] | None = None
    server_version: str | None = None
    done: bool = False  # its stdout ended
    lost: str | None = None  # why it was lost, if it was
    exit_code: int | None = None

    @property
    def live(self) -> bool:
        return not self.done


def start_workers(profile: Profile, count: int) -> list[Worker]:
    """Start ``count`` worker processes and wait until each has loaded its
    slice of the profile. Synchronous: it runs before the run's clock starts."""
    workers: list[Worker] = []
    try:
        for i in range(count):
            part = slice_profile(profile, i, count)
            proc = subprocess.Popen(
                [sys.executable, "-m", "soak.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # own session: a Ctrl-C reaches the parent only, which then
                # stops the workers once, cleanly
                start_new_session=True,
            )
            workers.append(Worker(i, proc, part.peak_clients))
            assert proc.stdin is not None
            proc.stdin.write(pickle.dumps(WorkerSetup(part, i, count)))
            proc.stdin.flush()
        _wait_ready(workers)
    except BaseException:
        for w in workers:
            with contextlib.suppress(OSError):
                w.proc.kill()
            w.proc.wait()
        raise
    return workers


def _wait_ready(workers: list[Worker]) -> None:
    sel = selectors.DefaultSelector()
    waiting: dict[int, Worker] = {}
    for w in workers:
        assert w.proc.stdout is not None
        fd = w.proc.stdout.fileno()
        sel.register(fd, selectors.EVENT_READ)
        waiting[fd] = w
    deadline = time.monotonic() + BOOT_TIMEOUT
    buffers: dict[int, bytes] = dict.fromkeys(waiting, b"")
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            names = ", ".join(str(w.index) for w in waiting.values())
            raise WorkerError(f"worker process(es) {names} did not start within {BOOT_TIMEOUT:g}s")
        for key, _ in sel.select(left):
            fd = int(key.fd)
            chunk = os.read(fd, 4096)
            w = waiting[fd]
            if not chunk:
                code = w.proc.wait()
                raise WorkerError(
                    f"worker process {w.index} failed to start (exit code {code}); "
                    "its error is above"
                )
            buffers[fd] += chunk
            if b"\n" in buffers[fd]:
                line = buffers[fd].split(b"\n", 1)[0]
                if line != b'{"m":"ready"}':
                    raise WorkerError(f"worker process {w.index} said {line[:200]!r}")
                sel.unregister(fd)
                del waiting[fd]
    sel.close()


def go(workers: list[Worker], origin_monotonic: float, origin_wall: float) -> None:
    """Tell every worker when the run starts."""
    line = f"{origin_monotonic!r} {origin_wall!r}\n".encode()
    for w in workers:
        assert w.proc.stdin is not None
        with contextlib.suppress(OSError):
            w.proc.stdin.write(line)
            w.proc.stdin.close()
