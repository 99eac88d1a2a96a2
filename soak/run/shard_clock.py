"""The kernel's clock-sync state, read with ``adjtimex(2)`` (``modes = 0``:
read only), for a shard of a run over several machines.

Shards line up their intervals by a wall-clock start (``--start-at``), so a
shard's figures are only as well aligned as its host's clock is to the
others'. The kernel knows whether NTP (or chrony, or PTP) disciplines it:
``STA_UNSYNC`` in the status word means nothing does, and ``maxerror`` is
its own bound on the error. :func:`read_clock` reads both; the pure
:func:`clock_warning` decides what a shard says about them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import asdict, dataclass
from typing import Any

STA_UNSYNC = 0x0040
TIME_ERROR = 5
# beyond this bound on the clock's error, intervals across hosts may be
# misaligned by a noticeable part of a 1 s storm window
MAX_ERROR_S = 0.1


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    # struct timex (linux/timex.h); the padding at the end is part of the ABI
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_padding", ctypes.c_int * 11),
    ]


@dataclass(frozen=True)
class ClockState:
    """``synchronised`` None: unknown (no adjtimex here; ``error`` says why)."""

    synchronised: bool | None
    maxerror_s: float | None = None
    esterror_s: float | None = None
    state: int | None = None  # adjtimex's return: 0 TIME_OK ... 5 TIME_ERROR
    error: str | None = None

    def record(self) -> dict[str, Any]:
        return asdict(self)


def read_clock() -> ClockState:
    """This host's clock state, never raising."""
    name = ctypes.util.find_library("c")
    if name is None:
        return ClockState(None, error="no C library to call adjtimex with")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        tx = _Timex()
        tx.modes = 0
        state = int(libc.adjtimex(ctypes.byref(tx)))
    except (OSError, AttributeError) as exc:
        return ClockState(None, error=f"adjtimex unavailable: {exc}")
    if state < 0:
        return ClockState(None, error=f"adjtimex failed: errno {ctypes.get_errno()}")
    return clock_state(state, int(tx.status), int(tx.maxerror), int(tx.esterror))


def clock_state(state: int, status: int, maxerror_us: int, esterror_us: int) -> ClockState:
    """Pure: adjtimex's answer as a :class:`ClockState`."""
    synced = not (status & STA_UNSYNC) and state != TIME_ERROR
    return ClockState(synced, maxerror_us / 1e6, esterror_us / 1e6, state)


def clock_warning(clock: ClockState) -> str | None:
    """Pure: what a shard (and soak merge) says about its clock, or None."""
    if clock.synchronised is None:
        return f"the clock's sync state is unknown ({clock.error}); intervals may not line up"
    if not clock.synchronised:
        err = "" if clock.maxerror_s is None else f", max error {clock.maxerror_s:g} s"
        return (
            "the kernel says this clock is not synchronised (adjtimex: STA_UNSYNC"
            f"{err}); shards' intervals line up only as well as their clocks: run NTP or chrony"
        )
    if clock.maxerror_s is not None and clock.maxerror_s > MAX_ERROR_S:
        return (
            f"the clock's max error is {clock.maxerror_s:g} s (over {MAX_ERROR_S:g} s); "
            "shards' intervals may not line up"
        )
    return None
