"""The driver: the Ready loop, the one place where the Raft core meets the reactor.

It feeds ticks, peer messages, proposals and read requests into a
``RawNode`` and runs one Ready cycle at a time (``_run_cycles``):
``_start_cycle`` observes leadership and installs a received snapshot first;
``_persist_and_send`` writes the hard state and entries to the WAL, sends a
leader's appends at once (``raft.MESSAGES_SENT_BEFORE_PERSIST``), hands the
fsync to the disk worker, and applies committed entries already durable here
while it runs (what arrives meanwhile piles up into the next Ready: group
commit); a follower whose disk is fast syncs in the cycle itself instead,
since its acknowledgement waits for that fsync alone;
``_finish_cycle`` hands the durable Ready to raft's storage, sends the rest,
applies the rest (in the next reactor turn when it sent something, so that
the reactor writes it first), serves reads and calls ``advance``.

Its other jobs are collaborators it is given: ``Membership`` (who the
members are), ``Compaction`` (snapshots, log compaction, WAL release),
``Requests`` (admission and waiters), ``EntryApplier`` and ``DiskWorker``.
"""

from __future__ import annotations

from typing import Sequence

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from metastore import raft
from metastore.applier import EntryApplier
from metastore.diskworker import DiskWorker
from metastore.errors import StorageFailed, Stopping
from metastore.kv.commands import Command
from metastore.kv.store import KeyValueStore
from metastore.membership import Membership
from metastore.raft.types import Entry, Message, MessageType, StateType
from metastore.requests import Requests
from metastore.snapshots.compaction import Compaction
from metastore.storage.wal import WAL

log = Logger()


