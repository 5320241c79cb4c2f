"""Tests for metastore.node, the Ready loop, on a deterministic clock.

The member runs on a ``MemoryReactorClock`` and its disk worker runs a
job only when the test says so, so each step of the cycle can be observed
between the WAL write and its fsync.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from metastore.config import Config
from metastore.errors import StorageFailed
from metastore.kv.commands import Put
from metastore.raft.types import Entry, Message, MessageType
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


class ReadyLoopTests(TestCase):
    """The cycle's ordering promises, observed on the shipping driver."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.disk = ControlledDisk()
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=self.mktemp()).validate()
        self.member = open_member(config, self.clock, run_blocking=self.disk)
        self.node = self.member.node
        self.node.startService()
        self.addCleanup(self.stop)
        for _ in range(MAX_STEPS):
            self.settle()
            if self.node.is_leader:
                break
            self.clock.advance(0.1)
        self.assertTrue(self.node.is_leader)
        self.settle()

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

    def test_an_entry_rewritten_by_the_ready_is_applied_only_after_its_fsync(self) -> None:
        """A durable index rewritten with another term and committed in the
        same Ready is not durable until that Ready's fsync: nothing of it is
        applied before (found by the node simulation, tests.node_sim seeds 16 and 87)."""
        booted = self.node.raft_storage.last_index()
        self.append(2, 1, (booted, 1), [Entry(2, booted + 1), Entry(2, booted + 2)], booted)
        self.settle()
        self.assertEqual(self.node.applied_index, booted)
        self.append(3, 3, (booted, 1), [Entry(3, booted + 1)], booted + 1)
        self.clock.advance(0)
        self.assertEqual(len(self.disk.jobs), 1)
        self.assertEqual(self.node.applied_index, booted)
        self.disk.run_all()
        self.assertEqual(self.node.applied_index, booted + 1)
