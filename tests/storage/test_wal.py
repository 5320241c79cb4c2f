"""Tests for the write-ahead log, metastore.storage.wal."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from metastore.raft.types import ConfState, Entry, HardState, SnapshotMetadata
from metastore.storage.errors import WALCorruptionError
from metastore.storage.wal import WAL, WALState, segment_name

from .helpers import entries, segment_paths


class WALTestMixin:
    """Opens WALs in fresh directories and closes them after the test."""

    def open(self, directory: str | None = None, **kwargs) -> tuple[WAL, WALState]:
        """Open a WAL (in a new temporary directory unless given); it is closed at cleanup."""
        if directory is None:
            directory = self.mktemp()
        wal, state = WAL.open(directory, **kwargs)
        self.addCleanup(wal.close)
        return wal, state

    def reopen(self, wal: WAL, directory: str, **kwargs) -> tuple[WAL, WALState]:
        """Close ``wal`` and open ``directory`` again."""
        wal.close()
        return self.open(directory, **kwargs)


class RoundTripTests(WALTestMixin, SynchronousTestCase):
    """What is saved comes back from replay."""

    def test_new_wal_is_empty(self) -> None:
        """A new WAL replays to its metadata and nothing else."""
        _, state = self.open(metadata=b"node-1")
        self.assertEqual(state, WALState(b"node-1", HardState(), None, []))

    def test_round_trip(self) -> None:
        """Entries, hard state, metadata and snapshot marker survive a reopen."""
        d = self.mktemp()
        wal, _ = self.open(d, metadata=b"\x00cluster\xff")
        wal.save(HardState(1, 3, 0), entries(1, 10))
        wal.save_snapshot(SnapshotMetadata(4, 1, ConfState((1, 2, 3), (4,))))
        wal.save(HardState(2, 3, 6), entries(11, 12, term=2))
        wal.sync()
        _, state = self.reopen(wal, d, metadata=b"ignored when the WAL exists")
        self.assertEqual(
            state,
            WALState(
                b"\x00cluster\xff",
                HardState(2, 3, 6),
                SnapshotMetadata(4, 1, ConfState((1, 2, 3), (4,))),
                entries(5, 10) + entries(11, 12, term=2),
            ),
        )

    def test_conflict_overwrite(self) -> None:
        """An entry written at an index already in the log replaces it and all after it."""
        d = self.mktemp()
        wal, _ = self.open(d)
        wal.save(None, entries(1, 10))
        wal.save(None, entries(6, 7, term=2))
        wal.save(None, entries(8, 8, term=3))
        _, state = self.reopen(wal, d)
        self.assertEqual(
            state.entries, entries(1, 5) + entries(6, 7, term=2) + entries(8, 8, term=3)
        )

    def test_snapshot_keeps_matching_tail(self) -> None:
        """A marker whose term matches the log's entry at its index keeps the later entries."""
        d = self.mktemp()
        wal, _ = self.open(d)
        wal.save(None, entries(1, 10))
        wal.save_snapshot(SnapshotMetadata(7, 1))
        wal.save(None, entries(11, 11))
        _, state = self.reopen(wal, d)
        self.assertEqual(state.entries, entries(8, 11))

    def test_snapshot_drops_mismatching_tail(self) -> None:
        """A marker whose term differs from the log's entry at its index drops every entry."""
        d = self.mktemp()
        wal, _ = self.open(d)
        wal.save(None, entries(1, 10))
        wal.save_snapshot(SnapshotMetadata(7, 5))
        wal.save(None, entries(8, 9, term=5))
        _, state = self.reopen(wal, d)
        self.assertEqual((state.snapshot.index, state.entries), (7, entries(8, 9, term=5)))

    def test_snapshot_beyond_log(self) -> None:
        """A marker past the end of the log leaves no entries; the log resumes after it."""
        d = self.mktemp()
        wal, _ = self.open(d)
        wal.save(None, entries(1, 3))
        wal.save_snapshot(SnapshotMetadata(100, 4))
        self.assertRaises(ValueError, wal.save, None, entries(4, 4))
        wal.save(None, entries(101, 101, term=4))
        _, state = self.reopen(wal, d)
        self.assertEqual(state.entries, entries(101, 101, term=4))

    def test_unchanged_hard_state_not_rewritten(self) -> None:
        """Saving the same hard state again, with no entries, writes nothing."""
        d = self.mktemp()
        wal, _ = self.open(d)
        wal.save(HardState(1, 1, 0), [])
        size = os.path.getsize(segment_paths(d)[0])
        wal.save(HardState(1, 1, 0), [])
        wal.save(None, [])
        self.assertEqual(os.path.getsize(segment_paths(d)[0]), size)

    def test_invalid_saves_refused_without_failing(self) -> None:
        """Gaps, non-contiguous batches and entries under the snapshot raise ValueError only."""
        wal, _ = self.open()
        wal.save(None, entries(1, 5))
        wal.save_snapshot(SnapshotMetadata(3, 1))
        self.assertRaises(ValueError, wal.save, None, entries(7, 8))
        self.assertRaises(ValueError, wal.save, None, entries(2, 4))
        self.assertRaises(ValueError, wal.save, None, [Entry(1, 6), Entry(1, 8)])
        self.assertRaises(ValueError, wal.save_snapshot, SnapshotMetadata(2, 1))
        self.assertRaises(ValueError, wal.save_snapshot, SnapshotMetadata(3, 9))
        self.assertFalse(wal.failed)
        wal.save(None, entries(6, 6))


