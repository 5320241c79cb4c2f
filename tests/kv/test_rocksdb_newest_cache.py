"""The RocksDB engine's cache of newest versions never changes an answer:
a cached engine and an uncached one, given the same random puts, deletes,
txns, multi-command applies, compactions, restores (also back to an older
state) and reopens, answer every read alike and apply every command alike."""

from __future__ import annotations

import os

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from metastore.config import Config
from metastore.kv.errors import KVError
from metastore.kv.messages import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    LeaseGrantRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from metastore.kv.store import KeyValueStore
from metastore.service import _open_engine
from metastore.storage.engine import ClusterState
from metastore.storage.memory import MemoryEngine
from metastore.storage.newest import ENTRY_OVERHEAD
from metastore.storage.rocksdb import RocksDBEngine

KEYS = [b"a", b"a\x00", b"b", b"c", b"\xff"]
LEASE = 5

keys = st.sampled_from(KEYS)
values = st.sampled_from([b"", b"x", b"yy", b"a longer value than a small cache keeps"])
puts = st.builds(
    PutRequest,
    key=keys,
    value=values,
    lease=st.sampled_from([0, 0, LEASE]),
    prev_kv=st.booleans(),
    ignore_value=st.just(False),
)
ignoring_puts = st.builds(lambda key, lease: PutRequest(key, b"", lease, False, True), keys, st.sampled_from([0, LEASE]))
deletes = st.builds(DeleteRangeRequest, key=keys, range_end=st.sampled_from([b"", b"", b"c", b"\0"]), prev_kv=st.booleans())
compares = st.builds(
    Compare,
    target=st.sampled_from([CompareTarget.VERSION, CompareTarget.CREATE, CompareTarget.MOD]),
    result=st.sampled_from(list(CompareResult)),
    key=keys,
    operand=st.integers(0, 12),
)
txn_ops = st.lists(st.one_of(puts, deletes, st.builds(RangeRequest, key=keys)), max_size=4)
txns = st.builds(TxnRequest, compare=st.lists(compares, max_size=2).map(tuple),
                 success=txn_ops.map(tuple), failure=txn_ops.map(tuple))
commands = st.one_of(puts, ignoring_puts, deletes, txns)
operations = st.one_of(
    st.tuples(st.just("apply"), st.lists(commands, min_size=1, max_size=4)),
    st.tuples(st.just("compact"), st.floats(0, 1)),
    st.tuples(st.just("step"), st.integers(1, 6)),
    st.tuples(st.just("checkpoint")),
    st.tuples(st.just("rewind")),
    st.tuples(st.just("reopen")),
)


class Replica:
    """A store on a RocksDB engine at ``path`` with a given cache budget."""

    def __init__(self, path: str, cache_bytes: int) -> None:
        self.path, self.cache_bytes = path, cache_bytes
        self.engine = RocksDBEngine.open(path, newest_cache_bytes=cache_bytes)
        self.store = KeyValueStore(self.engine)

    def reopen(self) -> None:
        """Close and open the engine again (a restart)."""
        self.engine.close()
        self.__init__(self.path, self.cache_bytes)

    def restore_from(self, source) -> None:
        """Replace the engine's state with ``source``'s (an engine)."""
        self.engine.restore(source.snapshot_items(), source.revision, source.applied_index, ClusterState(),
                            source.compacted_revision, source.physically_compacted_revision, source.leases())


def copy_of(engine) -> MemoryEngine:
    """A memory engine holding ``engine``'s state now."""
    copy = MemoryEngine()
    copy.restore(engine.snapshot_items(), engine.revision, engine.applied_index, ClusterState(),
                 engine.compacted_revision, engine.physically_compacted_revision, engine.leases())
    return copy


