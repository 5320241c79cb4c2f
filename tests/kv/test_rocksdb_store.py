"""The RocksDB engine passes the engine conformance suite and keeps its
promises on disk: state survives a reopen and an unclean exit, each commit
is atomic, snapshot streams are point-in-time, restore is crash-safe.

Every test runs against real RocksDB (``rocksdict``) in ``self.mktemp()``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from dataclasses import fields, replace

import msgpack
import rocksdict
from twisted.trial.unittest import SynchronousTestCase

from metastore.kv.commands import Put
from metastore.kv.store import KeyValueStore
from metastore.storage.engine import ClusterState, Event, KeyValue, MemberRecord, tombstone
from metastore.storage.rocksdb import (
    META_REQUESTS,
    RESTORE_OLD_SUFFIX,
    RESTORE_READY_SUFFIX,
    RESTORE_TMP_SUFFIX,
    EngineClosedError,
    EngineOpenError,
    RocksDBEngine,
    _membership_fields,
    _write_requests,
    decode_cluster_state,
    encode_cluster_state,
    encode_key_value,
    rocksdb_layout,
)
from tests.auth.test_state import AUTH_STATE
from tests.kv.test_store import KeyValueStoreBehaviour

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CLUSTER = ClusterState(
    voters=(1, 2),
    learners=(3,),
    members=(
        MemberRecord(1, "http://a:1"),
        MemberRecord(2, "http://b:2", "http://b:3", grpc_url="http://b:5"),
        MemberRecord(3, "http://c:4", is_learner=True),
    ),
    alarms=((1, 1),),
    auth=AUTH_STATE,
)


def kv(key: bytes, value: bytes = b"v", revision: int = 2, version: int = 1, lease: int = 0) -> KeyValue:
    """A live key created and last modified at ``revision``."""
    return KeyValue(key, value, revision, revision, version, lease)


def commit_changes(engine, changes: dict, revision: int, index: int, cluster: ClusterState | None = None) -> None:
    """Commit ``changes`` (key -> new KeyValue, or None to delete) as the
    events of one write at ``revision``."""
    events = [
        tombstone(key, revision, sub) if found is None else Event(found, sub)
        for sub, (key, found) in enumerate(changes.items())
    ]
    engine.commit(events, revision, index, cluster)


def child_env() -> dict:
    """The environment for child processes: the checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


class RocksDBEngineKeyValueStoreTests(KeyValueStoreBehaviour, SynchronousTestCase):
    """The conformance suite on the RocksDB engine."""

    def make_engine(self):
        """A fresh RocksDB engine in a new temporary directory."""
        return RocksDBEngine.open(os.path.join(self.mktemp(), "db"))


