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
from tests.process import with_test_workers

CI_DURATION = float(os.environ.get("METASTORE_CHAOS_SECONDS", "40"))


class ShortChaosRunTests(TestCase):
    """One run per nemesis on three members."""

    timeout = CI_DURATION + 240

    async def run_nemesis(self, *nemeses: str, seed: int) -> None:
        """Run and assert the report passed (the report is the failure message)."""
        config = RunConfig(size=3, duration=CI_DURATION, nemeses=nemeses, workdir=os.path.abspath(self.mktemp()),
                           seed=seed, extra_member_args=tuple(with_test_workers([])))
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


class LeaseWatchChaosRunTests(TestCase):
    """A short run of the lease and watch workloads under leader kills and pauses."""

    timeout = 300

    async def test_lease_and_watch_workloads(self):
        """Kept-alive leases survive, controls expire, watchers get exactly the history."""
        config = RunConfig(size=3, duration=12.0, nemeses=("leader-kill", "pause"), seed=21,
                           workdir=os.path.abspath(self.mktemp()), workloads=("lease", "watch"),
                           fault_hold=(2.0, 3.0), quiet=(1.0, 2.0), extra_member_args=tuple(with_test_workers([])))
        report = await ChaosRun(reactor, config).run()
        summary = report.summary()
        self.assertTrue(report.passed, summary)
        self.assertGreater(len(report.faults), 0, summary)
        lease_watch = report.lease_watch
        self.assertEqual(lease_watch["problems"], [], summary)
        self.assertEqual((lease_watch["leases_kept"], lease_watch["controls_expired"]), (4, 2), summary)
        self.assertGreater(lease_watch["history_events"], 50, summary)
        self.assertEqual(lease_watch["watchers"], 6, summary)
        self.assertEqual(report.register_operations_checked, 0, summary)  # only the asked-for workloads ran


class SecureChaosRunTests(TestCase):
    """A short run with TLS and auth on: every workload as the workload user."""

    timeout = 60

    async def test_auth_and_tls(self):
        """Linearizable, nothing lost, leases and watches intact, with every
        request over HTTPS carrying a token; a killed member forgot its
        tokens, and the clients authenticated there again."""
        config = RunConfig(size=3, duration=12.0, nemeses=("kill",), seed=31, workdir=os.path.abspath(self.mktemp()),
                           workloads=("register", "set", "lease", "watch"), tls=True, auth=True,
                           fault_hold=(2.0, 3.0), quiet=(1.0, 2.0), register_clients=4, watchers_per_member=1)
        report = await ChaosRun(reactor, config).run()
        summary = report.summary()
        self.assertTrue(report.passed, summary)
        self.assertGreater(len(report.faults), 0, summary)
        self.assertGreater(report.register_operations_checked, 100, summary)
        self.assertGreaterEqual(report.tokens_obtained, 3, summary)
        self.assertGreater(report.tokens_refused, 0, summary)
        self.assertEqual(report.lease_watch["problems"], [], summary)


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

    def test_workloads(self):
        """``--workload`` picks among register, set, lease and watch; the
        default is the register and set workloads."""
        from twisted.python.usage import UsageError

        options = ChaosOptions()
        options.parseOptions([])
        self.assertEqual(options.config().workloads, ("register", "set"))
        options = ChaosOptions()
        options.parseOptions(["--workload", "lease,watch", "--lease-ttl", "8", "--watchers", "3"])
        config = options.config()
        self.assertEqual((config.workloads, config.lease_ttl, config.watchers_per_member), (("lease", "watch"), 8, 3))
        self.assertEqual(config.lease_watch_workloads, ("lease", "watch"))
        options = ChaosOptions()
        options.parseOptions(["--workload", "all"])
        self.assertEqual(options.config().workloads, ("register", "set", "lease", "watch"))
        self.assertRaises(UsageError, ChaosOptions().parseOptions, ["--workload", "lease,meteor"])

    def test_auth_and_tls(self):
        """``--auth`` and ``--tls`` are off by default and combine; with
        auth the workload user's role covers every workload's prefix."""
        options = ChaosOptions()
        options.parseOptions([])
        self.assertEqual((options.config().auth, options.config().tls), (False, False))
        options = ChaosOptions()
        options.parseOptions(["--auth", "--tls", "--workload", "all"])
        config = options.config()
        self.assertEqual((config.auth, config.tls), (True, True))
        self.assertEqual(config.prefixes, [b"r", b"s", b"lw/"])
