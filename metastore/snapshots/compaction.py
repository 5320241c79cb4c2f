"""Snapshots and log compaction for one member, as the driver uses them.

``Compaction`` decides when a snapshot is due (``SnapshotPolicy``), takes
one (a file, or for an engine that keeps its applied state, an engine
sync), compacts raft's log behind it, writes the WAL's snapshot marker and
releases the WAL segments it covers, installs a snapshot received from the
leader, and finds the file a ``MsgSnap`` refers to.  Every blocking disk
operation runs through ``run_blocking``, off the reactor thread.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from twisted.internet import defer
from twisted.logger import Logger

from metastore import raft
from metastore.kv.dedup import RecentRequests
from metastore.kv.store import KeyValueStore
from metastore.membership import Membership
from metastore.snapshots.snapshotter import Snapshotter
from metastore.storage.engine import ClusterState
from metastore.storage.wal import WAL, WALError

log = Logger()


class Compaction:
    """Takes and installs snapshots and compacts the logs behind them.

    ``pending_marker`` is the snapshot whose WAL marker is still to be
    written: the driver runs ``compact_wal`` as a cycle of its own before
    its next Ready.  ``restoring`` is true while a received snapshot
    replaces the keyspace."""

    def __init__(
        self,
        *,
        snapshotter: Snapshotter,
        raft_storage: raft.MemoryStorage,
        wal: WAL,
        store: KeyValueStore,
        membership: Membership,
        recent_requests: RecentRequests,
        conf_state: Callable[[], raft.ConfState],
        sync_wal: Callable[[], None],
        run_blocking: Callable[[Callable[[], None]], defer.Deferred],
    ) -> None:
        self.snapshotter = snapshotter
        self._raft_storage = raft_storage
        self._wal = wal
        self._store = store
        self._membership = membership
        self.recent_requests = recent_requests
        """The state machine's memory of recent requests (kept with the membership record)."""
        self._conf_state = conf_state
        self._sync_wal = sync_wal
        self._run_blocking = run_blocking
        self.wake: Callable[[], None] = lambda: None
        """Called when a WAL compaction cycle is due (the driver sets it)."""
        self.pending_marker: raft.SnapshotMetadata | None = None
        self.restoring = False

    @property
    def snapshot_index(self) -> int:
        """The index of the newest snapshot this member has."""
        return self.snapshotter.snapshot_index

    def _record(self) -> ClusterState:
        record = self._membership.record(self._conf_state())
        return replace(record, requests=self.recent_requests.entries())

    def take_snapshot(self) -> defer.Deferred:
        """Write a snapshot file of the applied state now; fires with its
        index once the file is durable and the log is compacted behind it."""
        if self.snapshotter.in_progress:
            return defer.fail(RuntimeError("a snapshot is already being taken"))
        index = self._store.applied_index
        term = self._raft_storage.term(index)
        if self.snapshotter.path_for(term, index):
            return defer.succeed(index)  # nothing applied since that file
        d = self.snapshotter.take(self._store.engine, index, term, self._record())
        d.addCallback(lambda header: self._compact_behind(header.index, header.cluster_state))
        d.addCallback(lambda index: (self.snapshotter.prune(), index)[1])
        return d

    def _checkpoint(self) -> defer.Deferred:
        """For an engine that keeps its applied state: make it durable and
        compact the log behind it, without writing a snapshot file."""
        index = self._store.applied_index
        cluster = self._record()
        d = self.snapshotter.checkpoint(self._store.engine, index)
        d.addCallback(lambda _: self._compact_behind(index, cluster))
        return d

    def maybe_snapshot(self) -> None:
        """Start a snapshot (or engine checkpoint) if the policy says one is due."""
        if not self.snapshotter.due(self._store.applied_index):
            return
        d = self._checkpoint() if self._store.engine.keeps_applied_state else self.take_snapshot()
        d.addErrback(lambda f: log.failure("taking a snapshot failed", f))

    def _compact_behind(self, index: int, cluster: ClusterState) -> int:
        """The state at ``index`` is durable (a file, or the engine itself):
        let raft compact its log, and mark the WAL so it can release segments."""
        conf = raft.ConfState(cluster.voters, cluster.learners)
        try:
            snapshot = self._raft_storage.create_snapshot(index, conf, b"")
        except raft.SnapshotOutOfDateError:
            return index  # a newer snapshot was installed meanwhile
        compact_to = index - self.snapshotter.policy.catchup_entries
        if compact_to > self._raft_storage.first_index():
            self._raft_storage.compact(compact_to)
        self.pending_marker = snapshot.metadata
        self.wake()
        return index

    def compact_wal(self) -> defer.Deferred:
        """Write the pending snapshot marker, then off the reactor thread
        sync the WAL and the engine (which must hold for good what the
        released log no longer does) and release the WAL segments the
        snapshot made unnecessary.  The caller writes nothing else to the
        WAL until this fires; it fails only when the WAL or engine failed."""
        marker = self.pending_marker
        try:
            self._wal.save_snapshot(marker)
        except WALError as e:
            return defer.fail(e)
        keep_from = max(1, marker.index - self.snapshotter.policy.catchup_entries)

        def sync_and_release() -> None:
            self._sync_wal()
            self._store.engine.sync()
            try:
                self._wal.release_to(keep_from)
            except (WALError, ValueError) as e:
                log.warn("could not release old WAL segments: {e}", e=e)

        def released(_):
            if self.pending_marker is marker:
                self.pending_marker = None

        return self._run_blocking(sync_and_release).addCallback(released)

    def install(self, snapshot: raft.Snapshot) -> defer.Deferred:
        """Replace the keyspace and the membership with a snapshot received
        from the leader, mark it in the WAL and in raft's storage; fires
        once done (serializable reads see ``restoring`` until then)."""
        meta = snapshot.metadata
        self.restoring = True
        d = self.snapshotter.install(self._store.engine, meta.term, meta.index)

        def installed(header) -> None:
            if self.pending_marker is not None and self.pending_marker.index <= meta.index:
                self.pending_marker = None  # superseded by the installed snapshot
            self._membership.restore(header.cluster_state)
            self.recent_requests.restore(header.cluster_state.requests)
            self._wal.save_snapshot(meta)
            self._raft_storage.apply_snapshot(snapshot)
            self.snapshotter.snapshot_index = max(self.snapshotter.snapshot_index, meta.index)
            log.info("installed snapshot at index {i}", i=meta.index)

        def done(result):
            self.restoring = False
            return result

        return d.addCallback(installed).addBoth(done)

    def stream(self, m: raft.Message, transport) -> defer.Deferred:
        """Stream the snapshot file ``m`` (a MsgSnap) refers to; fires with
        whether it was delivered.  When there is no such file (raft's
        snapshot may be a RocksDB engine's own state) it fires False at once
        and starts writing one: raft retries the follower and finds it."""
        meta = m.snapshot.metadata
        path = self.snapshotter.path_for(meta.term, meta.index)
        if path is None:
            log.info("no snapshot file for index {i}; taking one for member {to}", i=meta.index, to=m.to)
            if not self.snapshotter.in_progress:
                self.take_snapshot().addErrback(lambda f: log.failure("taking a snapshot failed", f))
            return defer.succeed(False)
        d = transport.send_snapshot(m, path)
        d.addErrback(lambda f: log.failure("sending a snapshot failed", f) or False)
        return d

    def stop(self) -> None:
        """Stop the snapshot worker thread (waits for a write in progress)."""
        self.snapshotter.stop()
