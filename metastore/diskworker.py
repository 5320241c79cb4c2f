"""The member's disk worker: blocking WAL work off the reactor thread."""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable

from twisted.internet import defer
from twisted.python.failure import Failure

from metastore.measure import UNMEASURED, Observer
from metastore.storage.wal import WAL

FAST_FSYNC_SECONDS = 0.002
"""Past this, a follower's fsync goes back to the disk thread, so that a slow
disk does not hold its reactor thread (client requests, heartbeats)."""

RunBlocking = Callable[[Callable[[], None]], defer.Deferred]


class DiskThread:
    """One thread that runs jobs in order and fires each job's Deferred in
    the reactor thread.

    Lighter than Twisted's thread pool (no team coordinator, no context
    copy, no lock-and-condition queue): one ``SimpleQueue.put`` to hand a
    job over and one ``callFromThread`` to hand its result back, which
    matters because a member hands over one fsync per Ready cycle."""

    def __init__(self, reactor, name: str) -> None:
        self._reactor = reactor
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def run(self, f: Callable[[], object]) -> defer.Deferred:
        """Queue ``f``; the Deferred fires (in the reactor thread) with its
        result or its failure."""
        d: defer.Deferred = defer.Deferred()
        self._jobs.put((f, d))
        return d

    def _work(self) -> None:
        jobs, call_from_thread = self._jobs, self._reactor.callFromThread
        while True:
            job = jobs.get()
            if job is None:
                return
            f, d = job
            try:
                result = f()
            except BaseException:
                call_from_thread(d.errback, Failure())
            else:
                call_from_thread(d.callback, result)

    def stop(self) -> None:
        """Let the queued jobs finish, then end the thread (blocking)."""
        self._jobs.put(None)
        self._thread.join()


class DiskWorker:
    """Runs blocking disk work (WAL fsyncs, segment release, engine syncs)
    on one thread of its own, one job at a time and in order, so the
    reactor thread never waits on the disk.  ``run_blocking`` replaces the
    thread (tests run the work at once)."""

    def __init__(self, reactor, wal: WAL, run_blocking: RunBlocking | None = None) -> None:
        self._reactor = reactor
        self._wal = wal
        self._run_blocking = run_blocking
        self._thread: DiskThread | None = None
        self.wal_syncs = 0
        """WAL fsyncs done by this process (group commit: many writes share one)."""
        self.fsync_seconds: Observer = UNMEASURED
        """Records how long each WAL fsync took."""
        self.last_fsync_seconds = 0.0
        self.fast_fsync_seconds = FAST_FSYNC_SECONDS
        """The longest WAL fsync still called fast (``fsyncs_are_fast``)."""

    @property
    def fsyncs_are_fast(self) -> bool:
        """Whether the last WAL fsync took at most ``fast_fsync_seconds``: a
        caller may then sync on its own thread (``sync_wal``) instead of
        through ``run``, blocking no longer than that."""
        return self.last_fsync_seconds <= self.fast_fsync_seconds

    def run(self, f: Callable[[], None]) -> defer.Deferred:
        """Run ``f`` on the worker thread; fires with its result."""
        if self._run_blocking is None:
            self._thread = DiskThread(self._reactor, "metastore-fsync")
            self._run_blocking = self._thread.run
        return self._run_blocking(f)

    def sync_wal(self) -> None:
        """Make every WAL write so far durable (blocking: call it through
        ``run``, or directly while ``fsyncs_are_fast``)."""
        started = time.perf_counter()
        try:
            self._wal.sync()
        finally:
            self.last_fsync_seconds = elapsed = time.perf_counter() - started
        self.fsync_seconds.observe(elapsed)
        self.wal_syncs += 1  # one worker thread syncs at a time: no race

    def stop(self) -> None:
        """Wait for the job in progress, then stop the thread."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None  # jobs run after this are never run, as before
