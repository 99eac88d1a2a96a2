"""Pure: how a run's load is split over worker processes.

One process holds at most ~19,900 sockets and one core's worth of
heartbeats (as measured), so more clients need more processes. Each
worker runs an ordinary run of its slice of the profile; the parent
(soak.run.processes) does what only the run as a whole can do.
"""

from __future__ import annotations

import dataclasses
import math

from soak.config.profile import WORKERS_AUTO, Profile
from soak.config.stages import Churn, Ramp, Spike, Stage, Storm
from soak.limits import worker_capacity

# heartbeats per second one worker handles with accurate RTT
# (benchmarks/engine.py: the knee is ~5,000/s; keep a margin)
HEARTBEATS_PER_WORKER = 3000.0


def share(total: int, index: int, count: int) -> int:
    """Worker ``index``'s part of ``total``: parts differ by at most one and
    add up to ``total``."""
    return total // count + (1 if index < total % count else 0)


def slice_profile(profile: Profile, index: int, count: int, tag: str = "w") -> Profile:
    """The profile worker ``index`` of ``count`` runs: its share of every
    stage's clients, its own seed and client ids (``<prefix>-<tag><index>``),
    and none of what only the parent does (storm commands and restarts,
    polling the server's stats, judging thresholds). A shard of a run over
    several machines is sliced the same way (soak.run.shard, tag ``s``)."""
    stages: list[Stage] = []
    for st in profile.clients.stages:
        match st:
            case Ramp():
                st = dataclasses.replace(st, to=share(st.to, index, count))
            case Spike():
                st = dataclasses.replace(st, add=share(st.add, index, count))
            case Churn():
                st = dataclasses.replace(st, rate=st.rate / count)
            case Storm():
                st = dataclasses.replace(st, command=None, restart_url=None)
        stages.append(st)
    clients = dataclasses.replace(
        profile.clients,
        stages=tuple(stages),
        max_connecting=max(1, share(profile.clients.max_connecting, index, count)),
        client_id_prefix=f"{profile.clients.client_id_prefix}-{tag}{index}",
    )
    run = dataclasses.replace(profile.run, seed=profile.run.seed * 1000 + index, workers=1)
    target = dataclasses.replace(profile.target, stats=None)
    return dataclasses.replace(profile, run=run, clients=clients, target=target, thresholds=())


def auto_workers(profile: Profile, fd_soft: int, cores: int) -> int:
    """``--workers auto``: enough workers for the descriptors the peak needs,
    and for its heartbeat rate (up to one per core)."""
    peak = profile.peak_clients
    by_fds = math.ceil(peak / worker_capacity(fd_soft, profile.impairment is not None))
    rate = peak / profile.heartbeat.interval
    by_cpu = min(max(1, cores), math.ceil(rate / HEARTBEATS_PER_WORKER))
    return max(1, by_fds, by_cpu)


def resolve_workers(profile: Profile, fd_soft: int, cores: int) -> int:
    n = profile.run.workers
    return auto_workers(profile, fd_soft, cores) if n == WORKERS_AUTO else n
