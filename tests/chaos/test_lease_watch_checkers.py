"""The pure checks of the lease and watch fault workloads."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from metastore.chaos.lease_checker import LeaseRecord, check_lease, check_leases
from metastore.chaos.v3client import DELETE, PUT, SeenEvent
from metastore.chaos.watch_checker import (
    compare_histories,
    compare_watcher,
    compare_with_range,
    is_revision_ordered,
    missing_acknowledged,
    replay,
)

HISTORY = [
    SeenEvent(2, PUT, b"a", b"1"),
    SeenEvent(3, PUT, b"b", b"1"),
    SeenEvent(3, PUT, b"c", b"1"),  # one txn: two events at one revision
    SeenEvent(4, DELETE, b"a"),
    SeenEvent(5, PUT, b"a", b"2"),
    SeenEvent(7, PUT, b"b", b"2"),
]


class CompareWatcherTests(SynchronousTestCase):
    """A watcher's events against the history over [start, end]."""

    def test_exact_slice_is_equal(self):
        """The history from its start revision, later events ignored."""
        verdict = compare_watcher("w", HISTORY[3:] + [SeenEvent(9, PUT, b"z")], HISTORY, 4, 7)
        self.assertTrue(verdict.ok, verdict.describe())
        self.assertEqual((verdict.expected, verdict.received), (3, 3))

    def test_gap_is_reported_as_missing(self):
        """A resumed watch that skipped a revision."""
        received = HISTORY[:3] + HISTORY[4:]
        verdict = compare_watcher("w", received, HISTORY, 1, 7)
        self.assertFalse(verdict.ok)
        self.assertEqual(verdict.missing, (HISTORY[3],))
        self.assertEqual(verdict.first_difference, (3, HISTORY[3], HISTORY[4]))
        self.assertIn("missing (1): 4 DELETE a", verdict.describe())

    def test_duplicate_after_resume_is_reported(self):
        """A resumed watch that got a revision twice."""
        received = HISTORY[:4] + HISTORY[3:]
        verdict = compare_watcher("w", received, HISTORY, 1, 7)
        self.assertFalse(verdict.ok)
        self.assertEqual(verdict.duplicated, (HISTORY[3],))
        self.assertEqual(verdict.missing, ())

    def test_reordering_is_reported(self):
        """Same events, other order: a difference, nothing missing."""
        received = [HISTORY[0], HISTORY[2], HISTORY[1]] + HISTORY[3:]
        verdict = compare_watcher("w", received, HISTORY, 1, 7)
        self.assertFalse(verdict.ok)
        self.assertEqual((verdict.missing, verdict.duplicated, verdict.unexpected), ((), (), ()))
        self.assertEqual(verdict.first_difference[0], 1)

    def test_an_event_not_in_the_history_is_unexpected(self):
        """An event no member's history holds."""
        verdict = compare_watcher("w", HISTORY + [SeenEvent(6, PUT, b"q", b"x")], HISTORY, 1, 7)
        self.assertEqual(verdict.unexpected, (SeenEvent(6, PUT, b"q", b"x"),))

    def test_histories_of_members_compared(self):
        """A follower's history that lacks an event differs from the leader's."""
        self.assertEqual(compare_histories({1: HISTORY, 2: list(HISTORY), 3: list(HISTORY)}, 7), [])
        verdicts = compare_histories({1: HISTORY, 2: HISTORY[:-1]}, 7)
        self.assertEqual(len(verdicts), 1)
        self.assertIn("member 2", verdicts[0].name)


class HistoryCrossCheckTests(SynchronousTestCase):
    """The history against acknowledged puts and ranges."""

    def test_replay_at_revision(self):
        """Keys as of a revision, with their mod revisions."""
        self.assertEqual(replay(HISTORY, 4), {b"b": (b"1", 3), b"c": (b"1", 3)})
        self.assertEqual(replay(HISTORY, 7), {b"a": (b"2", 5), b"b": (b"2", 7), b"c": (b"1", 3)})

    def test_range_difference_is_described(self):
        """Equal gives ""; a value that differs is named."""
        self.assertEqual(compare_with_range(HISTORY, 4, {b"b": (b"1", 3), b"c": (b"1", 3)}), "")
        text = compare_with_range(HISTORY, 4, {b"b": (b"9", 3), b"c": (b"1", 3), b"d": (b"1", 4)})
        self.assertIn("only in the range [b'd']", text)
        self.assertIn("different [(b'b'", text)

    def test_missing_acknowledged_put(self):
        """A put acknowledged at revision 6 that the history lacks."""
        lost = SeenEvent(6, PUT, b"a", b"9")
        self.assertEqual(missing_acknowledged(HISTORY, [HISTORY[0], lost]), [lost])

    def test_revision_order(self):
        """Revisions never go down along a history."""
        self.assertTrue(is_revision_ordered(HISTORY))
        self.assertFalse(is_revision_ordered([HISTORY[3], HISTORY[0]]))


class LeaseCheckTests(SynchronousTestCase):
    """A kept lease may go only after a whole TTL without an acknowledged renewal."""

    def record(self, kept=True, acknowledged=(0.0, 1.0, 2.0), lost_at=None) -> LeaseRecord:
        record = LeaseRecord("lease 0", 0xABC, 5, kept, b"k", list(acknowledged))
        if lost_at is not None:
            record.lost(lost_at, "keepalive answered no TTL")
        return record

    def test_kept_and_alive(self):
        """Never lost: fine."""
        self.assertTrue(check_lease(self.record()).ok)

    def test_lost_within_the_promise_is_a_violation(self):
        """A renewal sent at 2.0 and acknowledged promises the lease until 7.0."""
        verdict = check_lease(self.record(lost_at=6.5))
        self.assertFalse(verdict.ok)
        self.assertIn("promised it until 7.000", verdict.violation)

    def test_lost_after_a_whole_ttl_without_renewal_is_excused(self):
        """No acknowledged renewal since 2.0; gone at 7.5: the cluster may expire it."""
        verdict = check_lease(self.record(lost_at=7.5))
        self.assertTrue(verdict.ok)
        self.assertIn("5.5s after its last acknowledged renewal", verdict.excused)

    def test_earliest_sighting_counts(self):
        """A later sighting does not hide an early one."""
        record = self.record(lost_at=6.0)
        record.lost(9.0, "time-to-live answered -1")
        self.assertEqual(record.lost_at, 6.0)
        self.assertFalse(check_lease(record).ok)

    def test_control_must_expire_but_not_early(self):
        """A never-renewed lease must be gone by the end, not before its TTL."""
        self.assertIn("never expired", check_lease(self.record(kept=False, acknowledged=(0.0,))).violation)
        self.assertTrue(check_lease(self.record(kept=False, acknowledged=(0.0,), lost_at=5.2)).ok)
        self.assertFalse(check_lease(self.record(kept=False, acknowledged=(0.0,), lost_at=4.0)).ok)

    def test_totals(self):
        """The counts a report prints."""
        result = check_leases([self.record(), self.record(lost_at=8.0), self.record(kept=False, lost_at=9.0)])
        self.assertEqual((result.kept, result.kept_lost, result.controls_expired), (2, 1, 1))
        self.assertEqual(result.violations, [])
        self.assertEqual(len(result.excused), 1)

    def test_longest_gap(self):
        """The longest time between acknowledged renewals, up to an end."""
        self.assertEqual(self.record(acknowledged=(0.0, 1.0, 4.0)).longest_gap(5.0), 3.0)
