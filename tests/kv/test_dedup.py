"""Tests for metastore.kv.dedup: deciding re-proposed copies of a request."""

from twisted.trial.unittest import SynchronousTestCase

from metastore.kv.dedup import RecentRequests, Verdict
from tests.tracked import tracked_objects_left_by


class RecentRequestsTests(SynchronousTestCase):
    """Verdicts depend only on the applied log, so every member agrees."""

    def test_a_copy_within_the_span_is_a_duplicate(self) -> None:
        recent = RecentRequests(span=10)
        self.assertIs(recent.judge(b"a", 3, 5), Verdict.APPLY)
        recent.add(b"a", 5)
        recent.forget_before(14)
        self.assertIs(recent.judge(b"a", 3, 13), Verdict.DUPLICATE)

    def test_ids_are_forgotten_span_indexes_later(self) -> None:
        recent = RecentRequests(span=10)
        recent.add(b"a", 5)
        recent.forget_before(15)
        self.assertEqual(len(recent), 0)
        self.assertTrue(recent.changed)

    def test_a_copy_too_far_from_its_proposal_is_undecidable(self) -> None:
        """Once an earlier copy could have been forgotten, the copy is refused."""
        recent = RecentRequests(span=10)
        self.assertIs(recent.judge(b"a", 3, 13), Verdict.APPLY)
        self.assertIs(recent.judge(b"a", 3, 14), Verdict.UNDECIDABLE)

    def test_entries_without_proposed_at_are_checked_for_duplicates_only(self) -> None:
        recent = RecentRequests(span=10)
        self.assertIs(recent.judge(b"old", None, 1000), Verdict.APPLY)

    def test_restore_round_trips(self) -> None:
        recent = RecentRequests(span=10)
        recent.add(b"a", 5)
        recent.add(b"b", 6)
        again = RecentRequests(span=10, entries=recent.entries())
        self.assertEqual(again.entries(), ((b"a", 5), (b"b", 6)))
        self.assertIs(again.judge(b"b", 5, 7), Verdict.DUPLICATE)
        self.assertFalse(again.changed)

    def test_a_taken_window_keeps_its_pairs_while_the_memory_moves_on(self) -> None:
        """``entries()`` is a snapshot: later adds, forgets and the rebuild
        of the underlying list leave it as it was."""
        recent = RecentRequests(span=100)
        for i in range(1, 151):
            recent.forget_before(i)
            recent.add(b"%d" % i, i)
        taken = recent.entries()
        expected = tuple((b"%d" % i, i) for i in range(51, 151))
        self.assertEqual(taken, expected)
        for i in range(151, 5000):  # forgets past the rebuild threshold
            recent.forget_before(i)
            recent.add(b"%d" % i, i)
        self.assertEqual(taken, expected)
        self.assertEqual((taken[0], taken[-1], len(taken)), (expected[0], expected[-1], 100))
        self.assertEqual(tuple(recent.entries()), tuple((b"%d" % i, i) for i in range(4900, 5000)))
        self.assertEqual(len(recent), 100)

    def test_remembering_a_request_leaves_no_tracked_object(self) -> None:
        """Ids and indexes are kept without a pair object per request, so
        remembering 1,000 requests gives the collector nothing new to walk."""
        recent = RecentRequests(span=10_000)
        ids = [b"request-%d" % i for i in range(1_000)]

        def remember():
            for index, request_id in enumerate(ids, 1):
                recent.add(request_id, index)

        self.assertLess(tracked_objects_left_by(remember), 10)
        self.assertEqual((len(recent), recent.entries()[999]), (1_000, (b"request-999", 1_000)))
