"""The auto-compaction policies decide like etcd's compactors, from plain numbers."""

from twisted.trial.unittest import SynchronousTestCase

from metastore.kv.autocompaction import (
    PeriodicRetention,
    RevisionRetention,
    parse_auto_compaction,
    parse_duration,
)


class RevisionRetentionTests(SynchronousTestCase):
    """``revision`` mode keeps the newest ``retention`` revisions."""

    def test_waits_for_a_tenth_of_the_retention_past_the_window(self):
        """Nothing until revision - retention is retention/10 past the compacted revision."""
        policy = RevisionRetention(1000)
        self.assertIsNone(policy.decide(0, 1000, 0))
        self.assertIsNone(policy.decide(0, 1099, 0))
        self.assertEqual(policy.decide(0, 1100, 0), 100)
        self.assertIsNone(policy.decide(0, 1150, 100))
        self.assertEqual(policy.decide(0, 1200, 100), 200)

    def test_history_stays_bounded_whatever_the_rate(self):
        """Compacting whenever asked keeps at most 1.1 * retention revisions."""
        policy = RevisionRetention(500)
        compacted = 0
        for revision in range(1, 20_000, 7):
            target = policy.decide(0, revision, compacted)
            if target is not None:
                compacted = target
            self.assertLessEqual(revision - compacted, 550 + 7)

    def test_small_retention(self):
        """A retention of 1 compacts every revision but the newest."""
        self.assertEqual(RevisionRetention(1).decide(0, 5, 3), 4)


class PeriodicRetentionTests(SynchronousTestCase):
    """``periodic`` mode keeps ``retention`` seconds of history."""

    def test_compacts_to_the_revision_of_one_retention_ago(self):
        """Samples every tenth of the retention; compacts to the newest sample
        at least one retention old."""
        policy = PeriodicRetention(100.0)
        decisions = []
        for second in range(0, 301, 10):
            revision = 1 + second  # one write per second
            decisions.append((second, policy.decide(float(second), revision, 0)))
        self.assertEqual([d for s, d in decisions if s < 100], [None] * 10)
        self.assertEqual(dict(decisions)[100], 1)
        self.assertEqual(dict(decisions)[250], 151)

    def test_nothing_new_to_compact(self):
        """A sample at or below the compacted revision proposes nothing."""
        policy = PeriodicRetention(10.0)
        policy.decide(0.0, 50, 0)
        self.assertIsNone(policy.decide(10.0, 60, 50))


class ParsingTests(SynchronousTestCase):
    """The flags read like etcd's."""

    def test_durations(self):
        """Go-style durations, and a bare number as hours."""
        self.assertEqual(parse_duration("5m"), 300.0)
        self.assertEqual(parse_duration("1h30m"), 5400.0)
        self.assertEqual(parse_duration("90s"), 90.0)
        self.assertEqual(parse_duration("2"), 7200.0)
        for bad in ("", "5x", "m", "5m junk"):
            self.assertRaises(ValueError, parse_duration, bad)

    def test_modes(self):
        """Each mode gets its policy; retention 0 is off; nonsense is refused."""
        self.assertIsInstance(parse_auto_compaction("revision", "10000"), RevisionRetention)
        self.assertIsInstance(parse_auto_compaction("periodic", "5m"), PeriodicRetention)
        self.assertIsNone(parse_auto_compaction("revision", "0"))
        self.assertIsNone(parse_auto_compaction("periodic", "0"))
        self.assertRaises(ValueError, parse_auto_compaction, "revision", "5m")
        self.assertRaises(ValueError, parse_auto_compaction, "hourly", "1")
