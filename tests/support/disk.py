"""A disk that fails on demand, for the results writer
(:class:`soak.results.disk.Disk`): while :attr:`FailingDisk.error` is set,
a write first writes part of its bytes and returns a short count (as a
real filesystem does when it fills mid-write), and the next one raises
``OSError(error)``."""

from __future__ import annotations

import errno
import os

from soak.results.disk import Disk


class FailingDisk(Disk):
    def __init__(self) -> None:
        self.error: int | None = None
        self.failures = 0  # writes that raised
        self._short = False

    def full(self) -> None:
        self.error = errno.ENOSPC

    def free(self) -> None:
        self.error = None

    def write(self, fd: int, data: bytes) -> int:
        if self.error is None:
            return os.write(fd, data)
        if len(data) > 1 and not self._short:
            self._short = True  # half of it lands; the next write fails
            return os.write(fd, data[: len(data) // 2])
        self._short = False
        self.failures += 1
        raise OSError(self.error, os.strerror(self.error))
