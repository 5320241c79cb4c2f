"""Shared helpers for the storage tests: entries, segment paths, fault hooks."""

from __future__ import annotations

import errno
import os

from metastore.raft.types import Entry


def entries(first: int, last: int, term: int = 1, size: int = 8) -> list[Entry]:
    """Entries ``first..last`` (inclusive) of ``term``, each with ``size`` bytes of data."""
    return [Entry(term, i, data=bytes([i % 251]) * size) for i in range(first, last + 1)]


def segment_paths(directory: str) -> list[str]:
    """The segment files in ``directory``, in log order."""
    return [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if n.endswith(".wal")]


class FaultySyscalls:
    """Stand-ins for ``os.fsync`` and ``os.write`` that fail once told to.

    ``fail_fsync``/``fail_write`` make the next calls raise ``OSError(ENOSPC)``;
    ``short_write`` makes the next write store only that many bytes before
    the following one fails.
    """

    def __init__(self) -> None:
        """Start passing everything through."""
        self.fail_fsync = False
        self.fail_write = False
        self.short_write: int | None = None
        self.fsyncs = 0

    def fsync(self, fd: int) -> None:
        """Fsync ``fd``, or raise ENOSPC when told to fail."""
        if self.fail_fsync:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        self.fsyncs += 1
        os.fsync(fd)

    def write(self, fd: int, data) -> int:
        """Write ``data`` (perhaps only part of it), or raise ENOSPC when told to fail."""
        if self.short_write is not None:
            n, self.short_write, self.fail_write = self.short_write, None, True
            return os.write(fd, bytes(data[:n]))
        if self.fail_write:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return os.write(fd, data)
