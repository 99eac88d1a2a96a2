"""soak's own commands in a child process: ``python -m soak gateway`` (or
``proxy``) started, its port read from its first line, stopped by its PID.

For the benchmarks and the tests that need a real process (its own CPU,
memory and descriptors, signals, ``SO_REUSEPORT`` workers). Every wait is
bounded: for the first line, and for the exit after SIGTERM (then SIGKILL).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0  # seconds until the child's first line
STOP_TIMEOUT = 30.0  # seconds from SIGTERM to its exit, then SIGKILL


@dataclass
class SoakChild:
    """A running ``python -m soak ...``: the process, the port it listens
    on and the line it was read from. ``killed`` is set when it did not exit
    within the stop timeout after SIGTERM and had to be killed."""

    proc: subprocess.Popen[str]
    port: int
    line: str
    host: str = LOOPBACK
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        """The WebSocket URL of a gateway child."""
        return f"ws://{self.host}:{self.port}/ws"


def listening_port(line: str) -> int:
    """The port in a "soak gateway listening on <host>:<port>" line."""
    if "listening on" not in line:
        raise ValueError(line)
    return int(line.rsplit(":", 1)[1])


@contextmanager
def soak_child(
    args: Sequence[str],
    *,
    port_of: Callable[[str], int] = listening_port,
    host: str = LOOPBACK,
    prefix: Sequence[str] = (),
    cwd: str | Path | None = None,
    stderr: int | None = None,
    start_timeout: float = START_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
) -> Iterator[SoakChild]:
    """``[*prefix] python -m soak ARGS`` until its first line, from which
    ``port_of`` reads the port (``RuntimeError`` if there is none within
    ``start_timeout``); SIGTERM to its PID at the end. ``prefix`` runs it
    under another command that execs it (``ip netns exec NS``);
    ``stderr=subprocess.PIPE`` keeps its stderr for the caller to read."""
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "soak", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    child: SoakChild | None = None
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], start_timeout)
        line = proc.stdout.readline() if ready else ""
        try:
            port = port_of(line)
        except (ValueError, IndexError):
            raise RuntimeError(f"soak {args[0]} did not start: {line!r}") from None
        child = SoakChild(proc, port, line, host)
        yield child
    finally:
        killed = stop(proc, stop_timeout)
        if child is not None:
            child.killed = killed


def stop(proc: subprocess.Popen[str], timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM to ``proc`` (if it still runs), wait up to ``timeout``, then
    SIGKILL; its pipes are closed. True if it had to be killed."""
    killed = False
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            killed = True
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return killed


def gateway_process(
    *extra: str,
    host: str = LOOPBACK,
    prefix: Sequence[str] = (),
    cwd: str | Path | None = None,
    stderr: int | None = None,
    start_timeout: float = START_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
) -> AbstractContextManager[SoakChild]:
    """``soak gateway --host HOST --port 0 EXTRA...``: the reference gateway,
    port chosen by the kernel; the options are :func:`soak_child`'s."""
    return soak_child(
        ["gateway", "--host", host, "--port", "0", *extra],
        host=host,
        prefix=prefix,
        cwd=cwd,
        stderr=stderr,
        start_timeout=start_timeout,
        stop_timeout=stop_timeout,
    )
