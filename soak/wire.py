"""Pure: wire-true RTT from the kernel's receive timestamps.

On Linux a TCP socket with ``SO_TIMESTAMPNS`` set tells ``recvmsg`` when
the kernel received the data it returns (the last segment's software
timestamp, CLOCK_REALTIME, in a ``SCM_TIMESTAMPNS`` control message).
soak's schedule runs on a monotonic clock. :class:`WireClock` maps the one
onto the other at each read, with the offset ``realtime - monotonic`` taken
right then; it never lets a wall-clock step corrupt a sample:

- the offset is remembered from read to read; NTP slews it by at most
  500 ppm (``ntpd``'s and chrony's limit), so a change larger than
  :data:`STEP_S` plus 500 ppm of the time since the previous read is a
  step (``date -s``, a VM resumed, chrony's ``makestep``);
- the samples of the read in which a step is seen are not recorded as RTT
  (the kernel's stamp and the offset may straddle the step): they are
  counted (``dropped_samples`` of ``rtt_wire``) and the step in
  ``clock_steps``.

With the receive time mapped to the monotonic clock:

- ``rtt_wire`` = kernel receive time of the pong - kernel transmit time of
  the ping: the software transmit timestamp (``SO_TIMESTAMPING``,
  ``SOF_TIMESTAMPING_TX_SOFTWARE``, taken where the packet leaves for the
  device, where tcpdump sees it too), read from the socket's error queue
  and matched to the ping by the offset of its last byte (``OPT_ID``).
  Where none comes (a ping written in parts, a kernel that does not stamp)
  the moment the ping's send call started stands in for it;
- ``rx_delay`` = when soak's code read it - kernel receive time: the
  tester's own delay on the way in, one more measure of the tester, never
  the gateway's.
"""

from __future__ import annotations

import struct

# the socket options and control messages (Linux; Python does not export them)
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
SO_TIMESTAMPING = 37
SOL_SOCKET = 1
# software transmit timestamps, each tagged with the offset of the last byte
# of its write (OPT_ID), the timestamp alone on the error queue (OPT_TSONLY);
# with SO_TIMESTAMPNS set they come as SCM_TIMESTAMPNS
TX_TIMESTAMPING = (1 << 1) | (1 << 4) | (1 << 7) | (1 << 11)
# the error queue's extended error (IP_RECVERR, IPV6_RECVERR): its origin
# says "a timestamp", its ee_data is the OPT_ID
RECVERR = {(0, 11), (41, 25)}
SO_EE_ORIGIN_TIMESTAMPING = 4
_EXTENDED_ERR = struct.Struct("@IBBBBII")
_TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux
ANCILLARY_SIZE = 64  # room for a timestamp (and the SCM_TIMESTAMPING beside it)
ERRQUEUE_SIZE = 128
MAX_TX_WAITING = 64  # heartbeats waiting for their transmit time, per connection

STEP_S = 0.001  # a jump of the wall clock larger than this (plus slew) is a step
MAX_SLEW = 500e-6  # the fastest an NTP daemon slews the clock, seconds per second


def kernel_time(ancdata: list[tuple[int, int, bytes]]) -> float | None:
    """The kernel's receive time (epoch seconds) in a recvmsg's control
    messages, or None when it is not there."""
    for level, kind, data in ancdata:
        if level == SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return float(sec + nsec * 1e-9)
    return None


def transmit_time(ancdata: list[tuple[int, int, bytes]]) -> tuple[int, float] | None:
    """(the OPT_ID: offset of the write's last byte, epoch seconds) of one
    error-queue message, or None when it is not a transmit timestamp."""
    when = kernel_time(ancdata)
    if when is None:
        return None
    for level, kind, data in ancdata:
        if (level, kind) in RECVERR and len(data) >= _EXTENDED_ERR.size:
            _errno, origin, _t, _c, _p, _info, ident = _EXTENDED_ERR.unpack_from(data)
            if origin == SO_EE_ORIGIN_TIMESTAMPING:
                return ident, when
    return None


class WireClock:
    """Maps kernel receive times onto the run's monotonic clock (one per
    run; see the module)."""

    __slots__ = ("at", "offset", "steps")

    def __init__(self) -> None:
        self.offset: float | None = None  # realtime - monotonic at the last read
        self.at = 0.0  # monotonic time of the last read
        self.steps = 0  # wall-clock steps seen

    def observe(self, real: float, mono: float) -> bool:
        """A read at monotonic ``mono``, when the wall clock said ``real``.
        False when the wall clock stepped since the previous read: the
        read's samples are not to be trusted."""
        offset = real - mono
        last = self.offset
        self.offset = offset
        previous, self.at = self.at, mono
        if last is None:
            return True
        if abs(offset - last) > STEP_S + MAX_SLEW * max(0.0, mono - previous):
            self.steps += 1
            return False
        return True

    def to_monotonic(self, real: float) -> float:
        """A kernel time (epoch seconds) on the run's monotonic clock, by
        the offset of the last read."""
        assert self.offset is not None
        return real - self.offset
