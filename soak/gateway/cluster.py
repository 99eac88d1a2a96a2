"""What the worker processes of ``soak gateway --workers N`` share.

The parent (:mod:`soak.gateway.supervisor`) forks N workers onto one
SO_REUSEPORT port; each is a whole single-process gateway. What they share
lives in one anonymous shared mmap made before the fork (no names to clean
up, nothing left behind after a crash), held by :class:`Cluster`:

- ``GET /api/stats`` on any worker answers for all of them. The answering
  worker asks the others for a fresh snapshot (a request number in shared
  memory, then SIGUSR1 to each of them); each publishes its ``stats()`` as
  JSON into its own slot, tagged with the request number, and the answering
  worker sums them (:func:`merge_stats`). A worker that does not answer
  within :data:`SNAPSHOT_WAIT` seconds contributes its last snapshot (every
  worker also publishes one each :data:`PUBLISH_EVERY` seconds) and is named
  in ``stale_workers``. Nothing is added to the per-heartbeat path.
- A restart reaches every worker: ``POST /admin/restart`` restarts the
  worker that got it and, through a restart number and outage in shared
  memory, every other worker (SIGUSR2 to each). SIGUSR2 to the parent
  restarts all workers with ``--restart-outage``; SIGUSR2 sent straight to
  one worker restarts that worker only.
- The ground-truth log is one file; every record carries ``"worker": i``
  (0-based), and ``conn`` is numbered per worker, so ``(worker, conn)`` names
  a connection. Each record is one ``write`` on an ``O_APPEND`` file, so lines
  of different workers do not interleave.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import multiprocessing
import os
import signal
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import trio

from soak.errors import LocalError

# What a worker publishes: its own Gateway.stats().
StatsSource = Callable[[], dict[str, Any]]

# Each worker's stats slot: version (seqlock), pid, answered request, length,
# then the JSON snapshot.
_SLOT_HEAD = struct.Struct("=qqqq")
SLOT_BYTES = 64 * 1024
# The shared header: restart number, restart outage, snapshot request number.
_HEAD = struct.Struct("=qdq")
_HEAD_BYTES = 64

# How long a worker answering /api/stats waits for the others' snapshots.
SNAPSHOT_WAIT = 1.0
# Every worker also publishes a snapshot this often (the fallback above).
PUBLISH_EVERY = 1.0
# Exit status when a worker dies (or never starts).
EXIT_WORKER_LOST = 3

# Fields of Gateway.stats() that add up over workers.
SUMMED = (
    "connections",
    "accepted_total",
    "pings_received",
    "pongs_sent",
    "ws_pings_received",
    "ws_pongs_received",
    "server_pings_sent",
    "messages_other",
    "messages_malformed",
    "http_requests",
    "handshake_failures",
    "internal_errors",
    "gc_collections",
    "false_kills",
    "truth_records",
    "truth_log_write_errors",
    "pongs_withheld",
    "heartbeats_dropped",
    "stale_sessions_inherited",
    "restarts",
    "refused_during_restart",
)
# Fields whose largest value over the workers is the gateway's.
MAXED = ("gc_pause_max_ms", "uptime_s")


def check_workers(workers: int) -> int:
    """``--workers``: a whole number >= 1."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise LocalError(
            f"gateway: --workers: expected a whole number of processes >= 1, got {workers!r}"
        )
    return workers


def merge_stats(snapshots: list[dict[str, Any]], stale: list[int] | None = None) -> dict[str, Any]:
    """One ``/api/stats`` document for the whole gateway from each worker's
    (in worker order): counters summed, ``closes_by_reason`` summed per
    reason, maxima kept, the settings taken from the first. ``workers``
    lists each worker's own connection counts; ``stale_workers`` the workers
    whose snapshot is older than the request."""
    if not snapshots:
        raise ValueError("merge_stats: no snapshots")
    merged = dict(snapshots[0])
    for key in SUMMED:
        merged[key] = sum(int(s.get(key, 0)) for s in snapshots)
    for key in MAXED:
        merged[key] = max(s.get(key, 0) for s in snapshots)
    closes: Counter[str] = Counter()
    for s in snapshots:
        closes.update(s.get("closes_by_reason", {}))
    merged["closes_by_reason"] = dict(closes)
    outages = [s["refusing_until"] for s in snapshots if s.get("refusing_until") is not None]
    merged["refusing_until"] = max(outages) if outages else None
    merged["workers"] = [
        {
            "worker": i,
            "pid": s.get("pid"),
            "connections": s.get("connections", 0),
            "accepted_total": s.get("accepted_total", 0),
        }
        for i, s in enumerate(snapshots)
    ]
    merged.pop("pid", None)
    merged["stale_workers"] = sorted(stale or [])
    return merged