class SegmentTests(WALTestMixin, SynchronousTestCase):
    """Bounded segments, their names, and releasing old ones."""

    def test_rollover_and_replay(self) -> None:
        """Small segments roll over, stay within the bound, and replay as one log."""
        d = self.mktemp()
        wal, _ = self.open(d, metadata=b"m", segment_bytes=300)
        for i in range(1, 41):
            wal.save(HardState(1, 1, i - 1), entries(i, i))
        wal.save(None, entries(30, 31, term=2))
        wal.sync()
        paths = segment_paths(d)
        self.assertGreater(len(paths), 5)
        self.assertTrue(all(os.path.getsize(p) <= 300 for p in paths))
        self.assertEqual(os.path.basename(paths[0]), segment_name(0, 1))
        self.assertEqual(
            [int(os.path.basename(p)[:16], 16) for p in paths], list(range(len(paths)))
        )
        _, state = self.reopen(wal, d, segment_bytes=300)
        self.assertEqual(
            state,
            WALState(b"m", HardState(1, 1, 39), None, entries(1, 29) + entries(30, 31, term=2)),
        )

    def test_name_carries_first_index(self) -> None:
        """A segment's name carries the first index written to it."""
        d = self.mktemp()
        wal, _ = self.open(d, segment_bytes=200)
        wal.save(None, entries(1, 20))
        wal.save(None, entries(21, 22))
        self.assertEqual(os.path.basename(segment_paths(d)[1]), segment_name(1, 21))

    def test_oversized_batch_fits_one_segment(self) -> None:
        """A batch larger than the bound is written whole, in a segment of its own."""
        d = self.mktemp()
        wal, _ = self.open(d, segment_bytes=100)
        wal.save(None, entries(1, 50))
        wal.save(None, entries(51, 100))
        self.assertEqual(len(segment_paths(d)), 2)
        _, state = self.reopen(wal, d)
        self.assertEqual(state.entries, entries(1, 100))

    def _fill(self, d: str) -> WAL:
        """A WAL in ``d`` with entries 1..40 over several segments, a synced snapshot at 30."""
        wal, _ = self.open(d, segment_bytes=300)
        for i in range(1, 41):
            wal.save(HardState(1, 1, i), entries(i, i))
        wal.save_snapshot(SnapshotMetadata(30, 1, ConfState((1,))))
        wal.sync()
        return wal

    def test_release_to(self) -> None:
        """release_to deletes the oldest segments holding only entries below the index."""
        d = self.mktemp()
        wal = self._fill(d)
        before = segment_paths(d)
        wal.release_to(25)
        after = segment_paths(d)
        self.assertLess(len(after), len(before))
        self.assertEqual(after, before[len(before) - len(after) :])
        _, state = self.reopen(wal, d, segment_bytes=300)
        self.assertEqual(
            state,
            WALState(
                b"", HardState(1, 1, 40), SnapshotMetadata(30, 1, ConfState((1,))), entries(31, 40)
            ),
        )

    def test_release_keeps_current_segment(self) -> None:
        """Even when every entry is covered, the current segment stays."""
        d = self.mktemp()
        wal, _ = self.open(d, segment_bytes=300)
        wal.save(None, entries(1, 40))
        wal.save_snapshot(SnapshotMetadata(40, 1))
        wal.sync()
        wal.release_to(41)
        self.assertEqual(len(segment_paths(d)), 1)

    def test_release_beyond_synced_snapshot_refused(self) -> None:
        """release_to past the latest synced snapshot marker raises ValueError."""
        d = self.mktemp()
        wal = self._fill(d)
        wal.save_snapshot(SnapshotMetadata(35, 1))
        self.assertRaises(ValueError, wal.release_to, 36)
        wal.sync()
        wal.release_to(36)

    def test_release_waits_for_durable_successor(self) -> None:
        """A segment whose successor is not yet synced is kept until a sync."""
        d = self.mktemp()
        wal = self._fill(d)
        wal.save_snapshot(SnapshotMetadata(40, 1))
        wal.sync()
        synced = segment_paths(d)
        wal.save(None, entries(41, 60))
        self.assertGreater(len(segment_paths(d)), len(synced))
        wal.release_to(41)
        self.assertIn(synced[-1], segment_paths(d))
        wal.sync()
        wal.release_to(41)
        self.assertNotIn(synced[-1], segment_paths(d))
        _, state = self.reopen(wal, d, segment_bytes=300)
        self.assertEqual(state.entries, entries(41, 60))

    def test_missing_segment_refused(self) -> None:
        """A hole in the segment sequence refuses to open, naming the segment after it."""
        d = self.mktemp()
        wal = self._fill(d)
        wal.close()
        paths = segment_paths(d)
        os.unlink(paths[2])
        e = self.assertRaises(WALCorruptionError, WAL.open, d)
        self.assertEqual(e.path, os.path.abspath(paths[3]))

    def test_released_too_far_refused(self) -> None:
        """Deleting segments whose entries no snapshot covers is reported as missing entries."""
        d = self.mktemp()
        wal, _ = self.open(d, segment_bytes=300)
        wal.save(None, entries(1, 40))
        wal.save(None, entries(41, 80))
        wal.close()
        os.unlink(segment_paths(d)[0])
        e = self.assertRaises(WALCorruptionError, WAL.open, d)
        self.assertIn("1..40 are missing", str(e))


