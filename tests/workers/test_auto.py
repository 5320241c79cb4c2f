"""``--workers auto``'s rule, with the cores and the cgroup files injected."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from metastore.config import Config
from metastore.workers import auto


class FrontsForTests(SynchronousTestCase):
    """How many fronts a number of usable cores gets."""

    def test_rule(self):
        """None below three cores; then one per core but one; at most four."""
        self.assertEqual([auto.fronts_for(c) for c in range(1, 9)], [0, 0, 2, 3, 4, 4, 4, 4])
        self.assertEqual(auto.fronts_for(256), auto.MAX_FRONTS)

    def test_choose_names_the_reason(self):
        """The choice and its log line: the cores, or what fronts cannot serve."""
        self.assertEqual(auto.choose(Config(), 4), auto.AutoChoice(
            3, "--workers auto: 3 front processes (4 usable cores, one left to the core process, at most 4)"))
        self.assertEqual(auto.choose(Config(), 2).workers, 0)
        self.assertIn("2 usable core(s); auto starts fronts from 3 cores", auto.choose(Config(), 2).reason)
        choice = auto.choose(Config(client_request_rate=5.0), 8)
        self.assertEqual(choice.workers, 0)
        self.assertIn("because fronts cannot serve --client-request-rate yet", choice.reason)


class UsableCoresTests(SynchronousTestCase):
    """The cores counted: affinity, lowered by a cgroup quota."""

    def setUp(self):
        self.files: dict[str, str] = {}
        self.patch(auto, "_read", self.files.get)
        self.patch(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})

    def test_affinity_without_quota(self):
        """No cgroup files: the CPUs this process may run on."""
        self.assertEqual(auto.usable_cores(), 8)
        self.files[auto.CGROUP_V2_CPU_MAX] = "max 100000\n"
        self.assertEqual(auto.usable_cores(), 8)

    def test_cgroup_v2_quota_rounds_up(self):
        """``docker --cpus 2.5`` (cgroup v2): three cores counted."""
        self.files[auto.CGROUP_V2_CPU_MAX] = "250000 100000\n"
        self.assertEqual(auto.usable_cores(), 3)
        self.files[auto.CGROUP_V2_CPU_MAX] = "1600000 100000\n"  # more than the affinity allows
        self.assertEqual(auto.usable_cores(), 8)

    def test_cgroup_v1_quota(self):
        """cgroup v1's quota and period; -1 is no limit."""
        self.files[auto.CGROUP_V1_QUOTA], self.files[auto.CGROUP_V1_PERIOD] = "100000\n", "100000\n"
        self.assertEqual(auto.usable_cores(), 1)
        self.files[auto.CGROUP_V1_QUOTA] = "-1\n"
        self.assertEqual(auto.usable_cores(), 8)

    def test_unreadable_quota_is_no_quota(self):
        """Text that is not a quota sets no limit."""
        for text in ("", "garbage", "1 2 3", "0 100000", "x 100000"):
            self.assertIsNone(auto.quota_cores(text), text)
