"""A worker process of a multi-process run: ``python -m soak.worker``.

Started by :func:`soak.workers.start_workers`, never by hand. It reads its
slice of the profile from stdin, says "ready", waits for the run's time
origin, then runs an ordinary :class:`~soak.runner.Runner` whose recorder
ships everything to the parent on stdout instead of writing files (see
soak.workers for the wire format). Anything else printed goes to stderr.
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import signal
import sys
import time
from pathlib import Path
from typing import Any

import trio

from soak.client import Shared
from soak.limits import raise_fd_limit
from soak.metrics import Interval, Metrics
from soak.recorder import MAX_EVENTS_PER_INTERVAL, Recorder
from soak.runner import Runner
from soak.workers import StormLog, WorkerSetup, encode_interval

EXIT_PARENT_GONE = 70


class Channel:
    """The pipe to the parent: one JSON document per line. Events and storm
    inputs ride along with the next status or interval message."""

    def __init__(self, fd: int, origin_monotonic: float) -> None:
        self.fd = fd
        self.origin = origin_monotonic
        self.events: list[dict[str, Any]] = []
        self.events_dropped = 0
        self.storms: StormLog | None = None
        self.metrics: Metrics | None = None  # the runner's, for the live RTT

    def send(self, msg: dict[str, Any]) -> None:
        if self.events:
            msg["events"], self.events = self.events, []
        if self.storms is not None:
            msg["storm"] = self.storms.take()
        # the storm inputs are complete up to now
        msg["upto"] = time.monotonic() - self.origin
        data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except BrokenPipeError:
            # the parent is gone: nobody is left to report to
            os._exit(EXIT_PARENT_GONE)

    def status(self, status: dict[str, Any]) -> None:
        if self.metrics is not None:
            # the current interval's RTT histogram, so the parent's live view
            # shows the run's percentiles, not the worst worker's
            cur = self.metrics.current
            rtt = cur.hist["rtt"]
            status["interval"] = cur.index
            status["rtt_hist"] = rtt.encode().decode("ascii") if rtt.get_total_count() else None
        self.send({"m": "status", "status": status})


class PipeRecorder(Recorder):
    """The Recorder's interface, writing to the parent instead of files."""

    def __init__(self, channel: Channel, wall0: float) -> None:  # no files: no super()
        self.channel = channel
        self.wall0 = wall0
        self.path = Path("-")
        self.events_dropped = 0
        self.events_written = 0

    def event(self, ev: dict[str, Any]) -> None:
        ch = self.channel
        if len(ch.events) >= MAX_EVENTS_PER_INTERVAL:
            self.events_dropped += 1
            return
        ch.events.append(ev)

    def write_interval(self, iv: Interval, extra: dict[str, Any]) -> dict[str, Any]:
        msg = encode_interval(iv, int(extra.get("gave_up", 0)))
        msg["events_dropped"] = self.events_dropped
        self.events_dropped = 0
        self.channel.send(msg)
        return msg

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        if name == "summary.json":
            self.channel.send({"m": "final", "summary": data})
        elif name == "run.json" and data.get("server_version") is not None:
            self.channel.send({"m": "manifest", "server_version": data["server_version"]})

    def write_lines(self, name: str, records: list[dict[str, Any]]) -> None:
        pass  # storms are the parent's (StormLog keeps no storms)

    def close(self) -> None:
        pass


class WorkerRunner(Runner):
    def __init__(self, *args: Any, channel: Channel, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.channel = channel

    def _make_shared(self, t0: float) -> Shared:
        shared = super()._make_shared(t0)
        log = StormLog(heartbeat_interval=self.profile.heartbeat.interval, origin=t0)
        shared.services.storms = log
        self.channel.storms = log
        return shared


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
    runner = WorkerRunner(
        setup.profile,
        PipeRecorder(channel, wall0),
        channel=channel,
        on_status=channel.status,
        status_every=1.0,
        signals=True,
        origin_monotonic=origin,
    )
    channel.metrics = runner.metrics
    trio.run(runner.run)


if __name__ == "__main__":
    main()
