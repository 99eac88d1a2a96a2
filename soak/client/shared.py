"""What every client of one run shares, in three parts with one writer each.

- :class:`ClientConfig`: settings derived once from the profile. Nobody writes
  it after it is built.
- :class:`Services`: the run's clock, sinks and shared state machines
  (metrics, the events sink, storm tracking, permanence, the pacer, the
  batch receiver). The
  runner builds them at the run's start and may swap ``open_stream`` (to
  the impairment proxy) before any client starts; ``storms`` is given at
  construction (a worker's log for its parent; else a tracker, which is
  also ``tracker``). After that, clients only call them.
- :class:`Gauges`: figures the runner reads (``connected``, ``connecting``,
  ``gave_up``, the server's version). In one process the clients write
  them; in a coordinator, the coordinator writes the sums of its workers'.

:class:`Shared` is the three together, built by the runner.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import trio

from soak import backoff
from soak.availability import ClientSeconds
from soak.classify import Classifier
from soak.client import batch
from soak.client.pacer import Pacer
from soak.client.transport import OpenStream
from soak.config.profile import Profile
from soak.metrics import Metrics
from soak.protocols import PROTOCOLS
from soak.protocols.base import HeartbeatProtocol
from soak.storm import StormInputs, StormTracker
from soak.urls import authority, without_userinfo
from soak.wire import WireClock


class ClientConfig:
    """The run's settings as clients use them, derived once from the profile."""

    __slots__ = (
        "classifier",
        "extra_headers",
        "host_header",
        "profile",
        "protocol",
        "resource",
        "shown_url",
    )

    def __init__(self, profile: Profile) -> None:
        target = profile.target
        self.profile = profile
        self.protocol: type[HeartbeatProtocol] = PROTOCOLS[target.protocol]
        self.classifier = Classifier(target.server_heartbeat)
        self.shown_url = without_userinfo(target.url)  # for messages: no credentials
        self.host_header = authority(target.url)
        parts = urlsplit(target.url)
        self.resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [(k.encode(), v.encode()) for k, v in target.headers]
        token = target.token
        if token is not None:
            value = target.token_prefix + token.value
            headers.append((target.token_header.encode(), value.encode()))
        self.extra_headers = headers


class Services:
    """The run's clock, sinks and shared state machines (see the module's
    docstring for who may replace what)."""

    __slots__ = (
        "batch",
        "emit",
        "limiter",
        "metrics",
        "open_stream",
        "pacer",
        "permanence",
        "protocol_state",
        "rng",
        "storms",
        "t0",
        "tracker",
        "wall0",
        "wire",
    )

    def __init__(
        self,
        config: ClientConfig,
        metrics: Metrics,
        open_stream: OpenStream,
        emit: Callable[[dict[str, Any]], None],
        *,
        t0: float,
        wall0: float,
        rng: random.Random,
        storms: StormInputs | None = None,
    ) -> None:
        profile = config.profile
        self.metrics = metrics
        self.open_stream = open_stream
        self.emit = emit  # the events sink (events.jsonl, or the pipe to the parent)
        self.t0 = t0  # trio time at run start
        self.wall0 = wall0  # epoch seconds at run start
        self.rng = rng
        self.limiter = trio.Semaphore(profile.clients.max_connecting)
        self.protocol_state = config.protocol.shared_state(profile.target)
        # refusals that trying again cannot help (a wrong token): once known,
        # no client tries again
        self.permanence = backoff.Permanence()
        # where the clients' storm inputs go: a tracker detecting storms here,
        # or (a worker) a log its parent replays; ``tracker`` is None then
        self.tracker: StormTracker | None = None
        if storms is None:
            st = profile.storms
            storms = self.tracker = StormTracker(
                heartbeat_interval=profile.heartbeat.interval,
                origin=t0,
                min_losses=st.min_losses,
                window=st.window,
                quiet=st.quiet,
            )
        self.storms: StormInputs = storms
        self.pacer = Pacer()
        # one task reading every plain-TCP client's socket (soak.client.batch);
        # None: each client's task reads its own
        self.batch: batch.BatchReceiver | None = (
            batch.BatchReceiver(metrics) if profile.run.batch_receive and batch.AVAILABLE else None
        )
        # wire-true RTT (soak.wire): the run's clock map when the profile
        # asks for kernel timestamps
        self.wire = WireClock() if profile.heartbeat.kernel_timestamps else None

    def storm_tick(self, now: float) -> None:
        """Close the current storm if it is over, with an event."""
        tracker = self.tracker
        if tracker is None:
            return  # storms are detected elsewhere (a worker's parent)
        storm = tracker.tick(now)
        if storm is not None:
            self.emit(
                {
                    "t": round(self.elapsed(now), 6),
                    "event": "storm_end",
                    **tracker.summary_of(storm),
                }
            )

    def elapsed(self, now: float) -> float:
        return now - self.t0


class Gauges:
    """Figures the runner reads: written by the clients of this process, or
    by a coordinator from its workers' reports."""

    __slots__ = ("connected", "connecting", "gave_up", "seconds", "server_version")

    def __init__(self) -> None:
        self.connected = 0
        # client-seconds connected and planned (told each change of
        # ``connected`` and of the target): availability, soak.availability
        self.seconds = ClientSeconds()
        self.connecting = 0
        self.gave_up = 0
        # the server's version from the first protocol handshake that gave
        # one (OpenClaw's hello-ok), for the run manifest
        self.server_version: str | None = None


class Shared:
    """What all clients of one run share: ``config``, ``services`` and
    ``gauges``. Built by the runner."""

    __slots__ = ("config", "gauges", "services")

    def __init__(
        self,
        profile: Profile,
        metrics: Metrics,
        open_stream: OpenStream,
        emit: Callable[[dict[str, Any]], None],
        *,
        t0: float,
        wall0: float,
        rng: random.Random,
        storms: StormInputs | None = None,
    ) -> None:
        self.config = ClientConfig(profile)
        self.services = Services(
            self.config, metrics, open_stream, emit, t0=t0, wall0=wall0, rng=rng, storms=storms
        )
        self.gauges = Gauges()
