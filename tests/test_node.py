"""Tests for metastore.node, the Ready loop, on a deterministic clock.

The member runs on a ``MemoryReactorClock`` and its disk worker runs a
job only when the test says so, so each step of the cycle can be observed
between the WAL write and its fsync.
"""

from __future__ import annotations

import json

from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from metastore import health
from metastore.api.admin import AdminAPI
from metastore.config import Config
from metastore.errors import EntryRejected, StorageFailed
from metastore.facade import MemberStatus
from metastore.kv.commands import Put, encode_command
from metastore.raft.confchange import encode_conf_change
from metastore.raft.types import ConfChange, ConfChangeType, Entry, Message, MessageType
from metastore.service import open_member

MAX_STEPS = 200


class ControlledDisk:
    """A ``run_blocking`` that queues jobs until ``run_all``."""

    def __init__(self) -> None:
        self.jobs: list[tuple[object, defer.Deferred]] = []

    def __call__(self, f) -> defer.Deferred:
        d = defer.Deferred()
        self.jobs.append((f, d))
        return d

    def run_all(self, fail: Exception | None = None) -> int:
        """Run (or with ``fail``, fail) every queued job; how many ran."""
        ran = 0
        while self.jobs:
            f, d = self.jobs.pop(0)
            ran += 1
            if fail is not None:
                d.errback(fail)
            else:
                d.callback(f())
        return ran


class NodeHarness(TestCase):
    """A one-member cluster's real Node, led, on a controlled clock and disk."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.disk = ControlledDisk()
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=self.mktemp()).validate()
        self.member = open_member(config, self.clock, run_blocking=self.disk)
        self.node = self.member.node
        self.node.startService()
        self.addCleanup(self.stop)
        self.lead()
        self.settle()

    def lead(self) -> None:
        """Pass time (bounded) until the started member leads."""
        for _ in range(MAX_STEPS):
            self.settle()
            if self.node.is_leader:
                break
            self.clock.advance(0.1)
        self.assertTrue(self.node.is_leader)

    def stop(self) -> None:
        if self.node.running:
            self.node.stopService()

    def settle(self) -> None:
        """Run cycles and disk jobs until nothing is left to do (bounded)."""
        for _ in range(MAX_STEPS):
            self.clock.advance(0)
            due = [c for c in self.clock.getDelayedCalls() if c.getTime() <= self.clock.seconds()]
            if not self.disk.run_all() and not due:
                return
        self.fail("the member did not settle")


class ReadyLoopTests(NodeHarness):
    """The cycle's ordering promises, observed on the shipping driver."""

    def test_entries_reach_raft_storage_only_after_the_fsync(self) -> None:
        """Raft's storage holds only durable entries, and nothing is
        acknowledged before its fsync (raft/storage.py's contract)."""
        storage = self.node.raft_storage
        last = storage.last_index()
        d = self.node.propose(Put(b"k", b"v"))
        self.clock.advance(0)  # the cycle: WAL write, fsync queued
        self.assertEqual(len(self.disk.jobs), 1)
        self.assertEqual(storage.last_index(), last)
        self.assertNoResult(d)
        self.settle()
        self.assertEqual(storage.last_index(), last + 1)
        self.assertEqual(self.successResultOf(d).revision, 2)
        self.assertEqual(self.node.store.get(b"k").value, b"v")

    def test_the_fsync_starts_before_the_previous_batch_is_applied(self) -> None:
        """A cycle hands its fsync to the disk worker first and then applies
        and answers the entries an earlier fsync made durable, so the two
        overlap; the new entry stays unanswered until its own fsync."""
        first = self.node.propose(Put(b"a", b"1"))
        self.clock.advance(0)  # cycle 1: "a" written, its fsync queued
        self.assertEqual(self.disk.run_all(), 1)  # "a" durable; committed in the next Ready
        self.assertNoResult(first)
        applied_when_queued = []

        def noting_queue(f):
            applied_when_queued.append(self.node.store.get(b"a") is not None)
            return self.disk(f)

        self.node.disk._run_blocking = noting_queue
        second = self.node.propose(Put(b"b", b"2"))
        self.clock.advance(0)  # cycle 2: "b" written, its fsync queued, then "a" applied
        self.assertEqual(applied_when_queued, [False])
        self.assertEqual(self.successResultOf(first).revision, 2)
        self.assertNoResult(second)
        self.settle()
        self.assertEqual(self.successResultOf(second).revision, 3)

    def test_a_failed_fsync_acknowledges_nothing(self) -> None:
        """When the fsync fails the proposal fails, raft's storage never
        sees the entry, and the member stops accepting writes."""
        storage = self.node.raft_storage
        last = storage.last_index()
        d = self.node.propose(Put(b"k", b"v"))
        self.clock.advance(0)
        self.disk.run_all(fail=OSError(5, "Input/output error"))
        self.failureResultOf(d, StorageFailed)
        self.assertEqual(storage.last_index(), last)
        self.assertIsNone(self.node.store.get(b"k"))
        self.failureResultOf(self.node.propose(Put(b"k2", b"v")), StorageFailed)


