"""The key-value state machine follows etcd's revision model on every engine.

``KeyValueStoreBehaviour`` is the engine conformance suite: each storage
engine gets a ``SynchronousTestCase`` that mixes it in and says how to make
an engine.
"""

from twisted.trial.unittest import SynchronousTestCase

from metastore.kv.commands import CompactionRequest, Compare, CompareResult, CompareTarget, DeleteRange, Put, Txn
from metastore.kv.store import KeyValueStore
from metastore.storage.engine import ClusterState, Event, KeyValue, MemberRecord
from metastore.storage.memory import MemoryEngine
from tests.tracked import tracked_objects_left_by


class KeyValueStoreBehaviour:
    """Behaviour every engine must show under ``KeyValueStore``."""

    def make_engine(self):
        raise NotImplementedError

    def setUp(self):
        self.engine = self.make_engine()
        self.addCleanup(self.engine.close)
        self.store = KeyValueStore(self.engine)

    def test_new_store_is_at_revision_one(self):
        """An empty store reports revision 1 and applied index 0, like etcd."""
        self.assertEqual((self.store.revision, self.store.applied_index), (1, 0))

    def test_put_creates_key_with_metadata(self):
        """The first put gives create == mod == the new revision, version 1."""
        [result] = self.store.apply(5, [Put(b"k", b"v")])
        kv = self.store.get(b"k")
        self.assertEqual((kv.value, kv.create_revision, kv.mod_revision, kv.version), (b"v", 2, 2, 1))
        self.assertEqual((result.revision, result.prev_kv), (2, None))
        self.assertEqual(self.store.applied_index, 5)

    def test_overwrite_keeps_create_revision_and_counts_versions(self):
        """A second put bumps mod_revision and version, keeps create_revision."""
        self.store.apply(1, [Put(b"k", b"1")])
        [result] = self.store.apply(2, [Put(b"k", b"2", prev_kv=True)])
        kv = self.store.get(b"k")
        self.assertEqual((kv.value, kv.create_revision, kv.mod_revision, kv.version), (b"2", 2, 3, 2))
        self.assertEqual(result.prev_kv.value, b"1")

    def test_recreated_key_starts_a_new_generation(self):
        """A deleted then re-created key starts again at version 1."""
        self.store.apply(1, [Put(b"k", b"1"), DeleteRange(b"k"), Put(b"k", b"2")])
        kv = self.store.get(b"k")
        self.assertEqual((kv.create_revision, kv.version, self.store.revision), (4, 1, 4))

    def test_delete_of_absent_key_changes_no_revision(self):
        """Deleting nothing is no write: the revision stays."""
        [result] = self.store.apply(1, [DeleteRange(b"absent")])
        self.assertEqual((result.deleted, result.revision, self.store.revision), (0, 1, 1))

    def test_delete_range(self):
        """DeleteRange removes exactly the keys in [key, range_end)."""
        self.store.apply(1, [Put(k, b"") for k in (b"a", b"b", b"c", b"d")])
        [result] = self.store.apply(2, [DeleteRange(b"b", b"d", prev_kv=True)])
        self.assertEqual([kv.key for kv in result.prev_kvs], [b"b", b"c"])
        self.assertEqual(result.deleted, 2)
        self.assertEqual([kv.key for kv in self.engine.range(b"a", b"\0")], [b"a", b"d"])

    def test_txn_success_branch_is_one_revision(self):
        """A txn whose compares hold runs success, all at one revision."""
        self.store.apply(1, [Put(b"k", b"v")])
        txn = Txn(
            (Compare(CompareTarget.MOD, CompareResult.EQUAL, b"k", 2),),
            (Put(b"k", b"w"), Put(b"other", b"x")),
        )
        [result] = self.store.apply(2, [txn])
        self.assertTrue(result.succeeded)
        self.assertEqual(self.store.revision, 3)
        self.assertEqual({self.store.get(b"k").mod_revision, self.store.get(b"other").mod_revision}, {3})

    def test_txn_failure_branch(self):
        """A txn whose compare fails runs failure and changes nothing else."""
        self.store.apply(1, [Put(b"k", b"v")])
        txn = Txn((Compare(CompareTarget.VALUE, CompareResult.EQUAL, b"k", b"nope"),), (Put(b"k", b"w"),))
        [result] = self.store.apply(2, [txn])
        self.assertFalse(result.succeeded)
        self.assertEqual((self.store.get(b"k").value, self.store.revision), (b"v", 2))

    def test_compare_on_absent_key(self):
        """An absent key compares as version 0 (create-if-absent)."""
        absent = Compare(CompareTarget.VERSION, CompareResult.EQUAL, b"k", 0)
        first, second = self.store.apply(1, [Txn((absent,), (Put(b"k", b"1"),)), Txn((absent,), (Put(b"k", b"2"),))])
        self.assertEqual((first.succeeded, second.succeeded), (True, False))
        self.assertEqual(self.store.get(b"k").value, b"1")

    def test_compare_with_mismatched_operand_type_fails(self):
        """Comparing a revision with bytes never holds (no TypeError)."""
        bad = Compare(CompareTarget.MOD, CompareResult.EQUAL, b"k", b"2")
        [result] = self.store.apply(1, [Txn((bad,), (Put(b"k", b"1"),))])
        self.assertFalse(result.succeeded)

    def test_range_order_limit_and_count(self):
        """Range yields keys in byte order, honours limit, count agrees."""
        self.store.apply(1, [Put(bytes([c]), b"") for c in (5, 1, 255, 3, 0)])
        self.assertEqual([kv.key for kv in self.engine.range(b"\x00", b"\0")], [b"\x00", b"\x01", b"\x03", b"\x05", b"\xff"])
        self.assertEqual([kv.key for kv in self.engine.range(b"\x01", b"\x05", limit=1)], [b"\x01"])
        self.assertEqual(self.engine.count(b"\x01", b"\x05"), 2)
        self.assertEqual(self.engine.count(b"\x03", None), 1)

    def test_binary_keys_and_values(self):
        """Any bytes are a key or a value."""
        key, value = bytes(range(256)), bytes(reversed(range(256))) * 4
        self.store.apply(1, [Put(key, value)])
        self.assertEqual(self.store.get(key).value, value)

    def test_apply_with_no_commands_moves_applied_index_only(self):
        """An empty entry (a new leader's) advances the index, not the revision."""
        self.store.apply(7, [None])
        self.assertEqual((self.store.applied_index, self.store.revision), (7, 1))


    def test_snapshot_items_are_a_consistent_point(self):
        """Items taken before later commits do not see those commits."""
        self.store.apply(1, [Put(b"a", b"1"), Put(b"b", b"2")])
        items = self.engine.snapshot_items()
        self.store.apply(2, [Put(b"a", b"changed"), DeleteRange(b"b"), Put(b"c", b"3")])
        self.assertEqual([(e.kv.key, e.kv.value) for e in items], [(b"a", b"1"), (b"b", b"2")])

    def test_restore_replaces_everything(self):
        """restore swaps in a whole keyspace with revision, index and membership."""
        self.store.apply(1, [Put(b"old", b"x")])
        cluster = ClusterState(voters=(1, 2), members=(MemberRecord(1, "http://a:1"), MemberRecord(2, "http://b:2", "http://b:3")))
        items = [Event(KeyValue(b"k%d" % i, b"v", 2, 5 + i, 1), 0) for i in range(3)]
        self.engine.restore(items, 9, 40, cluster)
        self.assertIsNone(self.engine.get(b"old"))
        self.assertEqual([kv.key for kv in self.engine.range(b"", b"\0")], [b"k0", b"k1", b"k2"])
        self.assertEqual((self.engine.revision, self.engine.applied_index, self.engine.cluster_state), (9, 40, cluster))

    def test_cluster_state_is_committed_with_the_batch(self):
        """Membership given to commit is what cluster_state returns."""
        cluster = ClusterState(voters=(1,), members=(MemberRecord(1, "http://a:1"),))
        self.engine.commit([], 1, 3, cluster)
        self.engine.commit([], 1, 4)
        self.assertEqual((self.engine.cluster_state, self.engine.applied_index), (cluster, 4))


