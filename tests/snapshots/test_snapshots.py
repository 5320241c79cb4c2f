"""Snapshots and log compaction on one member: taken after apply, log
compacted behind them, restart from snapshot + WAL, bounded disk, and the
fallback rules when a snapshot file is damaged."""

from __future__ import annotations

import glob
import os

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from metastore.config import Config
from metastore.errors import StartupError
from metastore.kv.commands import Put
from metastore.kv.dedup import DEFAULT_SPAN
from metastore.raft.types import ConfState, Entry, HardState, SnapshotMetadata
from metastore.snapshots.recovery import align_wal, recover
from metastore.service import open_member
from metastore.storage.engine import ClusterState, Event, KeyValue, MemberRecord
from metastore.storage.memory import MemoryEngine
from metastore.snapshots.format import SnapshotDirectory, SnapshotHeader, read_snapshot, write_snapshot
from metastore.storage.wal import WAL, WALState
from tests.process import start_healthy, wait_until


def keyspace(member) -> list[KeyValue]:
    """Every live key of a member, with its metadata."""
    return list(member.node.store.engine.range(b"", b"\0"))


def directory_bytes(path: str) -> int:
    """Total size of the files in ``path``."""
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(path, "*")) if os.path.isfile(p))


class EmbeddedMemberTestCase(TestCase):
    """Runs one member in this process on a free port."""

    timeout = 240

    async def start(self, data_dir: str, **overrides):
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=data_dir, **overrides).validate()
        member = open_member(config, reactor)
        member.startService()
        self.addCleanup(lambda: member.running and member.stopService())
        await member.http.listening
        await wait_until(lambda: member.node.is_leader, timeout=10, what="leadership")
        return member

    async def write(self, member, count: int, keys: int | None = None, batch: int = 200) -> None:
        """``count`` puts (over ``keys`` distinct keys when given), ``batch`` at a time."""
        for start in range(0, count, batch):
            await defer.gatherResults([
                member.node.propose(Put(b"key-%d" % (i % keys if keys else i), b"value-%d" % i))
                for i in range(start, min(count, start + batch))
            ])

    async def settled(self, member) -> None:
        """Wait until no snapshot is being written and no WAL marker is pending."""
        node = member.node
        await wait_until(
            lambda: not node.compaction.snapshotter.in_progress and node.compaction.pending_marker is None and not node._cycle_running,
            timeout=30, what="snapshot work to finish",
        )