class PoisonEntryTests(NodeHarness):
    """Entries the state machine cannot apply are applied as no-ops that
    fail their proposer; the applied index always reaches the commit index."""

    def assert_caught_up(self) -> None:
        status = self.node.rawnode.status()
        self.assertEqual(self.node.applied_index, status.commit)
        self.assertEqual(self.member.api.health_problems(), [])

    def test_garbage_normal_entry_is_a_no_op(self) -> None:
        """Bytes that decode to no command fail their proposer with
        ``EntryRejected``; the next write commits and applies."""
        d = self.node.requests.propose_raw(b"\xc1garbage", conf_change=False)
        self.settle()
        self.assertIn("no valid command", str(self.failureResultOf(d, EntryRejected).value))
        self.assert_caught_up()
        put = self.node.propose(Put(b"k", b"v"))
        self.settle()
        self.assertEqual(self.successResultOf(put).revision, 2)
        self.assert_caught_up()

    def test_invalid_conf_changes_are_no_ops(self) -> None:
        """A malformed change, the removal of a non-member, re-adding a
        member and a duplicate peer URL are each refused at apply time."""
        learner = self.node.requests.change_membership(
            ConfChange(ConfChangeType.ConfChangeAddLearnerNode, 4, b"http://127.0.0.1:9")
        )
        self.settle()
        self.successResultOf(learner)
        cases = [
            (b"\x93\x01\x02", "malformed"),
            (encode_conf_change(ConfChange(ConfChangeType.ConfChangeRemoveNode, 7)), "not a member"),
            (encode_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, 1)), "already a voter"),
            (encode_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, 5, b"http://127.0.0.1:9")), "already uses peer URL"),
        ]
        for data, reason in cases:
            d = self.node.requests.propose_raw(data, conf_change=True)
            self.settle()
            self.assertIn(reason, str(self.failureResultOf(d, EntryRejected).value))
            self.assert_caught_up()
        self.assertEqual(self.node.rawnode.applied_conf_state().voters, (1,))
        self.assertEqual([m.member_id for m in self.node.membership.listing()], [1, 4])
        self.assertEqual(self.node.applier.rejected, len(cases))
        put = self.node.propose(Put(b"k", b"v"))
        self.settle()
        self.successResultOf(put)

    def test_a_removed_id_is_stored_and_refused(self) -> None:
        """Removed ids are part of the stored membership record (so a
        restarted member refuses their re-use as the others do), and a
        change re-using one is refused at apply time."""
        add = self.node.requests.change_membership(ConfChange(ConfChangeType.ConfChangeAddLearnerNode, 4, b"http://127.0.0.1:9"))
        self.settle()
        self.successResultOf(add)
        remove = self.node.requests.change_membership(ConfChange(ConfChangeType.ConfChangeRemoveNode, 4))
        self.settle()
        self.successResultOf(remove)
        self.assertEqual(self.node.store.engine.cluster_state.removed, (4,))
        again = self.node.requests.propose_raw(
            encode_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, 4, b"http://127.0.0.1:9")), conf_change=True
        )
        self.settle()
        self.assertIn("cannot be reused", str(self.failureResultOf(again, EntryRejected).value))
        self.assert_caught_up()

    def test_an_apply_error_stops_the_member_and_health_says_so(self) -> None:
        """An unexpected error while applying (a bug) stops the member
        rather than skip the entry, and /health gives the reason."""
        def broken(*args, **kwargs):
            raise RuntimeError("engine bug")

        self.node.store.engine.commit = broken
        d = self.node.propose(Put(b"k", b"v"))
        self.assertRaises(RuntimeError, self.settle)  # out of the cycle, to the reactor's log
        self.failureResultOf(d, StorageFailed)
        problems = self.member.api.health_problems()
        self.assertTrue(any("applying committed entries failed" in p for p in problems), problems)


