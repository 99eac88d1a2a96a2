"""The reference gateway's settings: one frozen, validated dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from soak.errors import LocalError
from soak.gateway.bugs import Bug, IgnoreMaxMissed, check_bugs, cli_forms

# wsproto refuses to send close codes that RFC 6455 section 7.4.1 reserves for
# local use; a close frame's reason must fit in 123 bytes (section 5.5).
_RESERVED_CLOSE_CODES = frozenset({1004, 1005, 1006, 1015})
_MAX_CLOSE_REASON_BYTES = 123
# The longest restart outage (seconds) the gateway accepts.
MAX_OUTAGE = 600.0


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything the reference gateway can be told. Times are seconds."""

    host: str = "127.0.0.1"
    port: int = 0
    hb_interval: float = 30.0
    hb_timeout: float = 120.0
    max_missed: int = 3
    check_every: float = 5.0
    server_ping_interval: float | None = None
    timeout_close_code: int = 4000
    timeout_close_reason: str = "heartbeat_timeout"
    # Clients ramp at ~1,500 connections/s; a short accept queue would turn
    # a brief stall of the accept loop into refused connections.
    backlog: int = 4096
    # A client that connects and never finishes its request head is dropped.
    handshake_timeout: float = 10.0
    # How long a closing gateway waits for the peer's answering close frame.
    close_wait: float = 2.0
    # The incident's bugs to replay (see soak.gateway.bugs); none by default.
    bugs: tuple[Bug, ...] = ()
    # Append a ground-truth record of every close the gateway makes to this
    # JSONL file (see soak.gateway.truth); they are kept in memory regardless.
    truth_log: Path | None = None
    # Serve ``POST /admin/restart`` (loopback peers only), which simulates a
    # gateway restart: see Gateway.restart. Off: that path answers 404.
    admin: bool = True
    # The outage of a restart asked for by SIGUSR2, or by the admin endpoint
    # without ``?outage=``: how long new connections are refused.
    restart_outage: float = 5.0

    def __post_init__(self) -> None:
        positive = {
            "hb_interval": self.hb_interval,
            "hb_timeout": self.hb_timeout,
            "check_every": self.check_every,
            "handshake_timeout": self.handshake_timeout,
            "close_wait": self.close_wait,
        }
        if self.server_ping_interval is not None:
            positive["server_ping_interval"] = self.server_ping_interval
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise LocalError(f"gateway: {name}: expected a number > 0, got {value!r}")
        if not 0 <= self.port <= 65535:
            raise LocalError(f"gateway: port: expected 0..65535, got {self.port!r}")
        if self.max_missed < 1:
            raise LocalError(
                f"gateway: max_missed: expected an integer >= 1, got {self.max_missed!r}"
            )
        if self.backlog < 1:
            raise LocalError(f"gateway: backlog: expected an integer >= 1, got {self.backlog!r}")
        code = self.timeout_close_code
        if not 1000 <= code <= 4999 or code in _RESERVED_CLOSE_CODES:
            raise LocalError(
                f"gateway: timeout_close_code: expected a sendable close code "
                f"(1000..4999, not 1004/1005/1006/1015), got {code!r}"
            )
        if not isinstance(self.bugs, tuple):
            raise LocalError(f"gateway: bugs: expected a tuple of bugs, got {self.bugs!r}")
        check_bugs(self.bugs)
        if self.truth_log is not None and not isinstance(self.truth_log, Path):
            raise LocalError(f"gateway: truth_log: expected a Path, got {self.truth_log!r}")
        if not (math.isfinite(self.restart_outage) and 0 <= self.restart_outage <= MAX_OUTAGE):
            raise LocalError(
                f"gateway: restart_outage: expected seconds in 0..{MAX_OUTAGE:g}, "
                f"got {self.restart_outage!r}"
            )
        if not isinstance(self.admin, bool):
            raise LocalError(f"gateway: admin: expected true or false, got {self.admin!r}")
        if len(self.timeout_close_reason.encode()) > _MAX_CLOSE_REASON_BYTES:
            raise LocalError(
                f"gateway: timeout_close_reason: expected at most "
                f"{_MAX_CLOSE_REASON_BYTES} bytes, got {self.timeout_close_reason!r}"
            )

    @property
    def bug_names(self) -> list[str]:
        """The enabled bugs in their ``--bug`` form, e.g. ``["no-pong 0.1"]``."""
        return cli_forms(self.bugs)

    def bug_notes(self) -> list[str]:
        """Enabled bugs that these settings keep from showing (printed at start)."""
        notes = []
        window = self.hb_interval * self.max_missed
        if any(isinstance(bug, IgnoreMaxMissed) for bug in self.bugs) and self.hb_timeout >= window:
            notes.append(
                f"ignore-max-missed changes nothing unless hb_timeout < hb_interval * max_missed "
                f"(here {self.hb_timeout:g}s >= {self.hb_interval:g}s * {self.max_missed})"
            )
        return notes
