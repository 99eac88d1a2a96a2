"""The file operations of a results directory, in one small class, so that
a test can make them fail (a full disk, an I/O error) without a real full
disk: :class:`soak.results.writer.RunWriter` makes every call through a
:class:`Disk`.

Append-only files are opened with ``O_APPEND`` on raw descriptors (no
Python buffer that could flush half a line later); each write's bytes are
written whole or, on failure, the file is cut back to the size it had
before (:meth:`Disk.append`), so no half line is ever left behind.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

_CHUNK = 1 << 20


class Disk:
    """The real filesystem."""

    def open(self, path: Path) -> int:
        """A descriptor that appends to ``path`` (created if missing) and
        can read it back. Raises OSError."""
        return os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def close(self, fd: int) -> None:
        try:
            os.close(fd)
        except OSError:
            pass

    def size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def write(self, fd: int, data: bytes) -> int:
        """One write(2); may write fewer bytes than given. Raises OSError."""
        return os.write(fd, data)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def read(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def mkdir(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)

    def same(self, fd: int, path: Path) -> bool:
        """Whether ``path`` is still the file ``fd`` writes (not removed,
        not replaced)."""
        try:
            a, b = os.fstat(fd), os.stat(path)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def replace(self, target: Path, text: str, *, sync: bool) -> None:
        """Write ``target`` whole through a temporary file and a rename: a
        reader sees the old file or the new one, never half of one. On
        failure the temporary file is removed. Raises OSError."""
        tmp = target.with_name(target.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                self.write_all(fd, text.encode("utf-8"))
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    # -- built on the calls above (a test double overrides those) ------------

    def write_all(self, fd: int, data: bytes) -> None:
        """Every byte of ``data``, or OSError."""
        while data:
            n = self.write(fd, data)
            if n <= 0:
                raise OSError(errno.EIO, "write wrote nothing")
            data = data[n:]

    def append(self, fd: int, data: bytes) -> int:
        """Append ``data`` whole, or leave the file as it was and raise
        OSError. Returns the file's size before."""
        before = self.size(fd)
        try:
            self.write_all(fd, data)
        except OSError:
            self.truncate(fd, before)
            raise
        return before

    def copy(self, src: int, dst: int) -> None:
        """What ``src`` holds, appended to ``dst`` (emptied first). Raises
        OSError."""
        self.truncate(dst, 0)
        offset = 0
        while True:
            block = self.read(src, _CHUNK, offset)
            if not block:
                return
            self.write_all(dst, block)
            offset += len(block)