class DuplicateProposalTests(NodeHarness):
    """A re-proposed copy of a request is applied once (metastore.kv.dedup)."""

    def test_a_second_copy_is_a_no_op_and_the_window_is_stored(self) -> None:
        data = encode_command(b"r" * 16, Put(b"k", b"once"), self.node.rawnode.status().commit)
        for _ in range(2):
            self.node.rawnode.propose(data)
            self.node.wake()
            self.settle()
        self.assertEqual(self.node.store.get(b"k").version, 1)
        self.assertEqual(self.node.store.revision, 2)
        self.assertEqual(self.node.applied_index, self.node.rawnode.status().commit)
        stored = self.node.store.engine.cluster_state.requests
        self.assertIn(b"r" * 16, [request_id for request_id, _ in stored])

    def test_pending_writes_are_proposed_again_when_a_leader_is_learned(self) -> None:
        """``repropose`` puts every waiting write's same bytes in the log
        again; the copy is a no-op and the write is answered once."""
        d = self.node.propose(Put(b"k", b"v"))
        self.node.requests.repropose()
        self.settle()
        self.assertEqual(self.successResultOf(d).revision, 2)
        self.assertEqual(self.node.store.get(b"k").version, 1)
        self.assertEqual(self.node.store.revision, 2)


    def test_a_leaders_own_decision_is_not_proposed_again(self) -> None:
        """A proposal made with ``again=False`` (the lessor's revokes and
        checkpoints) is left out of ``repropose``: proposed once."""
        proposed = []
        rawnode_propose = self.node.rawnode.propose
        self.patch(self.node.rawnode, "propose", lambda data: (proposed.append(data), rawnode_propose(data)))
        once = self.node.requests.propose(Put(b"k", b"once"), again=False)
        self.node.propose(Put(b"j", b"v"))
        self.node.requests.repropose()
        self.assertEqual(len(proposed), 3)  # the write proposed twice, the decision once
        self.settle()
        self.assertEqual(self.successResultOf(once).revision, 2)


class RawProposalRouteTests(NodeHarness):
    """``POST /admin/debug/propose-raw`` exists only when turned on."""

    def post(self, raw_proposals: bool) -> tuple[int, dict]:
        client = StubTreq(AdminAPI(self.member.api, None, None, raw_proposals).app.resource())
        d = client.post("http://member/admin/debug/propose-raw?type=normal", data=b"\xc1")
        for _ in range(MAX_STEPS):
            self.settle()
            client.flush()
            if d.called:
                break
        response = self.successResultOf(d)
        return response.code, json.loads(self.successResultOf(response.content()))

    def test_off_by_default(self) -> None:
        self.assertEqual(self.post(False)[0], 404)

    def test_on_it_proposes_and_reports_the_rejection(self) -> None:
        code, body = self.post(True)
        self.assertEqual((code, body["error"]), (409, "entry_rejected"))


