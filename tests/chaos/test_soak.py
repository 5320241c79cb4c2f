"""The soak: a short real one in CI (3 members, one leader kill), and its
pure pieces (final-value verdicts, 503 timing, the RSS bound) on hand-made
data.

The 10-minute soak is ``metastore-chaos soak`` (see docs/chaos.md).
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from metastore.chaos.cli import main as chaos_main
from metastore.chaos.soak import (
    OTHER_ERROR,
    AckedWrite,
    KeyWrites,
    ProcessRss,
    SoakConfig,
    SoakOptions,
    SoakRun,
    classify_unavailable,
    read_rss_kb,
)

SHORT_SOAK_SECONDS = 30.0


class ShortSoakTests(TestCase):
    """About 30 s at 100 requests/s on three real members, one leader kill."""

    timeout = 150

    async def test_short_soak(self):
        """Only 503s and timeouts besides ok answers, nothing acknowledged is
        lost, the cluster converges, and every member process that lived
        through a sampling tick has RSS samples (the killed member: two
        processes)."""
        config = SoakConfig(
            duration=SHORT_SOAK_SECONDS, rate=100.0, keys=50, kill_every=12.0, restart_after=3.0,
            leader_kill_fraction=1.0, rss_warmup=10.0, workdir=os.path.abspath(self.mktemp()), seed=3,
        )
        report = await SoakRun(reactor, config).run()
        summary = report.summary()
        self.assertEqual(report.other_errors, 0, summary)
        self.assertNotIn(OTHER_ERROR, report.outcomes, summary)
        self.assertEqual(report.lost_writes, [], summary)
        self.assertEqual(report.unreadable_keys, [], summary)
        self.assertTrue(report.converged, summary)
        self.assertEqual(len(report.kills), 1, summary)
        self.assertGreater(report.outcomes.get("ok", 0), report.sent // 2, summary)
        self.assertGreater(report.keys_checked, 0, summary)
        self.assertEqual(sorted(report.rss), [1, 2, 3], summary)
        killed = report.kills[0]["member"]
        for member_id, processes in report.rss.items():
            self.assertTrue(all(p["samples"] > 0 for p in processes), summary)
            self.assertEqual(len(processes), 2 if member_id == killed else 1, summary)
        self.assertTrue(os.path.exists(os.path.join(config.workdir, "soak-report.json")))


class FinalValueTests(SynchronousTestCase):
    """What value a key may hold after the soak, given its PUTs."""

    def test_sequential_writes_latest_only(self):
        """Of writes one after another, only the last is acceptable."""
        writes = KeyWrites(acked=[AckedWrite(0, 1, "a"), AckedWrite(2, 3, "b")])
        self.assertTrue(writes.unambiguous())
        self.assertEqual(writes.verdict("b"), "latest")
        self.assertEqual(writes.verdict("a"), "lost")
        self.assertEqual(writes.verdict(None), "lost")

    def test_concurrent_writes_either(self):
        """Two overlapping acknowledged writes may end in either order."""
        writes = KeyWrites(acked=[AckedWrite(0, 2, "a"), AckedWrite(1, 3, "b")])
        self.assertFalse(writes.unambiguous())
        self.assertEqual({writes.verdict("a"), writes.verdict("b")}, {"latest"})

    def test_unknown_write_may_win(self):
        """An unacknowledged write may take effect, even after a later
        acknowledged one; a value nobody wrote is never acceptable."""
        writes = KeyWrites(acked=[AckedWrite(2, 3, "b")], unknown=[(0.5, "u")])
        self.assertTrue(writes.unambiguous())
        self.assertEqual(writes.verdict("u"), "unknown write")
        self.assertEqual(writes.verdict("zzz"), "lost")

    def test_later_unknown_write_makes_ambiguous(self):
        """An unknown write sent after the last acknowledged one started
        makes the key ambiguous."""
        writes = KeyWrites(acked=[AckedWrite(2, 3, "b")], unknown=[(2.5, "u")])
        self.assertFalse(writes.unambiguous())


class UnavailableTimingTests(SynchronousTestCase):
    """Where 503s fall relative to kills."""

    def test_buckets_and_outside_window(self):
        """503s are counted by seconds since the latest kill; those before
        any kill or past the window are listed."""
        timing = classify_unavailable([1.0, 11.0, 13.5, 21.0, 40.0], kills=[10.0, 20.0], window=10.0)
        self.assertEqual(timing["by_seconds_after_kill"],
                         {"0-2s": 2, "2-5s": 1, "5-10s": 0, "10s+": 1, "before any kill": 1})
        self.assertEqual(timing["outside_window"], 2)
        self.assertEqual(timing["outside_window_times"], [1.0, 40.0])


class RssTests(SynchronousTestCase):
    """RSS sampling and the growth bound."""

    def test_read_own_rss(self):
        """This process has a positive VmRSS; a pid that does not exist has none."""
        self.assertGreater(read_rss_kb(os.getpid()), 0)
        self.assertIsNone(read_rss_kb(2**22 + 1))

    def test_bound(self):
        """The baseline is the first sample after the warm-up; the last
        sample must stay within baseline x factor + slack."""
        process = ProcessRss(1, 100, started=0.0, samples=[(5, 10_000), (60, 40_000), (300, 90_000)])
        check = process.bound_check(warmup=60, factor=1.5, slack_mb=30)
        self.assertEqual(check, {"checked": True, "within": True, "baseline_kb": 40_000, "limit_kb": 90_720})
        process.samples.append((600, 91_000))
        self.assertFalse(process.bound_check(warmup=60, factor=1.5, slack_mb=30)["within"])

    def test_short_lived_not_checked(self):
        """A process with no sample after its baseline is not checked."""
        process = ProcessRss(1, 100, started=0.0, samples=[(5, 10_000), (60, 40_000)])
        self.assertEqual(process.bound_check(warmup=60, factor=1.5, slack_mb=30)["checked"], False)


class SoakOptionsTests(SynchronousTestCase):
    """The ``metastore-chaos soak`` command line."""

    def test_defaults(self):
        """Defaults: 3 members, 600 s at 200/s, a kill every 60 s."""
        options = SoakOptions()
        options.parseOptions([])
        config = options.config()
        self.assertEqual((config.size, config.duration, config.rate, config.kill_every), (3, 600.0, 200.0, 60.0))

    def test_subcommand_reaches_soak(self):
        """``metastore-chaos soak`` parses soak options (a bad rate is the
        soak's usage error), leaving the plain command as it was."""
        with self.assertRaises(SystemExit) as raised:
            chaos_main(["soak", "--rate", "0"])
        self.assertIn("metastore-chaos soak: --rate", str(raised.exception))
