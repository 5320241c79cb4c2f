"""A short chaos run with every member in three processes (``--workers
2``): kills (of a minority and of the leader) and pauses hit the cores,
whose fronts then answer 503 and exit, or time out; the history must
still be linearizable, with no acknowledged write lost."""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from metastore.chaos.cli import ChaosOptions
from metastore.chaos.runner import ChaosRun, RunConfig
from tests.chaos.test_chaos_run import CI_DURATION


class WorkersChaosRunTests(TestCase):
    """One mixed run on three members with two fronts each."""

    timeout = CI_DURATION + 300

    async def test_kills_and_pauses_with_workers(self):
        """kill, leader-kill and pause with ``--workers 2``: the run passes."""
        config = RunConfig(size=3, duration=CI_DURATION, nemeses=("kill", "leader-kill", "pause"),
                           workdir=os.path.abspath(self.mktemp()), seed=21, extra_member_args=("--workers", "2"))
        report = await ChaosRun(reactor, config).run()
        summary = report.summary()
        self.assertTrue(report.passed, summary)
        self.assertGreater(report.register_operations_checked, 100, summary)
        self.assertGreater(len(report.faults), 0, summary)


class WorkersOptionTests(SynchronousTestCase):
    """``metastore-chaos --workers``."""

    def test_workers_reach_the_members_flags(self):
        """``--workers 2`` becomes the members' ``--workers 2``; by default
        ``--workers 0`` (one process each, not the members' own default, auto)."""
        options = ChaosOptions()
        options.parseOptions(["--workers", "2"])
        self.assertEqual(options.config().extra_member_args, ("--workers", "2"))
        options = ChaosOptions()
        options.parseOptions([])
        self.assertEqual(options.config().extra_member_args, ("--workers", "0"))
