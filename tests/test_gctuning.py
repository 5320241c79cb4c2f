"""``metastore.gctuning``: the collector settings of a server member."""

import gc

from twisted.trial.unittest import SynchronousTestCase

from metastore.gctuning import YOUNG_THRESHOLD, tune_for_server


class TuneForServerTests(SynchronousTestCase):
    """What start-up allocated is frozen; young objects are collected less often."""

    def test_freezes_and_raises_the_young_threshold(self):
        """After the call the live objects are frozen and only the young
        generation's threshold changed."""
        before = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *before)
        self.addCleanup(gc.unfreeze)
        tune_for_server()
        self.assertEqual(gc.get_threshold(), (YOUNG_THRESHOLD, before[1], before[2]))
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertTrue(gc.isenabled())
