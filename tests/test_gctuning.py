"""``metastore.gctuning``: the interpreter settings of a server member."""

import gc
import sys

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from metastore.config import Config
from metastore.gctuning import SWITCH_INTERVAL_SECONDS, YOUNG_THRESHOLD, tune_for_server
from metastore.service import open_member


class TuneForServerTests(SynchronousTestCase):
    """What start-up allocated is frozen; young objects are collected less
    often; threads give up the interpreter sooner.  Only a server does this."""

    def restore_afterwards(self) -> None:
        self.addCleanup(gc.set_threshold, *gc.get_threshold())
        self.addCleanup(gc.unfreeze)
        self.addCleanup(sys.setswitchinterval, sys.getswitchinterval())

    def test_freezes_raises_the_young_threshold_and_shortens_the_switch_interval(self):
        """After the call the live objects are frozen, only the young
        generation's threshold changed, and the switch interval is short."""
        self.restore_afterwards()
        before = gc.get_threshold()
        tune_for_server()
        self.assertEqual(gc.get_threshold(), (YOUNG_THRESHOLD, before[1], before[2]))
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertTrue(gc.isenabled())
        self.assertAlmostEqual(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS)

    def test_a_member_embedded_in_a_program_leaves_its_settings_alone(self):
        """Opening and starting a member as a library (``open_member``)
        changes neither the collector nor the switch interval."""
        self.restore_afterwards()
        gc.unfreeze()
        sys.setswitchinterval(0.004)
        threshold = gc.get_threshold()
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=self.mktemp()).validate()
        member = open_member(config, MemoryReactorClock(), run_blocking=lambda f: None)
        member.node.startService()
        self.addCleanup(member.node.stopService)
        self.assertEqual(gc.get_threshold(), threshold)
        self.assertEqual(gc.get_freeze_count(), 0)
        self.assertAlmostEqual(sys.getswitchinterval(), 0.004)

    def test_twistd_metastore_tunes_once_started(self):
        """The member ``twistd metastore`` runs sets them when it starts."""
        from twisted.application.service import Service

        from metastore.tap import _CommandLineMember

        self.restore_afterwards()
        sys.setswitchinterval(0.004)
        server = _CommandLineMember(Service())
        server.startService()
        self.addCleanup(server.stopService)
        self.assertEqual(gc.get_threshold()[0], YOUNG_THRESHOLD)
        self.assertAlmostEqual(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS)
