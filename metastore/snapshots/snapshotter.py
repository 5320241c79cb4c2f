"""Taking and reading snapshot files for a member, off the reactor thread.

The reactor thread only takes the engine's consistent ``snapshot_items``
(for the memory engine, one list of references) and the header; encoding,
writing and fsyncing happen on a worker thread of their own, so the WAL's
fsyncs never wait behind a snapshot.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from metastore.measure import UNMEASURED, Observer
from metastore.storage.engine import ClusterState, Engine
from metastore.snapshots.format import SnapshotDirectory, SnapshotHeader, restore_from_snapshot, write_snapshot

log = Logger()


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    """When to snapshot and how much log to keep behind a snapshot."""

    count: int = 10_000
    """Applied entries between two automatic snapshots."""
    catchup_entries: int = 5_000
    """Entries kept in the log after compaction, for slow followers."""


class Snapshotter:
    """Writes and reads one member's snapshot files; one write at a time."""

    def __init__(
        self,
        reactor,
        directory: SnapshotDirectory,
        policy: SnapshotPolicy,
        snapshot_index: int = 0,
        fsync: Callable[[int], None] = os.fsync,
        run_blocking: Callable[..., defer.Deferred] | None = None,
    ) -> None:
        self.reactor = reactor
        self.directory = directory
        self.policy = policy
        self.snapshot_index = snapshot_index
        """The index of the newest snapshot this member has (taken or installed)."""
        self.in_progress = False
        self.longest_pause_seconds = 0.0
        """The longest time the reactor thread spent starting a snapshot."""
        self.save_seconds: Observer = UNMEASURED
        """Records how long each snapshot took, from its start until its file was durable."""
        self.install_seconds: Observer = UNMEASURED
        """Records how long each installation of a received snapshot took."""
        self._fsync = fsync
        self._pool: ThreadPool | None = None
        self._run_blocking = run_blocking
        """Replaces the worker thread when given (simulations run the work when they choose)."""

    def due(self, applied_index: int) -> bool:
        """Whether enough entries were applied since the last snapshot."""
        return not self.in_progress and applied_index - self.snapshot_index >= self.policy.count

    def take(self, engine: Engine, index: int, term: int, cluster_state: ClusterState) -> defer.Deferred:
        """Snapshot ``engine`` (whose applied index is ``index``); fires with
        the header once the file is durable."""
        started = time.perf_counter()
        header = SnapshotHeader(
            index=index,
            term=term,
            revision=engine.revision,
            cluster_state=cluster_state,
            compacted_revision=engine.compacted_revision,
            physically_compacted_revision=engine.physically_compacted_revision,
            leases=tuple(engine.leases()),
        )
        items = engine.snapshot_items()
        self.longest_pause_seconds = max(self.longest_pause_seconds, time.perf_counter() - started)
        self.in_progress = True
        d = self._in_thread(write_snapshot, self.directory.directory, header, items, self._fsync)

        def written(path: str) -> SnapshotHeader:
            log.info("snapshot at index {index} written to {path}", index=index, path=path)
            self.save_seconds.observe(time.perf_counter() - started)
            self.snapshot_index = max(self.snapshot_index, index)
            return header

        def done(result):
            self.in_progress = False
            return result

        return d.addCallback(written).addBoth(done)

    def checkpoint(self, engine: Engine, index: int) -> defer.Deferred:
        """Make ``engine`` (one that keeps its applied state) durable up to
        ``index`` on the worker thread; fires once done."""
        self.in_progress = True

        def done(result):
            self.in_progress = False
            if not isinstance(result, Failure):
                self.snapshot_index = max(self.snapshot_index, index)
            return result

        return self._in_thread(engine.sync).addBoth(done)

    def install(self, engine: Engine, term: int, index: int) -> defer.Deferred:
        """Restore ``engine`` from the snapshot file at (term, index) on the
        worker thread; fires with its header.  The caller keeps the reactor
        thread off the engine until then.  Fails with
        ``SnapshotCorruptionError`` or ``OSError``, leaving the engine as it was."""
        started = time.perf_counter()

        def installed(header):
            self.install_seconds.observe(time.perf_counter() - started)
            return header

        d = self._in_thread(restore_from_snapshot, engine, self.directory.path_for(term, index), index)
        return d.addCallback(installed)

    def path_for(self, term: int, index: int) -> str | None:
        """The file of snapshot (term, index), or None when it is not here."""
        path = self.directory.path_for(term, index)
        return path if os.path.exists(path) else None

    def prune(self) -> None:
        """Delete all but the newest ``max_snapshots`` files."""
        for path in self.directory.prune():
            log.info("removed old snapshot {path}", path=path)

    def _in_thread(self, f, *args) -> defer.Deferred:
        if self._run_blocking is not None:
            return self._run_blocking(lambda: f(*args))
        if self._pool is None:
            self._pool = ThreadPool(minthreads=0, maxthreads=1, name="metastore-snapshot")
            self._pool.start()
        return threads.deferToThreadPool(self.reactor, self._pool, f, *args)

    def stop(self) -> None:
        """Stop the worker thread (waits for a write in progress)."""
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