class ApplyStallTests(TestCase):
    """The health check on an applied index that sits behind commit."""

    def status(self, **changes) -> MemberStatus:
        fields = dict(
            member_id=1, leader=1, role="leader", term=2, commit_index=10, applied_index=10, snapshot_index=0,
            start_applied_index=0, first_applied_index=1, wal_syncs=1, storage="memory", first_log_index=1,
            revision=1, healthy=True, storage_failure=None,
        )
        fields.update(changes)
        return MemberStatus(**fields)

    def test_stall_is_reported_after_two_election_timeouts(self) -> None:
        self.assertEqual(health.apply_stalled(self.status(applied_index=5, apply_stalled_ticks=19)), "")
        reason = health.apply_stalled(self.status(applied_index=5, apply_stalled_ticks=20))
        self.assertIn("has not moved for 20 ticks", reason)

    def test_applier_counts_ticks_without_progress(self) -> None:
        """``EntryApplier.tick`` counts only ticks where applied < commit
        and applied did not move."""
        clock = MemoryReactorClock()
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=self.mktemp()).validate()
        member = open_member(config, clock, run_blocking=ControlledDisk())
        self.addCleanup(lambda: (member.node.wal.close(), member.node.store.engine.close()))
        applier = member.node.applier
        applier.tick(0)
        self.assertEqual(applier.stalled_ticks, 0)
        applier.tick(5)
        applier.tick(5)
        self.assertEqual(applier.stalled_ticks, 2)
        applier.tick(0)
        self.assertEqual(applier.stalled_ticks, 0)


