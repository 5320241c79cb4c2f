"""The driver: the one place where the Raft core meets the reactor.

It feeds ticks, peer messages, proposals and read requests into a
``RawNode``, and runs one Ready cycle at a time:

1. write the Ready's hard state and entries to the WAL (reactor thread);
2. as leader, send appends and heartbeats at once, in parallel with the
   local fsync (the leader only counts its own entries once persisted);
3. apply committed entries that were already durable here;
4. fsync off the reactor thread when the Ready needs it; proposals that
   arrive meanwhile pile up into the next Ready (group commit);
5. send everything else, apply the rest, serve read states, ``advance``.

A request's Deferred fires only after its entry is committed and applied
on this member, so the caller's next read here sees its write.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import replace
from typing import Callable, Sequence

from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from metastore import raft
from metastore.errors import ChangeRefused, NoLeader, RequestTimedOut, StorageFailed, Stopping
from metastore.kv.commands import (
    Command,
    CommandError,
    PublishMember,
    decode_command,
    encode_command,
)
from metastore.kv.store import KeyValueStore, Result
from metastore.raft.types import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    Message,
    MessageType,
    StateType,
)
from metastore.snapshotting import Snapshotter
from metastore.storage.engine import ClusterState, MemberRecord
from metastore.storage.wal import WAL, WALError
from metastore.waiters import AppliedWaiters, PendingRequests, ReadBatch, fail_after

log = Logger()

_SENT_BEFORE_FSYNC = frozenset(
    {MessageType.MsgApp, MessageType.MsgHeartbeat, MessageType.MsgSnap}
)


class Node(service.Service):
    """A MetaStore member's driver; a Twisted service.

    ``propose`` and ``read_barrier`` return Deferreds that fail with
    ``metastore.errors.Unavailable`` subclasses when the cluster cannot
    answer in time; nothing is acknowledged before it is on disk.
    """

    def __init__(
        self,
        *,
        member_id: int,
        reactor,
        rawnode: raft.RawNode,
        raft_storage: raft.MemoryStorage,
        wal: WAL,
        store: KeyValueStore,
        initial_urls: dict[int, str],
        tick_seconds: float,
        election_ticks: int,
        request_timeout: float,
        transport=None,
        run_blocking: Callable[[Callable[[], None]], defer.Deferred] | None = None,
        snapshotter: Snapshotter | None = None,
    ) -> None:
        self.member_id = member_id
        self.reactor = reactor
        self.rawnode = rawnode
        self.raft_storage = raft_storage
        self.wal = wal
        self.store = store
        self.initial_urls = initial_urls
        self.members: dict[int, MemberRecord] = {}
        self.snapshotter = snapshotter
        self._pending_marker: raft.SnapshotMetadata | None = None
        self._cluster_changed = False
        self.restoring = False
        """True while a received snapshot replaces the keyspace."""
        self.start_applied_index = store.applied_index
        """The applied index this process started from (an engine's own, or a snapshot's)."""
        self.first_applied_index: int | None = None
        """The index of the first entry this process applied."""
        self.wal_syncs = 0
        """WAL fsyncs done by this process (group commit: many writes share one)."""
        self.transport = transport
        self.request_timeout = request_timeout
        self._tick_seconds = tick_seconds
        self._election_ticks = election_ticks
        self._run_blocking = run_blocking
        self._threadpool: ThreadPool | None = None
        self._pending = PendingRequests(reactor, request_timeout)
        self._applied_waiters = AppliedWaiters()
        self._read_batches: dict[bytes, ReadBatch] = {}
        self._next_reads: list[defer.Deferred] = []
        self._boot_id = os.urandom(8)
        self._sequence = itertools.count(1)
        self._ticks = 0
        self._ticker: task.LoopingCall | None = None
        self._cycle_scheduled = False
        self._cycle_running = False
        self._persisted_index = raft_storage.last_index()
        self.leader_id = 0
        self.role = StateType.StateFollower
        self.failure: Exception | None = None
        self.removed = False
        self.on_removed: Callable[[], None] | None = None
        self.client_url = ""
        self._publishing = False
        self._removed_ids: set[int] = set()
        self._membership_waiters: dict[tuple[int, int], list[defer.Deferred]] = {}
        if store.engine.cluster_state is not None:
            self._restore_members(store.engine.cluster_state)

    # -- service --------------------------------------------------------

    def startService(self) -> None:
        """Start ticking and processing; campaigns at once when alone."""
        super().startService()
        if self._run_blocking is None:
            # fsync runs here, off the reactor thread; one at a time.
            pool = ThreadPool(minthreads=1, maxthreads=1, name="metastore-fsync")
            pool.start()
            self._threadpool = pool
            self._run_blocking = lambda f: threads.deferToThreadPool(self.reactor, pool, f)
        if self.transport is not None:
            for peer_id, url in self._peer_urls().items():
                if peer_id != self.member_id and url:
                    self.transport.add_peer(peer_id, url)
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = self.reactor
        self._ticker.start(self._tick_seconds, now=False)
        self._schedule_cycle()

    def stopService(self):
        """Stop ticking, fail whatever waits, wait for the worker threads
        (an fsync or a snapshot in progress), then close the WAL and the engine."""
        super().stopService()
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        error = Stopping("the member is shutting down")
        self._pending.fail_all(error)
        self._fail_reads(error)
        if self._threadpool is not None:
            self._threadpool.stop()
            self._threadpool = None
        if self.snapshotter is not None:
            self.snapshotter.stop()
        self.wal.close()
        self.store.engine.close()

    # -- requests -------------------------------------------------------

    def propose(self, command: Command) -> defer.Deferred:
        """Replicate ``command``; fires with its ``Result`` once applied here."""
        if self.failure is not None:
            return defer.fail(StorageFailed(str(self.failure)))
        if not self.running:
            return defer.fail(Stopping("the member is not running"))
        request_id = self._new_id()
        try:
            self.rawnode.propose(encode_command(request_id, command))
        except raft.ProposalDropped as e:
            return defer.fail(NoLeader(f"proposal dropped: {e}"))
        d = self._pending.add(request_id)
        self._schedule_cycle()
        return d

    def _new_id(self) -> bytes:
        """An id unique across the cluster and across restarts (random per
        process, then a counter): for proposals and ReadIndex contexts."""
        return self._boot_id + next(self._sequence).to_bytes(8, "big")

    def change_membership(self, change: ConfChange) -> defer.Deferred:
        """Propose a single-step membership change; fires once it is applied
        here, fails with ``Unavailable`` when refused or timed out."""
        if self.failure is not None:
            return defer.fail(StorageFailed(str(self.failure)))
        try:
            self.rawnode.propose_conf_change(change)
        except raft.ProposalDropped as e:
            return defer.fail(ChangeRefused(f"membership change refused for now: {e}"))
        d = defer.Deferred()
        self._membership_waiters.setdefault((int(change.type), change.node_id), []).append(d)
        self._schedule_cycle()
        error = RequestTimedOut("the membership change timed out; it may still apply")
        return fail_after(d, self.request_timeout, self.reactor, error)

    def _peer_urls(self) -> dict[int, str]:
        """Who the peers are: the applied membership once it is known
        (restored or replayed), the --cluster list before that."""
        if self.members:
            return {i: m.peer_url for i, m in self.members.items()}
        return dict(self.initial_urls)

    def was_removed(self, peer_id: int) -> bool:
        """Whether ``peer_id`` was removed from the cluster (as applied here,
        or absent from a known membership although --cluster lists it)."""
        if peer_id in self._removed_ids:
            return True
        return bool(self.members) and peer_id in self.initial_urls and peer_id not in self.members

    def removed_by_peer(self, peer_id: int) -> None:
        """A member that applied our removal told us so: leave.  (The
        removal entry itself may never reach a removed follower.)"""
        if not self.removed and self.running:
            log.info("member {peer} reports that member {id} was removed", peer=peer_id, id=self.member_id)
            self.removed = True
            if not self._cycle_running:
                self._leave_cluster()

    def accepts_peer(self, peer_id: int) -> bool:
        """Whether a peer connection from ``peer_id`` may be accepted."""
        return peer_id in self._peer_urls() and peer_id not in self._removed_ids

    def read_barrier(self) -> defer.Deferred:
        """Fires once local state reflects every write acknowledged before
        this call (linearizable read, through batched ReadIndex)."""
        if self.failure is not None:
            if self.sole_voter:
                # Nothing can commit without this member, so what it applied
                # is the newest state there is.
                return defer.succeed(self.store.applied_index)
            return defer.fail(StorageFailed(str(self.failure)))
        if not self.running:
            return defer.fail(Stopping("the member is not running"))
        d = defer.Deferred()
        self._next_reads.append(d)
        self._maybe_start_read_round()
        return fail_after(d, self.request_timeout, self.reactor, RequestTimedOut("the linearizable read timed out"))

    def _maybe_start_read_round(self) -> None:
        if not self._next_reads:
            return
        stale = self._ticks - self._election_ticks
        if any(b.started_tick > stale for b in self._read_batches.values()):
            return  # a fresh round is in flight; these reads join the next one
        if self.leader_id == 0:
            return  # retried on the next tick; the reads time out if none comes
        batch = ReadBatch(self._new_id(), self._ticks)
        batch.waiters, self._next_reads = self._next_reads, []
        self._read_batches[batch.context] = batch
        self.rawnode.read_index(batch.context)
        self._schedule_cycle()

    def _maybe_publish_client_url(self) -> None:
        """Make this member's client URL part of the replicated membership
        (as etcd publishes its attributes), retrying until it is applied."""
        me = self.members.get(self.member_id)
        if self._publishing or not self.client_url or me is None or self.leader_id == 0:
            return
        if me.client_url == self.client_url:
            return
        self._publishing = True
        d = self.propose(PublishMember(self.member_id, self.client_url))
        d.addErrback(lambda f: log.debug("publishing the client URL failed, will retry: {f}", f=f.value))
        d.addBoth(lambda _: setattr(self, "_publishing", False))

    def _fail_reads(self, error: Exception) -> None:
        waiting = self._next_reads + [d for b in self._read_batches.values() for d in b.waiters]
        self._next_reads, self._read_batches = [], {}
        for d in waiting:
            if not d.called:
                d.errback(error)
        self._applied_waiters.fail_all(error)

    # -- inputs from the transport ---------------------------------------

    def receive(self, messages: Sequence[Message]) -> None:
        """Step messages that arrived from peers."""
        if self.failure is not None:
            return
        for m in messages:
            try:
                self.rawnode.step(m)
            except raft.RaftError as e:  # a stale or misdirected message
                log.debug("dropped message {m}: {e}", m=m.type, e=e)
        self._schedule_cycle()

    def report_unreachable(self, peer_id: int) -> None:
        """The transport lost the link to ``peer_id`` or dropped its messages."""
        self.rawnode.report_unreachable(peer_id)
        self._schedule_cycle()

    # -- the Ready cycle --------------------------------------------------

    def _tick(self) -> None:
        if self.failure is not None:
            return
        self._ticks += 1
        self.rawnode.tick()
        self._maybe_start_read_round()
        self._maybe_publish_client_url()
        self._schedule_cycle()

    def _schedule_cycle(self) -> None:
        if not self._cycle_scheduled and not self._cycle_running:
            self._cycle_scheduled = True
            self.reactor.callLater(0, self._run_cycles)

    def _run_cycles(self) -> None:
        self._cycle_scheduled = False
        if self._cycle_running or self.failure is not None or not self.running:
            return
        if self._pending_marker is not None:
            self._cycle_running = True
            self._compact_wal()
        elif self.rawnode.has_ready():
            self._cycle_running = True
            self._start_cycle(self.rawnode.ready())

    def _start_cycle(self, rd: raft.Ready) -> None:
        if rd.soft_state is not None:
            self._observe_soft_state(rd.soft_state)
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            d = self._install_snapshot(rd.snapshot)
            d.addCallbacks(lambda _: self._persist_and_send(rd), lambda f: self._fail_storage(f.value))
        else:
            self._persist_and_send(rd)

    def _persist_and_send(self, rd: raft.Ready) -> None:
        try:
            if rd.hard_state is not None or rd.entries:
                self.wal.save(rd.hard_state, rd.entries)
            if rd.entries:
                self.raft_storage.append(rd.entries)
            if rd.hard_state is not None:
                self.raft_storage.set_hard_state(rd.hard_state)
        except Exception as e:  # WALError, or a broken invariant: stop acknowledging, loudly
            self._fail_storage(e)
            return
        early = [m for m in rd.messages if m.type in _SENT_BEFORE_FSYNC]
        late = [m for m in rd.messages if m.type not in _SENT_BEFORE_FSYNC]
        self._send(early)
        durable = [e for e in rd.committed_entries if e.index <= self._persisted_index]
        self._apply(durable)
        rest = rd.committed_entries[len(durable):]
        if rd.must_sync:
            d = self._run_blocking(self._sync_wal)
            d.addCallbacks(lambda _: self._finish_cycle(rd, late, rest), lambda f: self._fail_storage(f.value))
        else:
            self._finish_cycle(rd, late, rest)

    def _finish_cycle(self, rd: raft.Ready, late: list[Message], rest: Sequence[Entry]) -> None:
        if not self.running:
            return
        if rd.entries:
            self._persisted_index = rd.entries[-1].index
        self._send(late)
        self._apply(rest)
        for read_state in rd.read_states:
            self._serve_read_state(read_state)
        self.rawnode.advance(rd)
        self._cycle_running = False
        self._maybe_snapshot()
        if self.leader_id == 0 and self.sole_voter:
            # A cluster of one need not wait an election timeout for its
            # leader; raft refuses to campaign until its membership entries
            # are applied, which is why this comes after a cycle.
            self.rawnode.campaign()
        if self.removed:
            self._leave_cluster()
            return
        self._schedule_cycle()

    def _observe_soft_state(self, soft: raft.SoftState) -> None:
        was_leader = self.role == StateType.StateLeader
        self.leader_id, self.role = soft.lead, soft.raft_state
        if was_leader and self.role != StateType.StateLeader:
            log.info("member {id} is no longer the leader", id=self.member_id)
        elif self.role == StateType.StateLeader and not was_leader:
            log.info("member {id} became the leader", id=self.member_id)

    def _send(self, messages: list[Message]) -> None:
        if not messages or self.transport is None:
            return
        snapshots = [m for m in messages if m.type == MessageType.MsgSnap]
        if snapshots:
            messages = [m for m in messages if m.type != MessageType.MsgSnap]
            for m in snapshots:
                self._send_snapshot(m)
        if messages:
            self.transport.send(messages)

    def _send_snapshot(self, m: Message) -> None:
        """Stream the snapshot file a MsgSnap refers to; tell raft how it went."""
        meta = m.snapshot.metadata
        path = self.snapshotter.path_for(meta.term, meta.index) if self.snapshotter else None
        if path is None:
            # Raft's snapshot may be the engine's own state (a RocksDB restart):
            # write a file now; raft retries the follower and finds it.
            log.info("no snapshot file for index {i}; taking one for member {to}", i=meta.index, to=m.to)
            self.rawnode.report_snapshot(m.to, False)
            if self.snapshotter is not None and not self.snapshotter.in_progress:
                self.take_snapshot().addErrback(lambda f: log.failure("taking a snapshot failed", f))
            return
        d = self.transport.send_snapshot(m, path)

        def sent(ok: bool) -> None:
            if self.running:
                self.rawnode.report_snapshot(m.to, ok)
                self._schedule_cycle()

        d.addCallback(sent)
        d.addErrback(lambda f: log.failure("sending a snapshot failed", f) or sent(False))

    def _serve_read_state(self, read_state: raft.ReadState) -> None:
        batch = self._read_batches.pop(read_state.request_ctx, None)
        if batch is None:
            return
        for d in batch.waiters:
            if not d.called:
                self._applied_waiters.wait(read_state.index).chainDeferred(d)
        self._applied_waiters.reached(self.store.applied_index)
        self._maybe_start_read_round()

    # -- apply ----------------------------------------------------------

    def _apply(self, entries: Sequence[Entry]) -> None:
        """Apply committed entries in log order and answer their waiters."""
        if not entries:
            return
        if self.first_applied_index is None:
            self.first_applied_index = entries[0].index
        run: list[tuple[bytes | None, Command | None]] = []
        for entry in entries:
            if entry.type == EntryType.EntryConfChange:
                self._apply_commands(run, entry.index - 1)
                run = []
                self._apply_conf_change(entry)
                self._apply_commands([(None, None)], entry.index)
            else:
                run.append(self._decode(entry))
        self._apply_commands(run, entries[-1].index)
        self._applied_waiters.reached(self.store.applied_index)

    def _decode(self, entry: Entry) -> tuple[bytes | None, Command | None]:
        if not entry.data:
            return None, None  # a new leader's empty entry
        try:
            request_id, command = decode_command(entry.data)
        except CommandError as e:
            # Every member skips the same entry, so state stays identical.
            log.error("entry {i} holds no valid command, skipped: {e}", i=entry.index, e=e)
            return None, None
        if isinstance(command, PublishMember):
            known = self.members.get(command.member_id)
            if known is not None:
                self.members[command.member_id] = replace(known, client_url=command.client_url)
                self._cluster_changed = True
            self._pending.resolve(request_id, None)
            return None, None
        return request_id, command

    def _apply_commands(self, run: list[tuple[bytes | None, Command | None]], index: int) -> None:
        if not run:
            return
        cluster_state = None
        if self._cluster_changed:
            cluster_state, self._cluster_changed = self.cluster_state(), False
        results: list[Result | None] = self.store.apply(index, [c for _, c in run], cluster_state)
        for (request_id, _), result in zip(run, results):
            if request_id is not None:
                self._pending.resolve(request_id, result)

    def _apply_conf_change(self, entry: Entry) -> None:
        change = raft.decode_conf_change(entry.data)
        self.rawnode.apply_conf_change(change)
        self._cluster_changed = True
        for d in self._membership_waiters.pop((int(change.type), change.node_id), []):
            if not d.called:
                d.callback(change)
        if change.type == ConfChangeType.ConfChangeRemoveNode:
            self.members.pop(change.node_id, None)
            self._removed_ids.add(change.node_id)
            if self.transport is not None and change.node_id != self.member_id:
                self.transport.remove_peer(change.node_id)
            if change.node_id == self.member_id:
                self.removed = True
        else:
            # Bootstrap entries carry no URL: it comes from --cluster.
            url = change.context.decode("utf-8", "replace") or self.initial_urls.get(change.node_id, "")
            learner = change.type == ConfChangeType.ConfChangeAddLearnerNode
            known = self.members.get(change.node_id)
            client_url = known.client_url if known else ""
            self.members[change.node_id] = MemberRecord(change.node_id, url, client_url, learner)
            self._removed_ids.discard(change.node_id)
            if self.transport is not None and change.node_id != self.member_id:
                if url:
                    self.transport.add_peer(change.node_id, url)
                else:
                    log.warn("member {id} was added without a peer URL", id=change.node_id)

    # -- snapshots ----------------------------------------------------------

    def cluster_state(self) -> ClusterState:
        """The membership as applied here, in the engine's terms."""
        conf = self.rawnode.status().conf_state
        members = tuple(sorted(self.members.values(), key=lambda m: m.member_id))
        return ClusterState(tuple(conf.voters), tuple(conf.learners), members)

    def _restore_members(self, cluster: ClusterState) -> None:
        self.members = {m.member_id: m for m in cluster.members}
        if self.transport is not None and self.running:
            for m in cluster.members:
                if m.member_id != self.member_id and m.peer_url:
                    self.transport.add_peer(m.member_id, m.peer_url)

    def take_snapshot(self) -> defer.Deferred:
        """Write a snapshot file of the applied state now; fires with its
        index once the file is durable and the log is compacted behind it."""
        if self.snapshotter is None:
            return defer.fail(RuntimeError("this member keeps no snapshots"))
        if self.snapshotter.in_progress:
            return defer.fail(RuntimeError("a snapshot is already being taken"))
        index = self.store.applied_index
        term = self.raft_storage.term(index)
        if self.snapshotter.path_for(term, index):
            return defer.succeed(index)  # nothing applied since that file
        d = self.snapshotter.take(self.store.engine, index, term, self.cluster_state())
        d.addCallback(lambda header: self._compact_behind(header.index, header.cluster_state))
        d.addCallback(lambda index: (self.snapshotter.prune(), index)[1])
        return d

    def _checkpoint(self) -> defer.Deferred:
        """For an engine that keeps its applied state: make it durable and
        compact the log behind it, without writing a snapshot file."""
        index = self.store.applied_index
        cluster = self.cluster_state()
        d = self.snapshotter.checkpoint(self.store.engine, index)
        d.addCallback(lambda _: self._compact_behind(index, cluster))
        return d

    def _maybe_snapshot(self) -> None:
        snapshotter = self.snapshotter
        if snapshotter is None or self.failure is not None or not snapshotter.due(self.store.applied_index):
            return
        d = self._checkpoint() if self.store.engine.keeps_applied_state else self.take_snapshot()
        d.addErrback(lambda f: log.failure("taking a snapshot failed", f))

    def _compact_behind(self, index: int, cluster: ClusterState) -> int:
        """The state at ``index`` is durable (a file, or the engine itself):
        let raft compact its log, and mark the WAL so it can release segments."""
        conf = raft.ConfState(cluster.voters, cluster.learners)
        try:
            snapshot = self.raft_storage.create_snapshot(index, conf, b"")
        except raft.SnapshotOutOfDateError:
            return index  # a newer snapshot was installed meanwhile
        compact_to = index - self.snapshotter.policy.catchup_entries
        if compact_to > self.raft_storage.first_index():
            self.raft_storage.compact(compact_to)
        self._pending_marker = snapshot.metadata
        self._schedule_cycle()
        return index

    def _compact_wal(self) -> None:
        """A cycle of its own, run before the next Ready: write the pending
        snapshot marker, sync the WAL and the engine (which must hold for
        good what the released log no longer does), then release the WAL
        segments the snapshot made unnecessary."""
        marker = self._pending_marker
        try:
            self.wal.save_snapshot(marker)
        except WALError as e:
            self._fail_storage(e)
            return

        def sync_both() -> None:
            self._sync_wal()
            self.store.engine.sync()

        def synced(_):
            self._release_wal(marker)
            self._cycle_running = False
            self._schedule_cycle()

        self._run_blocking(sync_both).addCallbacks(synced, lambda f: self._fail_storage(f.value))

    def _sync_wal(self) -> None:
        self.wal.sync()
        self.wal_syncs += 1  # one worker thread syncs at a time: no race

    def _release_wal(self, marker: raft.SnapshotMetadata) -> None:
        if self._pending_marker is marker:
            self._pending_marker = None
        keep_from = max(1, marker.index - self.snapshotter.policy.catchup_entries)
        try:
            self.wal.release_to(keep_from)
        except (WALError, ValueError) as e:
            log.warn("could not release old WAL segments: {e}", e=e)

    def _install_snapshot(self, snapshot: raft.Snapshot) -> defer.Deferred:
        """Replace the keyspace with a snapshot received from the leader.
        The cycle waits; serializable reads get 503 until it is done."""
        meta = snapshot.metadata
        if self.snapshotter is None:
            return defer.fail(RuntimeError("this member cannot install snapshots"))
        self.restoring = True
        d = self.snapshotter.install(self.store.engine, meta.term, meta.index)

        def installed(header) -> None:
            if self._pending_marker is not None and self._pending_marker.index <= meta.index:
                self._pending_marker = None  # superseded by the installed snapshot
            self._restore_members(header.cluster_state)
            self.wal.save_snapshot(meta)
            self.raft_storage.apply_snapshot(snapshot)
            self.snapshotter.snapshot_index = max(self.snapshotter.snapshot_index, meta.index)
            self._persisted_index = max(self._persisted_index, meta.index)
            log.info("installed snapshot at index {i}", i=meta.index)
            self._applied_waiters.reached(self.store.applied_index)

        def done(result):
            self.restoring = False
            return result

        return d.addCallback(installed).addBoth(done)

    # -- failure and removal -------------------------------------------------

    def _fail_storage(self, error: Exception) -> None:
        """The disk failed: acknowledge nothing more, keep serving what was
        applied to serializable reads, and say so in health."""
        log.critical("storage failed, this member stops accepting writes: {e}", e=error)
        self.failure = error
        self._cycle_running = False
        failure = StorageFailed(f"storage failed: {error}")
        self._pending.fail_all(failure)
        self._fail_reads(failure)
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()

    def _leave_cluster(self) -> None:
        log.info("member {id} was removed from the cluster; shutting down", id=self.member_id)
        # A peer may tell us of our removal before we apply it: answer whoever
        # asked for it here, and fail the other changes waiting, before stopping.
        own_removal = (int(ConfChangeType.ConfChangeRemoveNode), self.member_id)
        waiters, self._membership_waiters = self._membership_waiters, {}
        for key, deferreds in waiters.items():
            for d in deferreds:
                if d.called:
                    continue
                if key == own_removal:
                    d.callback(None)
                else:
                    d.errback(Stopping("this member was removed"))
        if self.on_removed is not None:
            self.on_removed()

    # -- observability ----------------------------------------------------

    @property
    def sole_voter(self) -> bool:
        """Whether this member is the cluster's only voter."""
        return tuple(self.rawnode.status().conf_state.voters) == (self.member_id,)

    @property
    def is_leader(self) -> bool:
        """Whether this member currently leads."""
        return self.role == StateType.StateLeader

    @property
    def applied_index(self) -> int:
        """The raft index applied to the keyspace."""
        return self.store.applied_index

    @property
    def healthy(self) -> bool:
        """Running, disk fine, and a leader known."""
        return self.running and self.failure is None and self.leader_id != 0