class CoveredEntriesTests(SynchronousTestCase):
    """Replay keeps the entries a snapshot marker covers, while segments hold them."""

    def test_entries_below_the_marker_are_reported(self):
        """Entries up to the marker come back as covered_entries, in order."""
        directory = self.mktemp()
        wal, _ = WAL.open(directory)
        wal.save(HardState(1, 1, 6), [Entry(1, i, data=b"%d" % i) for i in range(1, 7)])
        wal.save_snapshot(SnapshotMetadata(4, 1, ConfState(voters=(1,))))
        wal.sync()
        wal.close()
        _, state = WAL.open(directory)
        self.assertEqual([e.index for e in state.covered_entries], [1, 2, 3, 4])
        self.assertEqual([e.index for e in state.entries], [5, 6])

    def test_marker_off_the_log_covers_nothing(self):
        """A marker whose term differs from the log's leaves nothing covered."""
        directory = self.mktemp()
        wal, _ = WAL.open(directory)
        wal.save(HardState(1, 1, 3), [Entry(1, i) for i in range(1, 4)])
        wal.save_snapshot(SnapshotMetadata(2, 5, ConfState(voters=(1,))))
        wal.sync()
        wal.close()
        _, state = WAL.open(directory)
        self.assertEqual((state.covered_entries, state.entries), ([], []))

    def test_marker_beyond_the_log_covers_nothing(self):
        """A marker past the log's end after an earlier marker took every
        entry (a snapshot installed from the leader) leaves nothing covered:
        the covered run must end at the marker, or recovery sees a hole.
        Found by the node simulation (tests.node_sim, seed 312)."""
        directory = self.mktemp()
        wal, _ = WAL.open(directory)
        wal.save(HardState(1, 1, 4), [Entry(1, i) for i in range(1, 5)])
        wal.save_snapshot(SnapshotMetadata(4, 1, ConfState(voters=(1,))))
        wal.save_snapshot(SnapshotMetadata(9, 2, ConfState(voters=(1,))))
        wal.save(None, [Entry(2, 10), Entry(2, 11)])
        wal.sync()
        wal.close()
        _, state = WAL.open(directory)
        self.assertEqual(state.covered_entries, [])
        self.assertEqual([e.index for e in state.entries], [10, 11])