class NewestCacheEquivalenceTests(SynchronousTestCase):
    """A cached engine answers as an uncached one after any operations."""

    def assert_same_reads(self, cached: RocksDBEngine, plain: RocksDBEngine, where: str) -> None:
        self.assertEqual((cached.revision, cached.compacted_revision), (plain.revision, plain.compacted_revision), where)
        for key in KEYS:
            self.assertEqual(cached.get(key), plain.get(key), f"{where}: newest {key!r}")
            self.assertEqual(list(cached.range(key, b"")), list(plain.range(key, b"")), where)
            self.assertEqual(cached.count(key, b""), plain.count(key, b""), where)
            for revision in range(max(1, cached.compacted_revision), cached.revision + 2):
                self.assertEqual(cached.get(key, revision), plain.get(key, revision), f"{where}: {key!r} at {revision}")
        self.assertEqual(list(cached.range(b"", b"\0")), list(plain.range(b"", b"\0")), where)

    @settings(max_examples=60)
    @given(st.lists(operations, max_size=25),
           st.sampled_from([0, 3 * (ENTRY_OVERHEAD + 2) + 20, 64 * 1024]))
    def test_cached_engine_answers_as_uncached(self, steps, cache_bytes) -> None:
        """Every command's result and every read (newest and past
        versions, single keys and the whole range) are the same, whatever
        the budget (none, a few entries, plenty)."""
        root = self.mktemp()
        cached = Replica(os.path.join(root, "cached"), cache_bytes)
        plain = Replica(os.path.join(root, "plain"), 0)
        replicas = (cached, plain)
        try:
            index = 1
            for replica in replicas:
                replica.store.apply(index, [LeaseGrantRequest(60, LEASE)])
            checkpoint = copy_of(plain.engine)
            for number, step in enumerate(steps):
                where = f"step {number}: {step!r}"
                kind = step[0]
                if kind == "apply":
                    index += 1
                    results = [replica.store.apply(index, step[1]) for replica in replicas]
                    kinds = [[type(r) if isinstance(r, KVError) else r for r in result] for result in results]
                    self.assertEqual(kinds[0], kinds[1], where)
                elif kind == "compact":
                    engine = plain.engine
                    target = engine.compacted_revision + 1 + int(step[1] * (engine.revision - engine.compacted_revision))
                    if target <= engine.revision:
                        index += 1
                        for replica in replicas:
                            replica.store.apply(index, [CompactionRequest(target)])
                elif kind == "step":
                    for replica in replicas:
                        replica.store.compact_step(step[1])
                elif kind == "checkpoint":
                    checkpoint = copy_of(plain.engine)
                elif kind == "rewind":  # an older state installed: what the cache held is stale
                    for replica in replicas:
                        replica.restore_from(checkpoint)
                    index = checkpoint.applied_index
                else:
                    cached.reopen()
                self.assert_same_reads(cached.engine, plain.engine, where)
        finally:
            for replica in replicas:
                replica.engine.close()


class CountingDB:
    """A RocksDB handle that counts its point lookups."""

    def __init__(self, db) -> None:
        self.db, self.gets = db, 0

    def get(self, key):
        self.gets += 1
        return self.db.get(key)

    def __getattr__(self, name):
        return getattr(self.db, name)


class NewestCacheUseTests(SynchronousTestCase):
    """The cache is used by the reads it is for and kept by commits."""

    def setUp(self) -> None:
        self.engine = RocksDBEngine.open(os.path.join(self.mktemp(), "db"))
        self.addCleanup(self.engine.close)
        self.store = KeyValueStore(self.engine)

    def test_put_path_reads_no_rocksdb_after_a_commit(self) -> None:
        """Once a key was written, reading its newest version (as the next
        put of it does) needs no RocksDB point lookup, nor does a key read
        once and found absent; a past version still reads RocksDB."""
        self.store.apply(1, [PutRequest(b"k", b"1")])
        self.store.apply(2, [PutRequest(b"k", b"2")])
        counting = CountingDB(self.engine._db)
        self.engine._db = counting
        self.addCleanup(setattr, self.engine, "_db", counting.db)
        self.assertEqual(self.engine.get(b"k").value, b"2")
        self.assertEqual([kv.value for kv in self.engine.range(b"k", b"")], [b"2"])
        self.assertEqual(self.store.apply(3, [PutRequest(b"k", b"3", prev_kv=True)])[0].prev_kv.value, b"2")
        self.assertEqual(counting.gets, 0)
        self.assertIsNone(self.engine.get(b"absent"))
        self.assertIsNone(self.engine.get(b"absent"))
        self.assertEqual(counting.gets, 1)
        self.assertEqual(self.engine.get(b"k", 2).value, b"1")
        self.assertEqual(counting.gets, 2)

    def test_restore_forgets_the_cache(self) -> None:
        """After a restore to an older state, a key reads as restored, not
        as last written."""
        self.store.apply(1, [PutRequest(b"k", b"old")])
        older = copy_of(self.engine)
        self.store.apply(2, [PutRequest(b"k", b"new"), PutRequest(b"j", b"x")])
        self.assertEqual(self.engine.get(b"k").value, b"new")
        self.engine.restore(older.snapshot_items(), older.revision, older.applied_index, ClusterState())
        self.assertEqual(self.engine.get(b"k").value, b"old")
        self.assertIsNone(self.engine.get(b"j"))


class ConfigurationTests(SynchronousTestCase):
    """A member opens its engine with ``--rocksdb-newest-cache-bytes``."""

    def test_member_engine_gets_the_configured_budget(self) -> None:
        """The configured budget reaches the engine; the default is 16 MiB."""
        for budget, expected in ((None, 16 * 2**20), (12345, 12345), (0, 0)):
            extra = {} if budget is None else {"rocksdb_newest_cache_bytes": budget}
            config = Config(cluster=("http://127.0.0.1:1",), data_dir=self.mktemp(), storage="rocksdb", **extra).validate()
            engine, _ = _open_engine(config)
            self.addCleanup(engine.close)
            self.assertEqual(engine.newest_cache_bytes, expected)
