"""The failover report's arithmetic (the measurement itself runs by hand)."""

from twisted.trial.unittest import SynchronousTestCase

from metastore.chaos.failover import Round, summarize


class SummarizeTests(SynchronousTestCase):
    """``summarize`` turns rounds into the figures the notes quote."""

    def test_median_max_and_successes(self):
        """The median and maximum of the answer times; 204s count as successes."""
        rounds = [Round(1.0, 204, 0, 1), Round(3.0, 503, 1, 1), Round(2.0, 204, 1, 2)]
        summary = summarize(rounds)
        self.assertEqual((summary["median_seconds"], summary["max_seconds"]), (2.0, 3.0))
        self.assertEqual(summary["successes"], 2)
        self.assertEqual(summary["applied_twice"], [])

    def test_a_counter_that_moves_twice_is_reported(self):
        """A version jump of two in one round means the write was applied twice."""
        summary = summarize([Round(1.0, 204, 4, 6), Round(1.0, None, None, 3)])
        self.assertEqual(summary["applied_twice"], [0])