class RocksDBEngineTests(SynchronousTestCase):
    """What the RocksDB engine promises beyond the conformance suite."""

    def setUp(self):
        self.path = os.path.join(self.mktemp(), "member", "db")

    def open(self, engine_class=RocksDBEngine) -> RocksDBEngine:
        """Open the engine at ``self.path``, closed again at cleanup."""
        engine = engine_class.open(self.path)
        self.addCleanup(engine.close)
        return engine

    def test_rocksdb_storage(self):
        """Keys, metadata, revision, applied index and membership written
        through the store are all there after close and reopen."""
        engine = self.open()
        store = KeyValueStore(engine)
        store.apply(3, [Put(b"a", b"1"), Put(b"b", b"2")])
        store.apply(4, [Put(b"a", b"3")])
        commit_changes(engine, {b"c": kv(b"c", b"leased", revision=5, lease=77)}, 5, 6, CLUSTER)
        engine.close()

        reopened = self.open()
        self.assertEqual(reopened.get(b"a"), KeyValue(b"a", b"3", 2, 4, 2))
        self.assertEqual(reopened.get(b"b"), KeyValue(b"b", b"2", 3, 3, 1))
        self.assertEqual(reopened.get(b"c").lease, 77)
        self.assertEqual(
            (reopened.revision, reopened.applied_index, reopened.cluster_state), (5, 6, CLUSTER)
        )

    def test_commits_write_no_rocksdb_wal(self):
        """Commits go to the memtable only (the raft WAL is the durable
        record): RocksDB's WAL files stay empty, and nothing is lost on a
        clean close."""
        engine = self.open()
        for index in range(1, 51):
            commit_changes(engine, {b"k%d" % index: kv(b"k%d" % index, revision=index + 1)}, index + 1, index,
                           replace(CLUSTER, requests=((b"r%015d" % index, index),)))
        logs = [name for name in os.listdir(self.path) if name.endswith(".log")]
        self.assertEqual([os.path.getsize(os.path.join(self.path, name)) for name in logs], [0] * len(logs))
        engine.close()
        reopened = self.open()
        self.assertEqual((reopened.applied_index, reopened.count(b"k", b"l")), (50, 50))
        self.assertEqual(reopened.cluster_state.requests, ((b"r%015d" % 50, 50),))

    def test_sigkill_loses_only_commits_after_the_last_sync(self):
        """Without a WAL of its own, an engine killed with SIGKILL reopens at
        its last ``sync`` (or a later memtable flush), a batch boundary: the
        state raft's WAL replay starts from (with a WAL of its own the
        unsynced commits would come back too, and this would fail)."""
        script = textwrap.dedent(f"""
            import os, signal
            from metastore.storage.engine import Event, KeyValue
            from metastore.storage.rocksdb import RocksDBEngine
            engine = RocksDBEngine.open({self.path!r})
            for index in range(1, 201):
                engine.commit([Event(KeyValue(b"n%07d" % index, b"v", index + 1, index + 1, 1), 0)], index + 1, index)
                if index == 120:
                    engine.sync()
            os.kill(os.getpid(), signal.SIGKILL)
        """)
        subprocess.run([sys.executable, "-c", script], env=child_env(), timeout=60)
        engine = self.open()
        self.assertEqual((engine.applied_index, engine.revision), (120, 121))
        self.assertEqual(engine.count(b"n", b"o"), 120)
        self.assertIsNone(engine.get(b"n%07d" % 121))

    def test_membership_fields_are_every_field_but_the_requests(self):
        """The per-commit membership check compares every stored field: a
        field added to ClusterState must be added there too."""
        names = [f.name for f in fields(ClusterState) if f.name != "requests"]
        changed = {"voters": (9,), "learners": (9,), "members": (MemberRecord(9, "http://z:9"),),
                   "removed": (9,), "alarms": ((9, 1),), "auth": b"x"}
        self.assertEqual(sorted(changed), sorted(names))
        for name, value in changed.items():
            self.assertNotEqual(_membership_fields(CLUSTER), _membership_fields(replace(CLUSTER, **{name: value})))
        self.assertEqual(_membership_fields(CLUSTER), _membership_fields(replace(CLUSTER, requests=((b"r", 1),))))

    def test_recent_requests_survive_reopen_one_key_each(self):
        """The remembered request ids are written as they come and dropped
        as they are forgotten, and read back on open with the membership."""
        engine = self.open()
        first = replace(CLUSTER, removed=(9,), requests=((b"a" * 16, 5), (b"b" * 16, 6)))
        commit_changes(engine, {b"k": kv(b"k")}, 2, 6, first)
        later = replace(CLUSTER, removed=(9,), requests=((b"b" * 16, 6), (b"c" * 16, 7)))
        commit_changes(engine, {b"k": kv(b"k", revision=3, version=2)}, 3, 7, later)
        engine.close()
        reopened = self.open()
        self.assertEqual(reopened.cluster_state, later)
        stored = [key for key in reopened._live_db().keys() if key.startswith(META_REQUESTS)]
        self.assertEqual(len(stored), 2)

    def test_forgotten_requests_are_point_deletes(self):
        """A commit drops each forgotten request id with a delete of its own
        key (never a range deletion, which makes RocksDB reads quadratic in
        the commits since a flush) and writes only the new ids."""

        class RecordingBatch:
            def __init__(self):
                self.calls = []

            def put(self, key, value):
                self.calls.append(("put", key))

            def delete(self, key):
                self.calls.append(("delete", key))

        def stored(request_id, index):
            return META_REQUESTS + index.to_bytes(8, "big") + request_id

        old = ((b"a", 5), (b"b", 6), (b"c", 7))
        batch = RecordingBatch()
        _write_requests(batch, old, ((b"c", 7), (b"d", 8), (b"e", 9)))
        self.assertEqual(batch.calls, [
            ("delete", stored(b"a", 5)), ("delete", stored(b"b", 6)),
            ("put", stored(b"d", 8)), ("put", stored(b"e", 9)),
        ])
        batch = RecordingBatch()
        _write_requests(batch, old, ())
        self.assertEqual(batch.calls, [("delete", stored(request_id, index)) for request_id, index in old])

    def test_sliding_request_window_on_disk(self):
        """Over many commits, each forgetting the oldest id and adding one,
        the stored ids are exactly the last window, and so after a reopen."""
        engine = self.open()
        window = []
        for index in range(1, 301):
            window = (window + [(b"%08d" % index, index)])[-50:]
            commit_changes(engine, {b"k": kv(b"k", revision=index + 1, version=index)}, index + 1, index,
                           replace(CLUSTER, requests=tuple(window)))
        stored = [key for key in engine._live_db().keys() if key.startswith(META_REQUESTS)]
        self.assertEqual(len(stored), 50)
        engine.close()
        self.assertEqual(self.open().cluster_state.requests, tuple(window))

    def test_format_1_database_is_upgraded_on_open(self):
        """A database written by the seed (live keys only, format 1) opens
        with its keys as a history compacted at its revision."""
        seed = rocksdict.Rdict(self.path, rocksdict.Options(raw_mode=True))
        seed.put(b"m:format", (1).to_bytes(8, "big"))
        seed.put(b"m:revision", (7).to_bytes(8, "big"))
        seed.put(b"m:applied_index", (12).to_bytes(8, "big"))
        for found in (kv(b"a", b"1", revision=4), kv(b"b", b"2", revision=7, lease=3)):
            seed.put(b"k" + found.key, encode_key_value(found))
        seed.close()
        engine = self.open()
        self.assertEqual((engine.revision, engine.applied_index, engine.compacted_revision), (7, 12, 7))
        self.assertEqual(
            [(e.revision, e.kv) for e in engine.history()],
            [((4, 0), kv(b"a", b"1", revision=4)), ((7, 1), kv(b"b", b"2", revision=7, lease=3))],
        )
        self.assertEqual(engine.get(b"b", revision=7).lease, 3)
        engine.close()
        self.assertEqual(self.open().compacted_revision, 7)

    def test_cluster_state_stored_before_alarms_existed(self):
        """A membership stored without the alarms element reads as no alarms."""
        old = msgpack.packb([[1], [], [[1, "http://a:1", "", False]]])
        self.assertEqual(decode_cluster_state(old), ClusterState((1,), (), (MemberRecord(1, "http://a:1"),)))
        self.assertEqual(decode_cluster_state(encode_cluster_state(CLUSTER)), CLUSTER)

    def test_new_database_has_no_cluster_state(self):
        """A fresh database reports no membership, revision 1, index 0."""
        engine = self.open()
        self.assertEqual((engine.cluster_state, engine.revision, engine.applied_index), (None, 1, 0))

    def test_layout_is_the_seeds_and_created(self):
        """rocksdb_layout puts db, wal and snap under data/{id} and creates them."""
        data_dir = self.mktemp()
        layout = rocksdb_layout(data_dir, 7)
        root = os.path.join(data_dir, "data", "7")
        self.assertEqual(
            (layout.root, layout.db, layout.wal, layout.snap),
            (root, os.path.join(root, "db"), os.path.join(root, "wal"), os.path.join(root, "snap")),
        )
        for directory in (layout.db, layout.wal, layout.snap):
            self.assertTrue(os.path.isdir(directory))
        engine = RocksDBEngine.open(layout.db)
        engine.close()

    def test_failed_commit_changes_nothing(self):
        """A commit that fails while its batch is built writes no key and
        moves neither the revision nor the applied index."""
        engine = self.open()
        commit_changes(engine, {b"a": kv(b"a")}, 2, 1)
        broken = KeyValue(b"z", "not bytes", 3, 3, 1)
        with self.assertRaises(TypeError):
            commit_changes(engine, {b"b": kv(b"b", revision=3), b"z": broken}, 3, 2)
        engine.close()
        reopened = self.open()
        self.assertEqual((reopened.revision, reopened.applied_index), (2, 1))
        self.assertEqual([k.key for k in reopened.range(b"", b"\0")], [b"a"])

    def test_range_and_count_with_binary_keys(self):
        """Keys with 0x00 and 0xff bytes sort bytewise; range_end b"\\0"
        means to the end; metadata never shows up as a key."""
        engine = self.open()
        names = [b"", b"\x00", b"\x00\xff", b"a", b"\xfe", b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\xff"]
        commit_changes(engine, {name: kv(name) for name in names}, 2, 1, CLUSTER)

        def keys(key, range_end, limit=0):
            return [found.key for found in engine.range(key, range_end, limit=limit)]

        self.assertEqual(keys(b"", b"\0"), names)
        self.assertEqual(engine.count(b"", b"\0"), len(names))
        self.assertEqual(keys(b"\xff", b"\0"), [b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\xff"])
        self.assertEqual(keys(b"\xff", b"\xff\xff"), [b"\xff", b"\xff\x00"])
        self.assertEqual(engine.count(b"\xff\xff", b"\0"), 2)
        self.assertEqual(keys(b"\x00", b"\x01"), [b"\x00", b"\x00\xff"])
        self.assertEqual(keys(b"\xff", b"\0", limit=2), [b"\xff", b"\xff\x00"])
        self.assertEqual((keys(b"b", b"a"), engine.count(b"b", b"a")), ([], 0))
        self.assertEqual((keys(b"", None), engine.count(b"", None)), ([b""], 1))
        self.assertEqual(engine.count(b"\xff\xff\xff\xff", None), 0)

    def test_limit_across_read_chunks(self):
        """A limit larger than one internal read chunk yields exactly limit
        keys in order; count agrees with an unlimited range."""
        engine = self.open()
        commit_changes(engine, {b"%05d" % i: kv(b"%05d" % i) for i in range(1000)}, 2, 1)
        limited = [found.key for found in engine.range(b"00100", b"\0", limit=300)]
        self.assertEqual(limited, [b"%05d" % i for i in range(100, 400)])
        self.assertEqual(engine.count(b"00100", b"\0"), 900)
        self.assertEqual(len(list(engine.range(b"", b"\0"))), 1000)

    def test_snapshot_items_consistent_while_commits_continue(self):
        """A stream taken before a burst of commits, consumed on another
        thread during that burst, yields exactly the keys as they were."""
        engine = self.open()
        before = {b"k%04d" % i: kv(b"k%04d" % i, b"old") for i in range(2000)}
        commit_changes(engine, before, 2, 1)
        items = engine.snapshot_items()
        consumed: list[KeyValue] = []
        consumer = threading.Thread(target=lambda: consumed.extend(items))
        consumer.start()
        for step in range(200):
            commit_changes(engine, 
                {
                    b"k%04d" % (step * 10): kv(b"k%04d" % (step * 10), b"new", revision=3 + step),
                    b"k%04d" % (step * 10 + 1): None,
                    b"j%04d" % step: kv(b"j%04d" % step, revision=3 + step),
                },
                3 + step,
                2 + step,
            )
        consumer.join(timeout=60)
        self.assertFalse(consumer.is_alive())
        self.assertEqual([event.kv for event in consumed], list(before.values()))
        self.assertEqual(engine.count(b"", b"\0"), 2000)

    def test_snapshot_items_are_single_pass(self):
        """A second iteration of one snapshot stream is refused, not empty."""
        engine = self.open()
        commit_changes(engine, {b"a": kv(b"a")}, 2, 1)
        items = engine.snapshot_items()
        self.assertEqual([found.kv.key for found in items], [b"a"])
        with self.assertRaises(RuntimeError):
            iter(items)

    def test_close_cuts_off_open_streams(self):
        """Closing the engine ends an unfinished stream with
        EngineClosedError and really releases the database for reopening."""
        engine = RocksDBEngine.open(self.path)
        commit_changes(engine, {b"k%04d" % i: kv(b"k%04d" % i) for i in range(600)}, 2, 1)
        items = iter(engine.snapshot_items())
        next(items)
        engine.close()
        with self.assertRaises(EngineClosedError):
            list(items)
        self.assertEqual(self.open().count(b"", b"\0"), 600)

    def test_sync_on_another_thread_while_committing(self):
        """sync() from a worker thread runs alongside reactor-thread commits."""
        engine = self.open()
        errors: list[BaseException] = []
        done = threading.Event()

        def sync_repeatedly():
            for _ in range(1000):
                if done.is_set():
                    return
                try:
                    engine.sync()
                except BaseException as error:
                    errors.append(error)
                    return

        syncer = threading.Thread(target=sync_repeatedly)
        syncer.start()
        for index in range(1, 301):
            commit_changes(engine, {b"k%d" % index: kv(b"k%d" % index, revision=index + 1)}, index + 1, index)
        done.set()
        syncer.join(timeout=60)
        self.assertEqual((errors, syncer.is_alive(), engine.applied_index), ([], False, 300))

    def test_open_locked_by_another_process_names_path(self):
        """A database held by another process cannot be opened; the error
        names the path."""
        RocksDBEngine.open(self.path).close()
        holder = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import sys
                from metastore.storage.rocksdb import RocksDBEngine
                engine = RocksDBEngine.open({self.path!r})
                print("open", flush=True)
                sys.stdin.read()
                engine.close()
            """)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(),
        )
        self.addCleanup(holder.wait, 30)
        self.addCleanup(holder.stdin.close)
        self.assertEqual(holder.stdout.readline(), b"open\n")
        with self.assertRaises(EngineOpenError) as raised:
            RocksDBEngine.open(self.path)
        self.assertEqual(raised.exception.path, os.path.abspath(self.path))
        self.assertIn(os.path.abspath(self.path), str(raised.exception))

    def test_open_twice_in_one_process_names_path(self):
        """A second engine on the same path in this process is refused too."""
        self.open()
        with self.assertRaises(EngineOpenError) as raised:
            RocksDBEngine.open(self.path)
        self.assertIn(os.path.abspath(self.path), str(raised.exception))

    def test_open_corrupt_database_names_path(self):
        """A database whose CURRENT file is garbage gives EngineOpenError."""
        RocksDBEngine.open(self.path).close()
        with open(os.path.join(self.path, "CURRENT"), "wb") as current:
            current.write(b"garbage\n")
        with self.assertRaises(EngineOpenError) as raised:
            RocksDBEngine.open(self.path)
        self.assertEqual(raised.exception.path, os.path.abspath(self.path))

    def test_open_foreign_database_is_refused(self):
        """A RocksDB database with data but no MetaStore format marker is
        not mistaken for an empty store."""
        foreign = rocksdict.Rdict(self.path, rocksdict.Options(raw_mode=True))
        foreign.put(b"someone", b"else")
        foreign.close()
        with self.assertRaises(EngineOpenError):
            RocksDBEngine.open(self.path)

    def test_reopen_after_sigkill_mid_burst(self):
        """After SIGKILL during a burst of commits, every commit covered by
        a returned sync() is there and the applied index matches the data
        exactly: keys n1..nA present, nA+1 absent, revision A+1."""
        script = textwrap.dedent(f"""
            from metastore.storage.engine import Event, KeyValue
            from metastore.storage.rocksdb import RocksDBEngine
            engine = RocksDBEngine.open({self.path!r})
            value = bytes(range(256)) * 4
            for index in range(1, 200001):
                changes = [Event(KeyValue(b"n%07d" % index, value, index + 1, index + 1, 1), 0)]
                for filler in range(20):
                    name = b"f%02d" % filler
                    changes.append(Event(KeyValue(name, value, 2, index + 1, index), filler + 1))
                engine.commit(changes, index + 1, index)
                if index % 50 == 0:
                    engine.sync()
                    print(index, flush=True)
        """)
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=child_env())
        synced = 0
        for _ in range(40):
            line = child.stdout.readline()
            if not line:
                break
            synced = int(line)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        self.assertGreater(synced, 0)

        engine = self.open()
        applied = engine.applied_index
        self.assertGreaterEqual(applied, synced)
        self.assertEqual(engine.revision, applied + 1)
        self.assertEqual(engine.count(b"n", b"o"), applied)
        self.assertIsNotNone(engine.get(b"n%07d" % applied))
        self.assertIsNone(engine.get(b"n%07d" % (applied + 1)))
        self.assertEqual({found.version for found in engine.range(b"f", b"g")}, {applied})


class RestoreTests(SynchronousTestCase):
    """restore replaces the database atomically, even across crashes."""

    OLD = {b"old%d" % i: kv(b"old%d" % i, b"x") for i in range(5)}
    NEW = [kv(b"new%03d" % i, b"y" * 100, revision=9) for i in range(300)]
    NEW_EVENTS = [Event(found, sub) for sub, found in enumerate(NEW)]

    def setUp(self):
        self.path = os.path.abspath(os.path.join(self.mktemp(), "db"))
        engine = RocksDBEngine.open(self.path)
        commit_changes(engine, self.OLD, 2, 10, ClusterState(voters=(1,)))
        engine.close()

    def assert_old_state(self, engine):
        """``engine`` holds exactly what setUp committed."""
        self.assertEqual([found.key for found in engine.range(b"", b"\0")], sorted(self.OLD))
        self.assertEqual((engine.revision, engine.applied_index), (2, 10))
        self.assertEqual(engine.cluster_state, ClusterState(voters=(1,)))

    def assert_new_state(self, engine):
        """``engine`` holds exactly what the restore wrote."""
        self.assertEqual(list(engine.range(b"", b"\0")), self.NEW)
        self.assertEqual((engine.revision, engine.applied_index, engine.cluster_state), (9, 40, CLUSTER))

    def assert_no_leftovers(self):
        """Only the live database directory remains."""
        for suffix in (RESTORE_TMP_SUFFIX, RESTORE_READY_SUFFIX, RESTORE_OLD_SUFFIX):
            self.assertFalse(os.path.exists(self.path + suffix), suffix)

    def reopen(self) -> RocksDBEngine:
        """Open the database the way a restarted node would."""
        engine = RocksDBEngine.open(self.path)
        self.addCleanup(engine.close)
        return engine

    def test_restore_replaces_and_survives_reopen(self):
        """A finished restore is the whole new state, also after reopening."""
        engine = RocksDBEngine.open(self.path)
        engine.restore(iter(self.NEW_EVENTS), 9, 40, CLUSTER)
        self.assert_new_state(engine)
        commit_changes(engine, {b"after": kv(b"after", revision=10)}, 10, 41)
        engine.close()
        reopened = self.reopen()
        self.assertEqual((reopened.revision, reopened.applied_index), (10, 41))
        self.assertEqual(reopened.count(b"", b"\0"), len(self.NEW) + 1)
        self.assert_no_leftovers()

    def test_restore_from_another_engines_stream(self):
        """Items streamed from another engine's snapshot restore as-is."""
        source = RocksDBEngine.open(os.path.join(self.mktemp(), "source"))
        self.addCleanup(source.close)
        commit_changes(source, {found.key: found for found in self.NEW}, 9, 40, CLUSTER)
        engine = self.reopen()
        engine.restore(source.snapshot_items(), 9, 40, CLUSTER)
        self.assert_new_state(engine)

    def test_failing_items_keep_the_live_database(self):
        """If the items fail midway, nothing changes and the engine works on."""

        def failing_items():
            yield from self.NEW_EVENTS[:100]
            raise ValueError("snapshot file damaged")

        engine = self.reopen()
        with self.assertRaises(ValueError):
            engine.restore(failing_items(), 9, 40, CLUSTER)
        self.assert_old_state(engine)
        self.assert_no_leftovers()
        commit_changes(engine, {}, 2, 11)
        self.assertEqual(engine.applied_index, 11)

    def test_restore_cuts_off_open_streams(self):
        """A stream of the replaced database ends with EngineClosedError
        (it holds more keys than one internal read chunk)."""
        engine = self.reopen()
        commit_changes(engine, {b"more%04d" % i: kv(b"more%04d" % i) for i in range(600)}, 3, 11)
        items = iter(engine.snapshot_items())
        next(items)
        engine.restore(iter(self.NEW_EVENTS), 9, 40, CLUSTER)
        with self.assertRaises(EngineClosedError):
            list(items)
        self.assert_new_state(engine)

    def crash_during_restore(self, step: str | None, items=None):
        """Run a restore that "crashes" right after ``step`` (or inside
        ``items``), then release what the dead process would have held."""

        class SimulatedCrash(BaseException):
            """The process dies here."""

        class CrashingEngine(RocksDBEngine):
            """An engine whose process dies after one restore step."""

            def _after_restore_step(self, reached):
                """Die right after ``step``."""
                if reached == step:
                    raise SimulatedCrash(reached)

        engine = CrashingEngine.open(self.path)
        if items is None:
            items = iter(self.NEW_EVENTS)
        else:
            items = items(SimulatedCrash)
        with self.assertRaises(SimulatedCrash):
            engine.restore(items, 9, 40, CLUSTER)
        engine.close()

    def test_crash_while_building_leaves_old_state(self):
        """A crash while the new database is half built: open removes the
        tmp database and finds the old state."""

        def dying_items(crash):
            yield from self.NEW_EVENTS[:150]
            raise crash("killed")

        self.crash_during_restore(None, dying_items)
        self.assertTrue(os.path.exists(self.path + RESTORE_TMP_SUFFIX))
        self.assert_old_state(self.reopen())
        self.assert_no_leftovers()

    def test_crash_after_build_before_commit_point_leaves_old_state(self):
        """A complete but not yet renamed tmp database is discarded."""
        self.crash_during_restore("built")
        self.assert_old_state(self.reopen())
        self.assert_no_leftovers()

    def test_crash_after_commit_point_rolls_forward(self):
        """From the rename to restore-ready on, every crash point ends in
        the new state after open, with nothing left over."""
        for step in ("ready", "live-closed", "old-moved-aside", "new-in-place", "old-removed"):
            self.setUp()
            self.crash_during_restore(step)
            engine = RocksDBEngine.open(self.path)
            try:
                self.assert_new_state(engine)
                self.assert_no_leftovers()
            finally:
                engine.close()

    def test_failed_swap_step_leaves_a_usable_engine(self):
        """An error (not a crash) during the directory swap is raised, and
        the engine is reopened at the new state and keeps working."""

        class FailingEngine(RocksDBEngine):
            """An engine whose swap hits an I/O error."""

            def _after_restore_step(self, reached):
                """Fail the rename that puts the new database in place."""
                if reached == "old-moved-aside":
                    raise OSError("disk trouble (injected)")

        engine = FailingEngine.open(self.path)
        self.addCleanup(engine.close)
        with self.assertRaises(OSError):
            engine.restore(iter(self.NEW_EVENTS), 9, 40, CLUSTER)
        self.assert_new_state(engine)
        self.assert_no_leftovers()
        commit_changes(engine, {}, 9, 41)
        self.assertEqual(engine.applied_index, 41)

    def test_lone_old_database_is_put_back(self):
        """If only restore-old is there (the live one gone), open restores it."""
        os.rename(self.path, self.path + RESTORE_OLD_SUFFIX)
        self.assert_old_state(self.reopen())
        self.assert_no_leftovers()
