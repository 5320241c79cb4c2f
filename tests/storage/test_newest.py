"""The bounded cache of newest versions: what it keeps, what it evicts
first, and what it refuses to keep."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from metastore.storage.engine import Event, KeyValue, tombstone
from metastore.storage.newest import ENTRY_OVERHEAD, MISSING, NewestVersions


def version(key: bytes, value: bytes = b"v", revision: int = 2) -> KeyValue:
    """A version of ``key`` written at ``revision``."""
    return KeyValue(key, value, revision, revision, 1)


class NewestVersionsTests(SynchronousTestCase):
    """``NewestVersions`` keeps the newest version of recent keys within its budget."""

    def test_unknown_absent_and_present(self) -> None:
        """An unknown key is MISSING; one remembered absent is None."""
        cache = NewestVersions(10_000)
        self.assertIs(cache.lookup(b"k"), MISSING)
        cache.remember(b"k", None)
        self.assertIsNone(cache.lookup(b"k"))
        cache.remember(b"j", version(b"j"))
        self.assertEqual(cache.lookup(b"j"), version(b"j"))

    def test_record_keeps_the_last_event_of_each_key(self) -> None:
        """A commit's events in order: a later put or delete of a key wins."""
        cache = NewestVersions(10_000)
        cache.record([Event(version(b"a", b"1", 3), 0), Event(version(b"b", b"2", 3), 1), tombstone(b"a", 3, 2)])
        self.assertIsNone(cache.lookup(b"a"))
        self.assertEqual(cache.lookup(b"b").value, b"2")
        cache.record([Event(version(b"a", b"4", 4), 0)])
        self.assertEqual(cache.lookup(b"a").value, b"4")

    def test_budget_evicts_the_longest_unwritten(self) -> None:
        """Past the budget, the entry written or read in longest ago goes;
        rewriting a key makes it the newest; the bytes are accounted."""
        cost = ENTRY_OVERHEAD + 1 + 1
        cache = NewestVersions(3 * cost)
        for key in (b"a", b"b", b"c"):
            cache.remember(key, version(key))
        cache.record([Event(version(b"a", revision=3), 0)])  # a is now the newest
        cache.remember(b"d", version(b"d"))
        self.assertIs(cache.lookup(b"b"), MISSING)
        self.assertEqual([cache.lookup(k) is MISSING for k in (b"a", b"c", b"d")], [False, False, False])
        self.assertEqual((len(cache), cache.bytes_used), (3, 3 * cost))

    def test_large_values_and_foreign_types_are_not_kept(self) -> None:
        """A value over a 64th of the budget, or a key or value that is not
        ``bytes``, is not kept, and replaces what was kept for the key."""
        cache = NewestVersions(64 * 100)
        cache.remember(b"k", version(b"k", b"small"))
        cache.record([Event(version(b"k", b"x" * 101, 3), 0)])
        self.assertIs(cache.lookup(b"k"), MISSING)
        cache.remember(b"m", version(b"m", bytearray(b"mutable")))
        self.assertIs(cache.lookup(b"m"), MISSING)
        self.assertEqual(cache.bytes_used, 0)

    def test_zero_budget_keeps_nothing(self) -> None:
        """A budget of 0 turns the cache off."""
        cache = NewestVersions(0)
        cache.remember(b"k", None)
        cache.record([Event(version(b"k"), 0)])
        self.assertEqual((len(cache), cache.lookup(b"k")), (0, MISSING))

    def test_clear(self) -> None:
        """``clear`` forgets every entry and its bytes."""
        cache = NewestVersions(10_000)
        cache.remember(b"k", version(b"k"))
        cache.clear()
        self.assertEqual((len(cache), cache.bytes_used, cache.lookup(b"k")), (0, 0, MISSING))