class SnapshotTests(EmbeddedMemberTestCase):
    """Automatic snapshots and compaction."""

    async def test_snapshot_follows_apply_and_compacts_the_log(self):
        """After snapshot-count applied entries a snapshot of exactly the
        applied state is written, and raft's log is compacted behind it."""
        data_dir = self.mktemp()
        member = await self.start(data_dir, snapshot_count=100, snapshot_catchup_entries=20)
        await self.write(member, 350)
        await self.settled(member)
        node = member.node
        self.assertGreaterEqual(node.compaction.snapshotter.snapshot_index, 300)
        self.assertGreater(node.raft_storage.first_index(), 200)
        [(index, term, path)] = node.compaction.snapshotter.directory.snapshots()[-1:]
        header, items = read_snapshot(path)
        self.assertLessEqual(header.index, node.applied_index)
        items = list(items)
        self.assertTrue(all(event.kv.mod_revision <= header.revision for event in items))
        self.assertEqual(len(items), header.revision - 1)  # one new key per revision, revision 1 = empty
        self.assertEqual([m.member_id for m in header.cluster_state.members], [1])

    async def test_restart_from_snapshot_and_wal(self):
        """A restarted member comes back with every key, revision and
        retained past version intact (the snapshot carries the history)."""
        data_dir = self.mktemp()
        member = await self.start(data_dir, snapshot_count=100, snapshot_catchup_entries=10)
        await self.write(member, 333, keys=50)
        await self.settled(member)
        before, revision = keyspace(member), member.node.store.revision
        history = list(member.node.store.engine.history())
        await member.stopService()
        again = await self.start(data_dir, snapshot_count=100, snapshot_catchup_entries=10)
        await wait_until(lambda: again.node.applied_index >= 333, timeout=20, what="replay")
        self.assertEqual((keyspace(again), again.node.store.revision), (before, revision))
        self.assertEqual(list(again.node.store.engine.history()), history)
        self.assertEqual(again.node.store.get(b"key-7", 9).value, b"value-7")
        self.assertGreater(again.node.compaction.snapshotter.snapshot_index, 0)

    async def test_disk_stays_bounded(self):
        """200,000 writes over a few hot keys leave WAL + snapshots small."""
        data_dir = self.mktemp()
        segment = 256 * 1024
        retention = 100
        member = await self.start(
            data_dir,
            snapshot_count=1000,
            snapshot_catchup_entries=500,
            max_snapshots=2,
            wal_segment_bytes=segment,
            auto_compaction_retention=str(retention),
        )
        await self.write(member, 200_000, keys=8, batch=1000)
        await self.settled(member)
        config = member.config
        wal, snaps = directory_bytes(config.wal_dir), directory_bytes(config.snap_dir)
        live = sum(len(kv.key) + len(kv.value) for kv in keyspace(member))
        # Auto-compaction lags the writes by at most two batches of 1,000 between
        # its checks; each retained version costs its key, value and revisions.
        history = (retention + 2 * 1000) * (live // 8 + 40)
        # The request ids remembered against re-proposals (metastore.kv.dedup):
        # at most one per index in the span, each a 16-byte id and an index.
        remembered = DEFAULT_SPAN * 32
        # The bound does not grow with the number of writes: a few segments
        # (the tail kept for followers) plus two small snapshot files.
        self.assertLess(wal, 4 * segment, f"WAL {wal} bytes")
        self.assertLess(snaps, 2 * (1024 + 100 * live + history + remembered), f"snapshots {snaps} bytes")
        self.assertLessEqual(len(glob.glob(os.path.join(config.snap_dir, "*.snap"))), 2)


def _cluster() -> ClusterState:
    return ClusterState(voters=(1,), members=(MemberRecord(1, "http://127.0.0.1:1"),))


def _kv(n: int) -> Event:
    return Event(KeyValue(b"k%03d" % n, b"v", n + 1, n + 1, 1), 0)


class RecoveryRuleTests(SynchronousTestCase):
    """Which snapshot a restart uses, and when it refuses."""

    def setUp(self):
        self.snapshots = SnapshotDirectory(self.mktemp())

    def snapshot(self, index: int, keys: int) -> str:
        header = SnapshotHeader(index=index, term=1, revision=keys + 1, cluster_state=_cluster())
        return write_snapshot(self.snapshots.directory, header, [_kv(n) for n in range(1, keys + 1)])

    def wal_state(self, first: int, last: int, marker: int | None) -> WALState:
        entries = [Entry(1, i) for i in range(first, last + 1)]
        covered = [e for e in entries if marker is not None and e.index <= marker]
        return WALState(
            metadata=b"", hard_state=HardState(1, 1, last),
            snapshot=None if marker is None else SnapshotMetadata(marker, 1, ConfState(voters=(1,))),
            entries=[e for e in entries if marker is None or e.index > marker],
            covered_entries=covered,
        )

    def damage(self, path: str) -> None:
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            f.write(b"\xde\xad\xbe\xef")

    def test_newest_snapshot_is_used(self):
        """With two good files the newest wins; only later entries replay."""
        self.snapshot(10, 3)
        self.snapshot(20, 5)
        engine = MemoryEngine()
        recovered = recover(self.wal_state(15, 30, 20), self.snapshots, engine, "wal")
        self.assertEqual((recovered.applied_index, recovered.entries[0].index, len(engine)), (20, 21, 5))

    def test_damaged_newest_falls_back_when_the_wal_covers_the_gap(self):
        """A corrupt newest file falls back to the older one the WAL reaches."""
        self.snapshot(10, 3)
        self.damage(self.snapshot(20, 5))
        engine = MemoryEngine()
        recovered = recover(self.wal_state(11, 30, 20), self.snapshots, engine, "wal")
        self.assertEqual((recovered.applied_index, recovered.entries[0].index, len(engine)), (10, 11, 3))

    def test_refuses_when_nothing_covers_the_compacted_log(self):
        """A corrupt newest file and a WAL starting after the older one: refuse, saying why."""
        self.snapshot(10, 3)
        newest = self.snapshot(20, 5)
        self.damage(newest)
        error = self.assertRaises(StartupError, recover, self.wal_state(16, 30, 20), self.snapshots, MemoryEngine(), "wal")
        self.assertIn("starts at entry 16", str(error))
        self.assertIn(os.path.basename(newest), str(error))

    def test_no_snapshot_and_a_whole_log_replays_everything(self):
        """Without snapshot files a log from entry 1 is replayed whole."""
        recovered = recover(self.wal_state(1, 5, None), self.snapshots, MemoryEngine(), "wal")
        self.assertEqual((recovered.snapshot, [e.index for e in recovered.entries]), (None, [1, 2, 3, 4, 5]))

    def test_a_snapshot_file_beyond_the_wal_is_marked_in_it(self):
        """A received snapshot file is durable before the WAL's marker for
        it; after a crash in between, the restarted member starts raft's log
        at the file and the WAL must accept the entries after it (it refused
        them: found by the node simulation, tests.node_sim seeds 12 and 59)."""
        wal_dir = self.mktemp()
        wal, _ = WAL.open(wal_dir)
        wal.save(HardState(1, 1, 4), [Entry(1, i) for i in range(1, 5)])
        wal.sync()
        wal.close()
        self.snapshot(14, 3)
        wal, state = WAL.open(wal_dir)
        self.addCleanup(wal.close)
        recovered = recover(state, self.snapshots, MemoryEngine(), wal_dir)
        self.assertEqual((recovered.applied_index, recovered.entries), (14, []))
        align_wal(wal, state, recovered)
        wal.save(HardState(1, 1, 15), [Entry(1, 15)])
        wal.sync()
        wal.close()
        _, state = WAL.open(wal_dir)
        self.assertEqual((state.snapshot.index, [e.index for e in state.entries]), (14, [15]))


class SnapshotProcessTests(TestCase):
    """Snapshots in a real ``twistd metastore`` process killed with SIGKILL."""

    timeout = 180

    def member(self, *flags: str):
        from tests.process import Member, free_port

        member = Member(1, [f"http://127.0.0.1:{free_port()}"], free_port(), os.path.abspath(self.mktemp()), list(flags))
        self.addCleanup(member.kill)
        return member

    async def start(self, member) -> None:
        await start_healthy(member)

    async def put(self, member, key: str, value: bytes) -> str:
        import treq

        response = await treq.put(f"{member.url}/{key}", data=value, persistent=False)
        await treq.content(response)
        self.assertEqual(response.code, 204)
        return response.headers.getRawHeaders("ETag")[0]

    async def get(self, member, key: str) -> tuple[int, bytes, str | None]:
        import treq

        response = await treq.get(f"{member.url}/{key}", persistent=False)
        body = await treq.content(response)
        tag = response.headers.getRawHeaders("ETag")
        return response.code, body, tag[0] if tag else None

    async def status(self, member) -> dict:
        import treq

        response = await treq.get(member.url + "/admin/status", persistent=False)
        return await treq.json_content(response)

    async def test_snapshot(self):
        """Snapshots are taken as writes are applied, the log is compacted, and
        after SIGKILL the member returns from snapshot + WAL with every key
        and revision (the original project's test name)."""
        member = self.member("--snapshot-count", "50", "--snapshot-catchup-entries", "10")
        await self.start(member)
        tags = {}
        for i in range(230):
            tags[f"k{i % 60}"] = (b"v%d" % i, await self.put(member, f"k{i % 60}", b"v%d" % i))
        status = await self.status(member)
        self.assertGreaterEqual(status["snapshot_index"], 150)
        self.assertGreater(status["first_log_index"], 100)
        member.kill()
        await self.start(member)
        for key, (value, tag) in tags.items():
            self.assertEqual(await self.get(member, key), (200, value, tag))

    async def test_sigkill_during_snapshots_loses_nothing(self):
        """Killed at random points of a write burst with a snapshot every 10
        entries, the member always restarts with every acknowledged write."""
        member = self.member("--snapshot-count", "10", "--snapshot-catchup-entries", "3", "--max-snapshots", "2")
        acknowledged = {}
        from tests.process import burst_then_kill

        for round_number in range(3):
            await self.start(member)

            async def put(i: int, prefix=f"r{round_number}-") -> bool:
                await self.put(member, f"{prefix}{i}", b"%d" % i)
                return True

            outcome = await burst_then_kill(member, put, count=150, kill_after=25 + 30 * round_number)
            acknowledged.update({f"r{round_number}-{i}": b"%d" % i for i, ok in outcome.items() if ok})
        await self.start(member)
        self.assertGreaterEqual(len(acknowledged), 25 + 55 + 85)
        for key, value in acknowledged.items():
            code, body, _ = await self.get(member, key)
            self.assertEqual((code, body), (200, value), key)

    async def test_leftover_temporary_snapshot_is_ignored(self):
        """A half-written snapshot (crash before the rename) is removed at
        start and never used."""
        member = self.member("--snapshot-count", "20")
        await self.start(member)
        for i in range(45):
            await self.put(member, f"k{i}", b"v")
        member.kill()
        snap_dir = os.path.join(member.workdir, "metaStore-1-snap")
        leftover = os.path.join(snap_dir, "00000000000000ff-0000000000000002.snap.tmp")
        with open(leftover, "wb") as f:
            f.write(b"half a snapshot")
        await self.start(member)
        self.assertFalse(os.path.exists(leftover))
        self.assertEqual((await self.get(member, "k44"))[:2], (200, b"v"))
