"""The shipping driver under a thousand seeded schedules per run.

Each schedule (``tests.node_sim.harness``) runs three real members with
their real collaborators, WAL and snapshot files on one
``MemoryReactorClock``, with seeded network faults, fsyncs that complete
when the schedule says, and crashes at any point (between a WAL write and
its fsync included) with restart from only what was fsynced.

Every run plays the regression seeds and a thousand fresh ones (see
``tests.seeds``: the first is printed; ``NODE_SIM_SEED=N`` replays one, as
every failure message says).
"""

from __future__ import annotations

from collections import Counter

from twisted.trial.unittest import SynchronousTestCase

from tests.node_sim.harness import REPLAY_COMMAND, NodeSimulation, Violation
from tests.seeds import SeedPlan

DEFAULT_FRESH_SCHEDULES = 1_000

FRESH_CHUNKS = 8
"""The fresh seeds are split over this many test methods, so that
``trial --jobs`` spreads them over its workers."""

_REWRITTEN_APPLIED = (
    "a follower applied a committed entry that the same Ready rewrote (a conflict at an index "
    "already durable with another term) before the fsync"
)
_MARKER_LOST = (
    "a crash after a received snapshot file was accepted but before the WAL's marker was "
    "synced: recovery started raft's log at the file, the WAL refused the next entries"
)
_COVERED_PAST_MARKER = (
    "WAL replay kept an old covered run under a snapshot marker installed beyond the log, so "
    "recovery saw a gap (covered entries, then entries after the marker) and started raft's "
    "log with a hole"
)
REGRESSION_SEEDS: dict[int, str] = {
    12: _MARKER_LOST,
    16: _REWRITTEN_APPLIED,
    59: _MARKER_LOST,
    87: _REWRITTEN_APPLIED,
    312: _COVERED_PAST_MARKER,
}
"""Seeds that found bugs in the shipping code, with what they found; played
on every run.  Each fails with its bug put back and passes without it
(checked against the schedule generator as it is now: a change to the
generator changes what a seed plays, so re-find them then)."""

SEEDS = SeedPlan("NODE_SIM", "node simulation", DEFAULT_FRESH_SCHEDULES, FRESH_CHUNKS)


class NodeSimulationTests(SynchronousTestCase):
    """The real driver keeps its ordering rules and Raft's safety under
    every schedule, loses nothing acknowledged, and recovers after healing."""

    def play(self, seeds) -> Counter:
        """Play ``seeds``; fail naming every failing seed; return the counters."""
        totals: Counter = Counter()
        failures: list[Violation] = []
        for seed in seeds:
            try:
                totals.update(NodeSimulation(seed).run())
            except Violation as violation:
                failures.append(violation)
        if failures:
            others = ", ".join(str(failure).split(":")[0] for failure in failures[1:])
            self.fail(f"{failures[0]}\n{len(failures)} failing schedules; also: {others or 'none'}")
        if len(seeds) >= 100:
            for counter in (
                "acknowledged", "crashes", "snapshot_jobs", "snapshots_sent", "refused",
                "conf_changes_applied", "members_left",
            ):
                self.assertGreater(totals[counter], 0, counter)
        return totals

    def test_regression_seeds(self) -> None:
        """The seeds that once found a bug (or the one ``NODE_SIM_SEED``
        names) keep every rule."""
        if SEEDS.replay_seed is not None:
            self.play([SEEDS.replay_seed])
        else:
            self.play(sorted(REGRESSION_SEEDS))

    def test_same_seed_same_schedule(self) -> None:
        """A seed fully determines a schedule: replaying gives identical runs."""
        self.assertEqual(NodeSimulation(4242).run(), NodeSimulation(4242).run())

    def test_violation_names_replay_command(self) -> None:
        """A failure message contains the exact command that replays it."""
        with self.assertRaises(Violation) as raised:
            NodeSimulation(77).fail("example")
        self.assertIn(REPLAY_COMMAND.format(seed=77), str(raised.exception))

    def test_fresh_chunks_cover_the_run(self) -> None:
        """The fresh chunks play each of this run's seeds exactly once."""
        played = [seed for chunk in range(FRESH_CHUNKS) for seed in SEEDS.chunk(chunk)]
        self.assertEqual(played, list(SEEDS.all_fresh()))


SEEDS.add_fresh_tests(NodeSimulationTests, NodeSimulationTests.play)
