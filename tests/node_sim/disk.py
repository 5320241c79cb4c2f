"""What the simulated members' disks promise: fsyncs that happen when the
schedule says, and crashes that keep only what was fsynced.

``FsyncRecorder`` is the ``fsync`` the members' WAL and snapshot files are
given: it remembers, per file (by inode, so a rename keeps it), the size
that was fsynced, and per directory the names an fsync of it made durable.
``crash`` then turns a member's directories into what a power cut could
leave: unsynced names vanish, files shrink to their synced size or keep a
seeded prefix of what was written after it (a torn tail).
"""

from __future__ import annotations

import os
import random
import stat
from typing import Callable

from twisted.internet import defer


class FsyncRecorder:
    """An ``fsync`` that records what it made durable instead of waiting for a disk."""

    def __init__(self) -> None:
        self._sizes: dict[tuple[int, int], int] = {}
        self._listings: dict[str, set[str]] = {}

    def fsync(self, fd: int) -> None:
        """Record ``fd``'s file size, or for a directory its names, as durable."""
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            path = os.readlink(f"/proc/self/fd/{fd}")
            self._listings[path] = set(os.listdir(path))
        else:
            self._sizes[(st.st_dev, st.st_ino)] = st.st_size

    def crash(self, directories: list[str], rng: random.Random) -> None:
        """Leave ``directories`` as a crash could: names never made durable
        by a directory fsync are gone; each file keeps its synced bytes plus,
        one time in two, a seeded part of what was written after them."""
        for directory in directories:
            if not os.path.isdir(directory):
                continue
            listed = self._listings.get(os.path.realpath(directory))
            for name in sorted(os.listdir(directory)):
                path = os.path.join(directory, name)
                if listed is not None and name not in listed:
                    os.unlink(path)
                    continue
                st = os.stat(path)
                synced = self._sizes.get((st.st_dev, st.st_ino), 0)
                if st.st_size > synced:
                    keep = synced if rng.random() < 0.5 else rng.randint(synced, st.st_size)
                    os.truncate(path, keep)
                    self._sizes[(st.st_dev, st.st_ino)] = keep


class Worker:
    """A worker thread of one member (its disk worker, or its snapshot
    thread): jobs run one at a time, in order, only when the schedule says
    (``run_next``).  A crash drops the jobs that never ran."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.jobs: list[tuple[Callable[[], object], defer.Deferred]] = []

    def __call__(self, f: Callable[[], object]) -> defer.Deferred:
        d = defer.Deferred()
        self.jobs.append((f, d))
        return d

    def run_next(self) -> None:
        """Run the oldest job and fire its Deferred with the outcome."""
        f, d = self.jobs.pop(0)
        try:
            result = f()
        except Exception:
            d.errback()
        else:
            d.callback(result)

    def crash(self) -> None:
        """Forget the jobs that never ran; their Deferreds never fire."""
        self.jobs = []