class Node(service.Service):
    """A MetaStore member's driver; a Twisted service.  ``propose`` and
    ``read_barrier`` return Deferreds that fail with ``metastore.errors.
    Unavailable`` subclasses when the cluster cannot answer in time;
    nothing is acknowledged before it is on disk."""

    def __init__(self, *, member_id: int, reactor, rawnode: raft.RawNode, raft_storage: raft.MemoryStorage,
                 wal: WAL, store: KeyValueStore, membership: Membership, compaction: Compaction,
                 disk: DiskWorker, tick_seconds: float, election_ticks: int, request_timeout: float,
                 transport=None) -> None:
        self.member_id = member_id
        self.reactor = reactor
        self.rawnode = rawnode
        self.raft_storage = raft_storage
        self.wal = wal
        self.store = store
        self.membership = membership
        self.compaction = compaction
        compaction.wake = self.wake = self._schedule_cycle
        self.disk = disk
        self.transport = transport
        self.request_timeout = request_timeout
        self.start_applied_index = store.applied_index
        """The applied index this process started from (an engine's own, or a snapshot's)."""
        self._tick_seconds, self.election_ticks = tick_seconds, election_ticks
        self.requests = Requests(self, election_ticks)
        self.applier = EntryApplier(store, membership, self.requests.pending, rawnode, compaction.recent_requests)
        self._ticker: task.LoopingCall | None = None
        self._cycle_scheduled = self._cycle_running = False
        self._persisted_index = raft_storage.last_index()
        self.leader_id, self.role = 0, StateType.StateFollower
        self.failure: Exception | None = None
        """The storage (or apply) error that stopped this member accepting writes, if any."""
        self.removed, self.on_removed = False, None  # on_removed: called once removed, if set
        self.leader_changes_seen = 0
        """How many times this member learnt of a new leader (etcd counts the same)."""

    def startService(self) -> None:
        """Start ticking and processing; campaigns at once when alone."""
        super().startService()
        self.membership.connect_peers()
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
        self.requests.fail_all(Stopping("the member is shutting down"))
        self.disk.stop()
        self.compaction.stop()
        self.wal.close()
        self.store.engine.close()

    def propose(self, command: Command, auth=None) -> defer.Deferred:
        """Replicate ``command`` (checked for ``auth``); fires with its ``Result`` once applied here."""
        return self.requests.propose(command, auth)

    def read_barrier(self) -> defer.Deferred:
        """Fires once local state reflects every write acknowledged before this call."""
        return self.requests.read_barrier()

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

    def removed_by_peer(self, peer_id: int) -> None:
        """A member that applied our removal told us so: leave (the entry
        itself may never reach a removed follower)."""
        if not self.removed and self.running:
            log.info("member {peer} reports that member {id} was removed", peer=peer_id, id=self.member_id)
            self.removed = True
            if not self._cycle_running:
                self._leave_cluster()

    def _tick(self) -> None:
        """One logical clock tick: raft's timers, read rounds, publishing."""
        if self.failure is not None:
            return
        self.requests.reads.tick()
        self.applier.tick(self.rawnode.commit_index)
        self.rawnode.tick()
        self.requests.maybe_start_read_round()
        if self.leader_id != 0:
            self.membership.maybe_publish(self.propose)
        self._schedule_cycle()

    def _schedule_cycle(self) -> None:
        """Run cycles soon, unless one is scheduled or running (it reschedules)."""
        if not self._cycle_scheduled and not self._cycle_running:
            self._cycle_scheduled = True
            self.reactor.callLater(0, self._run_cycles)

    def _run_cycles(self) -> None:
        """Start one cycle: a pending WAL compaction first (it must not
        interleave with WAL writes), else the next Ready if raft has one."""
        self._cycle_scheduled = False
        if self._cycle_running or self.failure is not None or not self.running:
            return
        if self.compaction.pending_marker is not None:
            self._cycle_running = True
            self.compaction.compact_wal().addCallbacks(self._end_cycle, lambda f: self._fail_storage(f.value))
        elif self.rawnode.has_ready():
            self._cycle_running = True
            self._start_cycle(self.rawnode.ready())

    def _start_cycle(self, rd: raft.Ready) -> None:
        """Note leadership changes; a snapshot from the leader is installed
        (engine, membership, WAL marker, raft storage) before anything else."""
        if rd.soft_state is not None:
            self._observe_soft_state(rd.soft_state)
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            d = self.compaction.install(rd.snapshot)
            d.addCallbacks(lambda _: self._installed(rd), lambda f: self._fail_storage(f.value))
        else:
            self._persist_and_send(rd)

    def _installed(self, rd: raft.Ready) -> None:
        self._persisted_index = max(self._persisted_index, rd.snapshot.metadata.index)
        self.requests.reads.reached(self.store.applied_index)
        self._persist_and_send(rd)

    def _persist_and_send(self, rd: raft.Ready) -> None:
        """Write ``rd`` to the WAL; send only what may precede the fsync; start
        the fsync if needed, then apply only entries durable before ``rd`` and
        not rewritten by it (they are answered while the disk syncs)."""
        try:
            if rd.hard_state is not None or rd.entries:
                self.wal.save(rd.hard_state, rd.entries)
        except Exception as e:  # WALError: stop acknowledging, loudly
            self._fail_storage(e)
            return
        early = [m for m in rd.messages if m.type in raft.MESSAGES_SENT_BEFORE_PERSIST]
        late = [m for m in rd.messages if m.type not in raft.MESSAGES_SENT_BEFORE_PERSIST]
        self._send(early)
        durable_to = min(self._persisted_index, rd.entries[0].index - 1) if rd.entries else self._persisted_index
        durable = [e for e in rd.committed_entries if e.index <= durable_to]
        rest = rd.committed_entries[len(durable):]
        if not rd.must_sync:
            self._apply(durable)
            self._finish_cycle(rd, late, rest)
            return
        if not self.is_leader and self.disk.fsyncs_are_fast:
            # A follower's acknowledgement waits for this fsync and nothing
            # else, and raft's next Ready waits for this one: handing the
            # fsync to the disk thread would only add two thread hand-offs
            # (its start waits for the interpreter lock, its end for a
            # reactor wake-up) to every put's round trip.
            try:
                self.disk.sync_wal()
            except Exception as e:  # WALError: stop acknowledging, loudly
                self._fail_storage(e)
                return
            self._finish_cycle(rd, late, rd.committed_entries)
            return
        # The fsync goes to the disk thread before the durable entries are
        # applied and answered, so the two overlap instead of adding up: under
        # load applying a batch costs as long as an fsync.
        d = self.disk.run(self.disk.sync_wal)
        try:
            self._apply(durable)
        except Exception:
            d.addErrback(lambda _: None)  # the member already stopped on the apply error
            raise
        d.addCallbacks(lambda _: self._finish_cycle(rd, late, rest), lambda f: self._fail_storage(f.value))

    def _finish_cycle(self, rd: raft.Ready, late: list[Message], rest: Sequence[Entry]) -> None:
        """``rd`` is durable: give it to raft's storage (which holds only
        durable state), send the rest, apply the rest, serve reads, advance."""
        if not self.running:
            return
        try:
            if rd.entries:
                self.raft_storage.append(rd.entries)
            if rd.hard_state is not None:
                self.raft_storage.set_hard_state(rd.hard_state)
        except Exception as e:  # a broken invariant: stop acknowledging, loudly
            self._fail_storage(e)
            return
        if rd.entries:
            self._persisted_index = rd.entries[-1].index
        self._send(late)
        if late and rest:
            # The reactor writes what was just sent (a follower's
            # acknowledgements) before the next turn applies.
            self.reactor.callLater(0, self._apply_and_advance, rd, rest)
        else:
            self._apply_and_advance(rd, rest)

    def _apply_and_advance(self, rd: raft.Ready, rest: Sequence[Entry]) -> None:
        """The end of ``rd``'s cycle: apply what is left, serve reads, advance."""
        if not self.running or self.failure is not None:
            return
        self._apply(rest)
        for read_state in rd.read_states:
            self.requests.serve(read_state, self.store.applied_index)
        self.rawnode.advance(rd)
        if self.leader_id == 0 and self.sole_voter:
            # A cluster of one need not wait an election timeout for its
            # leader; raft refuses to campaign until its membership entries
            # are applied, which is why this comes after a cycle.
            self.rawnode.campaign()
        self._end_cycle()

    def _end_cycle(self, _=None) -> None:
        """A Ready's or a WAL compaction's cycle is over: start a snapshot if
        one is due, leave if removed, else look for the next cycle."""
        if self.running and self.failure is None:
            self.compaction.maybe_snapshot()
        self._cycle_running = False
        self.removed = self.removed or self.membership.self_removed
        self._leave_cluster() if self.removed else self._schedule_cycle()

    def _observe_soft_state(self, soft: raft.SoftState) -> None:
        if soft.lead not in (0, self.leader_id):
            self.leader_changes_seen += 1
            self.requests.repropose()  # what the old leader held may be lost
        was_leader, (self.leader_id, self.role) = self.is_leader, (soft.lead, soft.raft_state)
        if was_leader != self.is_leader:
            log.info("member {id} {what} the leader", id=self.member_id, what="is no longer" if was_leader else "became")

    def _send(self, messages: list[Message]) -> None:
        """Hand messages to the transport; a MsgSnap streams its file."""
        if self.transport is None:
            return
        for m in messages:
            if m.type == MessageType.MsgSnap:
                self.compaction.stream(m, self.transport).addCallback(self._snapshot_sent, m.to)
        messages = [m for m in messages if m.type != MessageType.MsgSnap]
        if messages:
            self.transport.send(messages)

    def _snapshot_sent(self, ok: bool, to: int) -> None:
        if self.running:
            self.rawnode.report_snapshot(to, ok)
            self._schedule_cycle()

    def _apply(self, entries: Sequence[Entry]) -> None:
        """Apply committed entries and wake the reads they make possible."""
        if entries:
            try:
                self.applier.apply(entries)
            except Exception as e:  # a bug: stop rather than skip entries
                self._fail_storage(e, "applying committed entries")
                raise
            self.requests.reads.reached(self.store.applied_index)

    def _fail_storage(self, error: Exception, what: str = "storage") -> None:
        """The disk (or applying) failed: acknowledge nothing more, keep
        serving what was applied to serializable reads, and say so in health."""
        log.critical("{what} failed, this member stops accepting writes: {e}", what=what, e=error)
        self.failure, self._cycle_running = error, False
        self.requests.fail_all(StorageFailed(f"{what} failed: {error}"))
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()

    def _leave_cluster(self) -> None:
        log.info("member {id} was removed from the cluster; shutting down", id=self.member_id)
        self.membership.answer_waiters_on_leaving()
        if self.on_removed is not None:
            self.on_removed()

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