class FollowerCycleTests(TestCase):
    """A follower's cycle, fed leader messages by hand."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.disk = ControlledDisk()
        cluster = ("http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3")
        config = Config(cluster=cluster, member_id=2, port=0, data_dir=self.mktemp()).validate()
        self.node = open_member(config, self.clock, run_blocking=self.disk).node
        self.node.transport = None  # what it sends is not the subject here
        self.node.startService()
        self.addCleanup(self.node.stopService)
        self.settle()

    def settle(self) -> None:
        for _ in range(MAX_STEPS):
            self.clock.advance(0)
            if not self.disk.run_all():
                return
        self.fail("the member did not settle")

    def append(self, term: int, leader: int, prev: tuple[int, int], entries: list[Entry], commit: int) -> None:
        self.node.receive([Message(
            type=MessageType.MsgApp, to=2, from_=leader, term=term, log_term=prev[1], index=prev[0],
            entries=tuple(entries), commit=commit,
        )])

    def record_order(self) -> list[str]:
        """What the follower does from now on, in order: each WAL fsync
        (with the applied index then) and each batch of messages it sends."""
        order: list[str] = []
        sync = self.node.wal.sync

        def recording_sync() -> None:
            order.append(f"fsync (applied {self.node.applied_index})")
            sync()

        self.node.wal.sync = recording_sync
        self.node.transport = RecordingTransport(order)
        return order

    def test_a_follower_acknowledges_an_append_only_after_its_fsync(self) -> None:
        """The MsgAppResp for new entries leaves after the fsync that made
        them durable; with a fast disk that fsync runs in the cycle itself,
        queueing nothing for the disk thread."""
        booted = self.node.raft_storage.last_index()
        order = self.record_order()
        self.node.disk.last_fsync_seconds = 0.0  # whatever this machine's disk did before
        self.append(2, 1, (booted, 1), [Entry(2, booted + 1)], booted)
        self.clock.advance(0)
        self.assertEqual(self.disk.jobs, [])
        self.assertEqual(order, [f"fsync (applied {booted})", f"sent MsgAppResp index {booted + 1}"])

    def test_a_follower_whose_fsync_fails_in_the_cycle_acknowledges_nothing(self) -> None:
        """An fsync that fails in the cycle stops the member before any
        MsgAppResp leaves, as one failing in the disk thread does."""
        booted = self.node.raft_storage.last_index()
        order = self.record_order()
        self.node.disk.last_fsync_seconds = 0.0

        def failing_sync() -> None:
            order.append("fsync failed")
            raise OSError(5, "Input/output error")

        self.node.wal.sync = failing_sync
        self.append(2, 1, (booted, 1), [Entry(2, booted + 1)], booted)
        self.clock.advance(0)
        self.assertEqual(order, ["fsync failed"])
        self.assertIsInstance(self.node.failure, OSError)
        self.assertEqual(self.node.raft_storage.last_index(), booted)

    def test_a_follower_with_a_slow_disk_acknowledges_after_the_threads_fsync(self) -> None:
        """After an fsync slower than ``fast_fsync_seconds`` the next one goes
        to the disk thread (the reactor thread stays free), and the
        acknowledgement still waits for it."""
        booted = self.node.raft_storage.last_index()
        self.node.disk.last_fsync_seconds = self.node.disk.fast_fsync_seconds * 2
        order = self.record_order()
        self.append(2, 1, (booted, 1), [Entry(2, booted + 1)], booted)
        self.clock.advance(0)
        self.assertEqual(len(self.disk.jobs), 1)
        self.assertEqual(order, [])
        self.disk.run_all()
        self.assertEqual(order, [f"fsync (applied {booted})", f"sent MsgAppResp index {booted + 1}"])

    def test_a_follower_sends_its_acknowledgement_before_applying(self) -> None:
        """Entries a MsgApp commits are applied after the acknowledgement of
        its new entries was sent (in the next reactor turn, so the reactor
        writes it first)."""
        booted = self.node.raft_storage.last_index()
        self.append(2, 1, (booted, 1), [Entry(2, booted + 1)], booted)
        self.settle()
        order = self.record_order()
        self.node.transport.applied = lambda: self.node.applied_index
        self.append(2, 1, (booted + 1, 2), [Entry(2, booted + 2)], booted + 1)
        self.settle()
        self.assertEqual(order, [f"fsync (applied {booted})", f"sent MsgAppResp index {booted + 2} (applied {booted})"])
        self.assertEqual(self.node.applied_index, booted + 1)

    def test_an_entry_rewritten_by_the_ready_is_applied_only_after_its_fsync(self) -> None:
        """A durable index rewritten with another term and committed in the
        same Ready is not durable until that Ready's fsync: nothing of it is
        applied before (found by the node simulation, tests.node_sim seeds 16 and 87)."""
        booted = self.node.raft_storage.last_index()
        self.node.disk.fast_fsync_seconds = -1.0  # every fsync through the disk thread
        self.append(2, 1, (booted, 1), [Entry(2, booted + 1), Entry(2, booted + 2)], booted)
        self.settle()
        self.assertEqual(self.node.applied_index, booted)
        self.append(3, 3, (booted, 1), [Entry(3, booted + 1)], booted + 1)
        self.clock.advance(0)
        self.assertEqual(len(self.disk.jobs), 1)
        self.assertEqual(self.node.applied_index, booted)
        self.disk.run_all()
        self.clock.advance(0)
        self.assertEqual(self.node.applied_index, booted + 1)

    def test_an_entry_rewritten_by_the_ready_is_applied_only_after_its_fsync_in_the_cycle(self) -> None:
        """The same with the fsync run in the cycle: the entry is applied after it."""
        booted = self.node.raft_storage.last_index()
        self.append(2, 1, (booted, 1), [Entry(2, booted + 1), Entry(2, booted + 2)], booted)
        self.settle()
        order = self.record_order()
        self.append(3, 3, (booted, 1), [Entry(3, booted + 1)], booted + 1)
        self.settle()
        self.assertEqual(order, [f"fsync (applied {booted})", f"sent MsgAppResp index {booted + 1}"])
        self.assertEqual(self.node.applied_index, booted + 1)


class RecordingTransport:
    """A peer transport that notes each message sent into a shared list."""

    def __init__(self, order: list[str]) -> None:
        self.order = order
        self.applied = None
        """If set, a function whose result (the applied index) each note ends with."""

    def send(self, messages) -> None:
        """Note each message as "sent TYPE index N"."""
        suffix = "" if self.applied is None else f" (applied {self.applied()})"
        self.order.extend(f"sent {m.type.name} index {m.index}{suffix}" for m in messages)
