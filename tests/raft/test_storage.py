"""``MemoryStorage``: raft's in-memory log, read back as it was written."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from metastore.raft import MemoryStorage
from metastore.raft.errors import CompactedError, UnavailableError
from metastore.raft.storage import ENTRY_OVERHEAD
from metastore.raft.types import ConfState, Entry, EntryType, Snapshot, SnapshotMetadata
from tests.tracked import tracked_objects_left_by


def _entries(first: int, last: int, term: int, size: int = 3) -> list[Entry]:
    return [Entry(term, i, EntryType.EntryNormal, b"%0*d" % (size, i)) for i in range(first, last + 1)]


class MemoryStorageTests(SynchronousTestCase):
    """Appends, reads, conflicts, compaction and snapshots."""

    def test_entries_come_back_equal_with_their_types(self):
        """What was appended is read back equal, a conf change included."""
        storage = MemoryStorage()
        written = _entries(1, 3, 1) + [Entry(2, 4, EntryType.EntryConfChange, b"cc")]
        storage.append(written)
        read = storage.entries(1, 5)
        self.assertEqual(read, written)
        self.assertIs(read[3].type, EntryType.EntryConfChange)
        self.assertEqual((storage.first_index(), storage.last_index(), storage.term(4), storage.term(0)), (1, 4, 2, 0))

    def test_max_size_keeps_the_first_entry_and_the_prefix_that_fits(self):
        """``max_size`` cuts after the longest prefix within it, never below one entry."""
        storage = MemoryStorage()
        storage.append(_entries(1, 5, 1, size=10))
        each = 10 + ENTRY_OVERHEAD
        self.assertEqual([e.index for e in storage.entries(1, 6, 2 * each)], [1, 2])
        self.assertEqual([e.index for e in storage.entries(2, 6, 1)], [2])
        self.assertEqual([e.index for e in storage.entries(1, 6, None)], [1, 2, 3, 4, 5])

    def test_a_conflicting_append_replaces_the_tail(self):
        """Entries from a new term overwrite the stored ones from their index on."""
        storage = MemoryStorage()
        storage.append(_entries(1, 5, 1))
        storage.append(_entries(3, 4, 2))
        self.assertEqual([(e.index, e.term) for e in storage.entries(1, 5)], [(1, 1), (2, 1), (3, 2), (4, 2)])
        self.assertEqual(storage.last_index(), 4)

    def test_compaction_keeps_a_placeholder_with_the_term(self):
        """After ``compact(i)``, entries up to ``i`` are refused but ``term(i)`` answers."""
        storage = MemoryStorage()
        storage.append(_entries(1, 5, 1) + _entries(6, 8, 3))
        storage.compact(6)
        self.assertEqual((storage.first_index(), storage.last_index(), storage.term(6)), (7, 8, 3))
        self.assertRaises(CompactedError, storage.entries, 6, 8)
        self.assertRaises(CompactedError, storage.term, 5)
        self.assertRaises(UnavailableError, storage.entries, 7, 10)
        self.assertEqual(storage.entries(7, 9), _entries(7, 8, 3))

    def test_a_snapshot_replaces_the_log(self):
        """Applying a snapshot leaves only its index and term."""
        storage = MemoryStorage()
        storage.append(_entries(1, 5, 1))
        storage.apply_snapshot(Snapshot(SnapshotMetadata(index=10, term=4, conf_state=ConfState(voters=(1,)))))
        self.assertEqual((storage.first_index(), storage.last_index(), storage.term(10)), (11, 10, 4))
        storage.append(_entries(11, 12, 4))
        self.assertEqual(storage.entries(11, 13), _entries(11, 12, 4))

    def test_stored_entries_leave_no_tracked_object(self):
        """The log keeps no object per entry for the garbage collector to
        walk: 1,000 appended entries leave fewer than 10 tracked objects
        once the ``Entry`` objects handed in are gone."""
        storage = MemoryStorage()

        def append():
            storage.append(_entries(1, 1_000, 1, size=300))

        self.assertLess(tracked_objects_left_by(append), 10)
        self.assertEqual(storage.entries(1_000, 1_001)[0].data, b"%0300d" % 1_000)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(["append", "compact"]), st.integers(1, 30), st.integers(0, 6)),
                    max_size=25))
    def test_reads_match_a_list_of_entries(self, operations):
        """Any sequence of appends (possibly conflicting) and compactions
        reads back as a plain list of ``Entry`` objects would."""
        storage = MemoryStorage()
        model = [Entry(0, 0)]  # model[0] is the placeholder
        term = 1
        for kind, at, count in operations:
            first, last = model[0].index + 1, model[-1].index
            if kind == "append":
                start = min(max(at, first), last + 1)
                term += 1
                new = _entries(start, start + count - 1, term)
                storage.append(new)
                if new:  # appending nothing changes nothing
                    model = model[: start - model[0].index] + new
            elif first <= min(at, last):
                index = min(at, last)
                storage.compact(index)
                model = [Entry(model[index - model[0].index].term, index)] + model[index - model[0].index + 1:]
            self.assertEqual((storage.first_index(), storage.last_index()), (model[0].index + 1, model[-1].index))
            self.assertEqual(storage.entries(model[0].index + 1, model[-1].index + 1), model[1:])
            self.assertEqual([storage.term(e.index) for e in model], [e.term for e in model])
