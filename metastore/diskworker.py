"""The member's disk worker: blocking WAL work off the reactor thread."""

from __future__ import annotations

import time
from typing import Callable

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

from metastore.measure import UNMEASURED, Observer
from metastore.storage.wal import WAL

RunBlocking = Callable[[Callable[[], None]], defer.Deferred]


class DiskWorker:
    """Runs blocking disk work (WAL fsyncs, segment release, engine syncs)
    on one thread of its own, one job at a time and in order, so the
    reactor thread never waits on the disk.  ``run_blocking`` replaces the
    thread (tests run the work at once)."""

    def __init__(self, reactor, wal: WAL, run_blocking: RunBlocking | None = None) -> None:
        self._reactor = reactor
        self._wal = wal
        self._run_blocking = run_blocking
        self._pool: ThreadPool | None = None
        self.wal_syncs = 0
        """WAL fsyncs done by this process (group commit: many writes share one)."""
        self.fsync_seconds: Observer = UNMEASURED
        """Records how long each WAL fsync took."""

    def run(self, f: Callable[[], None]) -> defer.Deferred:
        """Run ``f`` on the worker thread; fires with its result."""
        if self._run_blocking is None:
            self._pool = ThreadPool(minthreads=1, maxthreads=1, name="metastore-fsync")
            self._pool.start()
            pool = self._pool
            self._run_blocking = lambda g: threads.deferToThreadPool(self._reactor, pool, g)
        return self._run_blocking(f)

    def sync_wal(self) -> None:
        """Make every WAL write so far durable (blocking: call it through ``run``)."""
        started = time.perf_counter()
        self._wal.sync()
        self.fsync_seconds.observe(time.perf_counter() - started)
        self.wal_syncs += 1  # one worker thread syncs at a time: no race

    def stop(self) -> None:
        """Wait for the job in progress, then stop the thread."""
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