class MemoryEngineKeyValueStoreTests(KeyValueStoreBehaviour, SynchronousTestCase):
    """The conformance suite on the memory engine."""

    def make_engine(self):
        return MemoryEngine()


class MemoryEngineTrackedObjectsTests(SynchronousTestCase):
    """What a put leaves in the memory engine for the garbage collector."""

    def test_a_retained_put_leaves_one_tracked_object(self):
        """1,000 puts over 10 keys, every version retained, leave about one
        tracked object each (its ``KeyValue``): no ``Event`` and no
        revision tuple is kept per version."""
        engine = MemoryEngine()
        store = KeyValueStore(engine)
        store.apply(1, [Put(b"k%d" % i, b"v") for i in range(10)])

        def puts():
            for index in range(2, 102):
                store.apply(index, [Put(b"k%d" % i, b"x" * 300) for i in range(10)])

        self.assertLessEqual(tracked_objects_left_by(puts), 1_050)
        self.assertEqual(len(list(engine.history())), 1_010)

    def test_tombstones_and_puts_read_back_as_events(self):
        """The history gives puts and tombstones back as ``Event`` objects
        with their revisions, before and after a restore from it."""
        engine = MemoryEngine()
        store = KeyValueStore(engine)
        store.apply(1, [Txn(success=(Put(b"a", b"1"), Put(b"b", b"2")))])
        store.apply(2, [DeleteRange(b"a")])
        expected = [
            Event(KeyValue(b"a", b"1", 2, 2, 1, 0), 0),
            Event(KeyValue(b"b", b"2", 2, 2, 1, 0), 1),
            Event(KeyValue(b"a", b"", 0, 3, 0, 0), 0, True),
        ]
        self.assertEqual(list(engine.history()), expected)
        copy = MemoryEngine()
        copy.restore(engine.snapshot_items(), 3, 2, ClusterState())
        self.assertEqual((list(copy.history((2, 1))), copy.get(b"a"), copy.get(b"a", 2)),
                         (expected[1:], None, expected[0].kv))