class Cluster:
    """The shared memory of one multi-worker gateway. Made by the parent
    before it forks; each worker calls :meth:`attach` with its index."""

    def __init__(self, workers: int) -> None:
        self.workers = check_workers(workers)
        self._mem = mmap.mmap(-1, _HEAD_BYTES + workers * SLOT_BYTES)
        self._lock = multiprocessing.get_context("fork").Lock()
        self.index = -1
        self._restart_seen = 0

    # -- the shared header ---------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The header lock, held for microseconds. Bounded: a worker killed
        while holding it must not freeze the others (the parent then stops
        them all anyway); after a second the update goes ahead unlocked."""
        got = self._lock.acquire(timeout=1.0)
        try:
            yield
        finally:
            if got:
                self._lock.release()

    def _head(self) -> tuple[int, float, int]:
        restart, outage, snapshot = _HEAD.unpack_from(self._mem, 0)
        return int(restart), float(outage), int(snapshot)

    def attach(self, index: int) -> None:
        """Called in worker ``index`` once it listens: its pid becomes visible
        to the others, which may signal it from then on."""
        self.index = index
        self._restart_seen = self._head()[0]
        self._write_slot(index, os.getpid(), 0, b"{}")

    def pids(self) -> list[int]:
        """Each worker's pid (0 for one not yet listening)."""
        return [self._read_head(i)[1] for i in range(self.workers)]

    def _signal_others(self, signum: int) -> None:
        for i, pid in enumerate(self.pids()):
            if i != self.index and pid > 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)

    # -- restarts ------------------------------------------------------------

    def request_restart(self, outage: float) -> int:
        """Record a restart for every worker; returns its number."""
        with self._locked():
            restart, _old, snapshot = self._head()
            restart += 1
            _HEAD.pack_into(self._mem, 0, restart, outage, snapshot)
        return restart

    def broadcast_restart(self, outage: float) -> None:
        """This worker has restarted itself: make every other one restart."""
        self._restart_seen = self.request_restart(outage)
        self._signal_others(signal.SIGUSR2)

    def take_restart(self, default: float) -> float:
        """On SIGUSR2: the outage of the restart asked for, or ``default``
        when none is pending (the signal came straight to this worker)."""
        with self._locked():
            restart, outage, _snapshot = self._head()
        if restart > self._restart_seen:
            self._restart_seen = restart
            return outage
        return default

    # -- stats -----------------------------------------------------------------

    def _read_head(self, index: int) -> tuple[int, int, int, int]:
        version, pid, answered, length = _SLOT_HEAD.unpack_from(
            self._mem, _HEAD_BYTES + index * SLOT_BYTES
        )
        return int(version), int(pid), int(answered), int(length)

    def _write_slot(self, index: int, pid: int, answered: int, body: bytes) -> None:
        base = _HEAD_BYTES + index * SLOT_BYTES
        if len(body) > SLOT_BYTES - _SLOT_HEAD.size:
            body = json.dumps({"error": "snapshot too large"}).encode()
        version = self._read_head(index)[0]
        # seqlock: odd while the slot is being written
        struct.pack_into("=q", self._mem, base, version + 1)
        start = base + _SLOT_HEAD.size
        self._mem[start : start + len(body)] = body
        _SLOT_HEAD.pack_into(self._mem, base, version + 2, pid, answered, len(body))

    def _read_slot(self, index: int) -> tuple[int, dict[str, Any] | None]:
        """(the request number it answered, the snapshot) of one worker."""
        base = _HEAD_BYTES + index * SLOT_BYTES
        for _ in range(10_000):
            version, _pid, answered, length = self._read_head(index)
            if version % 2:
                continue
            start = base + _SLOT_HEAD.size
            body = bytes(self._mem[start : start + length])
            if self._read_head(index)[0] == version:
                try:
                    snap = json.loads(body) if body else None
                except ValueError:
                    snap = None
                return answered, snap if isinstance(snap, dict) else None
        return 0, None

    def publish(self, stats: StatsSource) -> None:
        """Write this worker's snapshot (``stats()``), answering the latest request."""
        with self._locked():
            _restart, _outage, requested = self._head()
        snap = stats()
        snap["pid"] = os.getpid()
        body = json.dumps(snap, separators=(",", ":")).encode()
        self._write_slot(self.index, os.getpid(), requested, body)

    async def merged_stats(self, stats: StatsSource) -> dict[str, Any]:
        """Every worker's fresh snapshot, this one's from ``stats()``, merged
        (see :func:`merge_stats`)."""
        with self._locked():
            restart, outage, requested = self._head()
            requested += 1
            _HEAD.pack_into(self._mem, 0, restart, outage, requested)
        self._signal_others(signal.SIGUSR1)
        own = stats()
        own["pid"] = os.getpid()
        others = [i for i in range(self.workers) if i != self.index]
        with trio.move_on_after(SNAPSHOT_WAIT):
            while others:
                others = [i for i in others if self._read_slot(i)[0] < requested]
                if others:
                    await trio.sleep(0.002)
        snapshots: list[dict[str, Any]] = []
        for i in range(self.workers):
            if i == self.index:
                snapshots.append(own)
                continue
            _answered, snap = self._read_slot(i)
            snapshots.append(snap if snap is not None else {})
        return merge_stats(snapshots, others)

    async def serve_snapshots(
        self,
        stats: StatsSource,
        index: int,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Join the cluster as worker ``index`` (see :meth:`attach`), then
        publish a snapshot (``stats()``) on SIGUSR1 and every :data:`PUBLISH_EVERY` s."""
        with trio.open_signal_receiver(signal.SIGUSR1) as requests:
            self.attach(index)
            self.publish(stats)
            task_status.started()
            while True:
                with trio.move_on_after(PUBLISH_EVERY):
                    async for _ in requests:
                        self.publish(stats)
                self.publish(stats)


__all__ = [
    "EXIT_WORKER_LOST",
    "Cluster",
    "StatsSource",
    "check_workers",
    "merge_stats",
]
