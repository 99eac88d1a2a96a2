"""Pure: how a connection ended, as one reason key.

Every connection end is described by a :class:`CloseInfo`: who ended it,
the close frame (if any), what the transport did, and the client's evidence
at that moment. :func:`reason_key` turns it into the key that
``intervals.jsonl`` and ``summary.json`` count closes by.

This is the first cut. Telling false timeouts from justified ones, using the
server's heartbeat signature from the profile, builds on this evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

CLIENT = "client"  # we closed it on purpose
SERVER = "server"  # the server sent a close frame
TRANSPORT = "transport"  # the network lost it: no close frame (1006)

# why a client closes on purpose
SHUTDOWN = "shutdown"  # the run is ending (1001)
SCALE_DOWN = "scale_down"  # the load shape asks for fewer clients (1000)
CHURN = "churn"  # a churn stage recycles the connection (1000)
ZOMBIE = "zombie"  # heartbeats unanswered max_missed times (1001 per RFC 6455 7.4.1)


@dataclass(frozen=True)
class Evidence:
    """What the client knew when the connection ended. Ages in seconds,
    None when the thing never happened on this connection."""

    age: float  # how long the connection had been open
    last_pong_age: float | None
    last_frame_age: float | None
    consecutive_missed: int
    pings_pending: int


@dataclass(frozen=True)
class CloseInfo:
    initiator: str  # CLIENT, SERVER or TRANSPORT
    code: int | None = None  # the close code received or sent; 1006 for transport loss
    reason: str = ""
    transport: str | None = None  # "eof" or "reset" when the network lost it
    cause: str | None = None  # for CLIENT: SHUTDOWN, SCALE_DOWN, CHURN or ZOMBIE
    evidence: Evidence | None = None


def reason_key(info: CloseInfo) -> str:
    if info.initiator == CLIENT:
        return f"client_{info.cause}"
    if info.initiator == SERVER:
        return f"server_{info.code}"
    return f"transport_{info.transport}"