class MemorySnapshotViewTests(SynchronousTestCase):
    """The memory engine's copy-on-write snapshot view."""

    def test_view_iterated_after_changes_sees_the_old_state(self):
        """Overwrites, deletes and inserts after the view do not show in it."""
        engine = MemoryEngine()
        store = KeyValueStore(engine)
        store.apply(1, [Put(b"k%d" % i, b"old") for i in range(5)])
        view = engine.snapshot_items()
        store.apply(2, [Put(b"k1", b"new"), DeleteRange(b"k2"), Put(b"k9", b"inserted"), Put(b"k1", b"newer")])
        self.assertEqual([(e.kv.key, e.kv.value) for e in view], [(b"k%d" % i, b"old") for i in range(5)])

    def test_interleaved_reads_and_commits(self):
        """A view read a bit at a time between commits stays at its point."""
        engine = MemoryEngine()
        store = KeyValueStore(engine)
        store.apply(1, [Put(b"k%03d" % i, b"v0") for i in range(100)])
        iterator = iter(engine.snapshot_items())
        seen = []
        for round_number in range(1, 11):
            seen.extend(next(iterator) for _ in range(10))
            store.apply(round_number + 1, [Put(b"k%03d" % i, b"v%d" % round_number) for i in range(0, 100, 3)]
                        + [DeleteRange(b"k%03d" % (99 - round_number))])
        self.assertEqual([(e.kv.key, e.kv.value) for e in seen], [(b"k%03d" % i, b"v0") for i in range(100)])

    def test_second_view_while_one_is_open_is_a_full_copy(self):
        """Two views at once are both consistent."""
        engine = MemoryEngine()
        store = KeyValueStore(engine)
        store.apply(1, [Put(b"a", b"1")])
        first, second = engine.snapshot_items(), engine.snapshot_items()
        store.apply(2, [Put(b"a", b"2")])
        self.assertEqual(([e.kv.value for e in first], [e.kv.value for e in second]), ([b"1"], [b"1"]))

    def test_view_ends_when_exhausted(self):
        """After a view is read to the end it no longer holds compaction back."""
        engine = MemoryEngine()
        KeyValueStore(engine).apply(1, [Put(b"a", b"1")])
        list(engine.snapshot_items())
        self.assertIsNone(engine._view)


class MemoryHistoryTests(SynchronousTestCase):
    """The memory engine's history iterator across compaction."""

    def test_history_iterator_survives_compaction(self):
        """An iterator paused while compaction removes most versions (and
        rebuilds the revision list) resumes after the last event it gave,
        without repeats, and sees what is left."""
        engine = MemoryEngine()
        store = KeyValueStore(engine)
        store.apply(1, [Put(b"k", b"%d" % i) for i in range(100)])  # revisions 2..101
        iterator = engine.history()
        first = [next(iterator).revision for _ in range(3)]
        store.apply(2, [CompactionRequest(90)])
        while not store.compact_step(1000):
            pass
        rest = [event.revision for event in iterator]
        self.assertEqual(first, [(2, 0), (3, 0), (4, 0)])
        self.assertEqual(rest, [(main, 0) for main in range(90, 102)])
