"""I/O: the sink of a worker process: everything its run would write, sent
up the pipe to the parent instead (soak.run.processes reads it).

Wire format, worker to parent (its stdout): one JSON document per line,
``{"m": kind, ...}``:

- ``interval``: a finished interval (soak.run.merge.encode_interval) and
  ``events_dropped``;
- ``status``: the live view's numbers, with the current interval's RTT
  histogram (``interval``, ``rtt_hist``);
- ``manifest``: ``server_version``, once the protocol said it;
- ``final``: summary.json.

Every message also carries ``upto`` (seconds since the run's start that its
storm inputs are complete up to) and, when there are any, ``events`` and
``storm`` (the storm inputs since the last message, soak.storm.StormLog).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from soak.metrics import Interval, Metrics, encode_histogram
from soak.recorder import MAX_EVENTS_PER_INTERVAL
from soak.run.merge import encode_interval
from soak.storm import StormLog

EXIT_PARENT_GONE = 70


class Channel:
    """The pipe to the parent: one JSON document per line. Events and storm
    inputs ride along with the next status or interval message."""

    def __init__(self, fd: int, origin_monotonic: float) -> None:
        self.fd = fd
        self.origin = origin_monotonic
        self.events: list[dict[str, Any]] = []
        self.storms: StormLog | None = None  # set as the run starts (storm_log)
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

    def storm_log(self, t0: float) -> StormLog:
        """The Runner's ``storm_inputs``: the run's storm inputs, kept for
        the parent, relative to the run's start ``t0`` (trio time)."""
        self.storms = StormLog(origin=t0)
        return self.storms

    def status(self, status: dict[str, Any]) -> None:
        """The Runner's ``on_status``."""
        if self.metrics is not None:
            # the current interval's RTT histogram, so the parent's live view
            # shows the run's percentiles, not the worst worker's
            cur = self.metrics.current
            rtt = cur.hist["rtt"]
            status["interval"] = cur.index
            # encode_histogram, not rtt.encode(): once a second, each of
            # hdrh's would leave a ctypes type for the collector (soak.metrics)
            status["rtt_hist"] = (
                encode_histogram(rtt).decode("ascii") if rtt.get_total_count() else None
            )
        self.send({"m": "status", "status": status})


class PipeSink:
    """A run's results, sent to the parent (a :class:`~soak.run.source.Sink`)."""

    def __init__(self, channel: Channel, wall0: float) -> None:
        self.channel = channel
        self.wall0 = wall0
        self.events_dropped = 0

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
        pass  # storms are the parent's (a StormLog detects none)

    def close(self) -> None:
        pass  # the pipe stays open for the summary
