"""Short chaos runs in CI: 3 real members, one nemesis each, about 40 s of
workload under faults; every run must end linearizable, with no
acknowledged write lost and the cluster converged after healing.

Longer runs are ``metastore-chaos`` (see docs/chaos.md).
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from metastore.chaos.cli import ChaosOptions
from metastore.chaos.runner import ChaosRun, RunConfig

CI_DURATION = float(os.environ.get("METASTORE_CHAOS_SECONDS", "40"))


class ShortChaosRunTests(TestCase):
    """One run per nemesis on three members."""

    timeout = CI_DURATION + 240

    async def run_nemesis(self, *nemeses: str, seed: int) -> None:
        """Run and assert the report passed (the report is the failure message)."""
        config = RunConfig(size=3, duration=CI_DURATION, nemeses=nemeses, workdir=os.path.abspath(self.mktemp()),
                           seed=seed)
        report = await ChaosRun(reactor, config).run()
        summary = report.summary()
        self.assertTrue(report.passed, summary)
        self.assertGreater(report.register_operations_checked, 100, summary)
        self.assertGreater(len(report.faults), 0, summary)
        self.assertTrue(os.path.exists(report.history_file))

    async def test_kill(self):
        """SIGKILL and restart of a minority."""
        await self.run_nemesis("kill", seed=11)

    async def test_pause(self):
        """SIGSTOP / SIGCONT of a minority or of the leader."""
        await self.run_nemesis("pause", seed=12)

    async def test_partition(self):
        """Splits, isolated leader, one-way cuts and bridges (drop and blackhole)."""
        await self.run_nemesis("partition", seed=13)

    async def test_leader_kill(self):
        """SIGKILL of whoever leads."""
        await self.run_nemesis("leader-kill", seed=14)


class ChaosOptionsTests(SynchronousTestCase):
    """The ``metastore-chaos`` command line."""

    def test_defaults(self):
        """Defaults: 3 members, 60 s, the four CI nemeses."""
        options = ChaosOptions()
        options.parseOptions([])
        config = options.config()
        self.assertEqual((config.size, config.duration), (3, 60.0))
        self.assertEqual(config.nemeses, ("kill", "pause", "partition", "leader-kill"))

    def test_all_and_unknown_nemeses(self):
        """``all`` selects every nemesis; an unknown name is a usage error."""
        options = ChaosOptions()
        options.parseOptions(["--nemesis", "all"])
        self.assertIn("restart-all", options["nemesis"])
        from twisted.python.usage import UsageError

        self.assertRaises(UsageError, ChaosOptions().parseOptions, ["--nemesis", "kill,meteor"])
