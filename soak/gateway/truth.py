"""The gateway's ground-truth log: one record per close the gateway makes.

``soak`` infers from the client's side why a connection ended (a justified or
a false heartbeat timeout, a zombie...). The reference gateway knows the
answer, so it writes it down, and tests compare ``soak``'s verdicts with it.

A record is made for every close the gateway itself initiates: a heartbeat
timeout, a shutdown (1001), a simulated restart (``service_restart``, 1012,
recorded at the restart instant), a protocol error, an internal error (the stream is
dropped without a close frame: ``code`` is null). Closes the client starts and
lost transports are not the gateway's doing and get no record. Keys:

``t``              gateway time of the close decision, seconds since the gateway started
``conn``           connection number, 1-based, in the order WebSocket connections opened
``client_id``      the ``clientId`` of the connection's first JSON ping, or null
``reason``         as counted in ``closes_by_reason`` (``heartbeat_timeout``, ...)
``code``           the close code sent, or null when no close frame is sent
``last_beat_age``  seconds since the last heartbeat *as the heartbeat manager saw it*
                   (null once the manager no longer tracks the connection)
``last_frame_age`` seconds since any frame truly arrived on this connection (opening
                   the connection counts, as it counts as the first heartbeat)
``missed``         floor(last_beat_age / interval), the manager's missed count, or null
``truly_alive``    the ground truth: the FIXED rule would not have closed the
                   connection given ``last_frame_age``, i.e. the client was still
                   sending within ``interval * max_missed`` (and ``timeout``)

``worker``         only with ``soak gateway --workers N`` (N > 1): the worker
                   process (0-based) that made the close. ``conn`` is numbered per
                   worker, so ``(worker, conn)`` names a connection. All workers
                   append to the one file, a whole line per write.

Times are rounded to microseconds. A heartbeat-timeout close of a truly alive
client is a *false kill*.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import IO, NotRequired, TypedDict

from soak.errors import LocalError

logger = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT = "heartbeat_timeout"


class TruthRecord(TypedDict):
    t: float
    conn: int
    client_id: str | int | None
    reason: str
    code: int | None
    last_beat_age: float | None
    last_frame_age: float
    missed: int | None
    truly_alive: bool
    worker: NotRequired[int]


class TruthLog:
    """Records in memory, and appended as JSONL to ``path`` (flushed per record)."""

    def __init__(self, path: Path | None = None, *, worker: int | None = None) -> None:
        self.records: list[TruthRecord] = []
        # set in a worker of a multi-process gateway: tags every record
        self.worker = worker
        self.false_kills = 0
        self.write_errors = 0
        self._file: IO[str] | None = None
        if path is not None:
            try:
                self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
            except OSError as exc:
                raise LocalError(
                    f"gateway: truth_log: cannot open {str(path)!r} for appending: "
                    f"{exc.strerror or exc}"
                ) from exc

    def add(self, record: TruthRecord) -> None:
        if self.worker is not None:
            record["worker"] = self.worker
        self.records.append(record)
        if record["reason"] == HEARTBEAT_TIMEOUT and record["truly_alive"]:
            self.false_kills += 1
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError as exc:
            # A full disk must not take connections down; the record is kept
            # in memory and the failure is counted in stats.
            self.write_errors += 1
            if self.write_errors == 1:
                logger.error("gateway: cannot write the truth log: %s", exc)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


__all__ = ["HEARTBEAT_TIMEOUT", "TruthLog", "TruthRecord"]
