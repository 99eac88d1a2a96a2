"""Multi-process runs (``soak run --workers N``), under the names they always
had. They live in soak.run now: how the load is split (``split``), starting
the workers (``spawn``), the parent's load source (``processes``), adding up
what the workers send (``merge``) and a worker's sink (``sinks``)."""

from soak.run.merge import StormReplay, absorb, encode_interval, merge_status
from soak.run.processes import FINISH_GRACE, GATHER_WAIT, LOST, Coordinator, WorkerProcesses
from soak.run.spawn import BOOT_TIMEOUT, LEAD, Worker, WorkerError, WorkerSetup, go, start_workers
from soak.run.split import (
    HEARTBEATS_PER_WORKER,
    auto_workers,
    resolve_workers,
    share,
    slice_profile,
)
from soak.storm import StormLog

__all__ = [
    "BOOT_TIMEOUT",
    "FINISH_GRACE",
    "GATHER_WAIT",
    "HEARTBEATS_PER_WORKER",
    "LEAD",
    "LOST",
    "Coordinator",
    "StormLog",
    "StormReplay",
    "Worker",
    "WorkerError",
    "WorkerProcesses",
    "WorkerSetup",
    "absorb",
    "auto_workers",
    "encode_interval",
    "go",
    "merge_status",
    "resolve_workers",
    "share",
    "slice_profile",
    "start_workers",
]
