"""Thousands of seeded, randomized schedules of a simulated cluster.

Each schedule (see ``tests.raft.simulator``) mixes drops, duplicates,
delays, reordering, symmetric and one-way partitions, crashes with restart
from persisted state, proposals (some of them poison entries), reads,
membership changes and leader transfers; safety is checked after every
event and liveness after healing.

Every run plays the fixed regression seeds (``REGRESSION_SEEDS``) and
``DEFAULT_FRESH_SCHEDULES`` fresh seeds from a first seed drawn at random
for this run, printed when this module is loaded:

    raft simulation: fresh seeds 123456789..123466788 (RAFT_SIM_FIRST_SEED=123456789)

A failure names each failing seed and the one command that replays it.
One seed in three (divisible by 3) plays a long fault phase, the others a
short one (``SimConfig.long_every``), so that 10,000 schedules fit the CI
budget while long histories with many leader changes are still explored.

Environment:
  RAFT_SIM_SEED=N        replay exactly one seed (the failure message says so)
  RAFT_SIM_FIRST_SEED=S  play the fresh seeds from S (to replay a whole run)
  RAFT_SIM_SCHEDULES=K   play K fresh seeds instead of the default
"""

from __future__ import annotations

from collections import Counter

from twisted.trial.unittest import SynchronousTestCase

from tests.raft.simulator import REPLAY_COMMAND, SimConfig, Simulation, Violation
from tests.seeds import SeedPlan

DEFAULT_FRESH_SCHEDULES = 10_000

FRESH_CHUNKS = 8
"""The fresh seeds are split over this many test methods so that
``trial --jobs`` spreads them over its workers."""

_SNAPSHOT_PENDING = (
    "a conf change entry handed out before a snapshot arrived was judged against the "
    "snapshot's membership instead of the applied one, so members decided differently"
)
_REPLAY_INSIDE_SNAPSHOT = (
    "a restart replayed conf changes its snapshot already held (storage keeps a log tail "
    "behind the snapshot), redoing a change the application had refused"
)
REGRESSION_SEEDS: dict[int, str] = {
    240: _SNAPSHOT_PENDING,
    249: _SNAPSHOT_PENDING,
    552: _REPLAY_INSIDE_SNAPSHOT,
    1309: _SNAPSHOT_PENDING,
    2272: _SNAPSHOT_PENDING,
    2369: _REPLAY_INSIDE_SNAPSHOT,
    2562: _REPLAY_INSIDE_SNAPSHOT,
    2988: _REPLAY_INSIDE_SNAPSHOT,
}
"""Seeds that found bugs, with what they found; played on every run.

Each was confirmed against the current simulator by putting its bug back:
it fails with the bug and passes without it.
"""

SEEDS = SeedPlan("RAFT_SIM", "raft simulation", DEFAULT_FRESH_SCHEDULES, FRESH_CHUNKS)


class SimulationTests(SynchronousTestCase):
    """Raft keeps its safety properties under every simulated schedule, and
    recovers once the faults heal."""

    def play(self, seeds) -> None:
        """Play ``seeds``; fail naming every failing seed; check that many
        schedules together exercised the interesting paths."""
        totals: Counter = Counter()
        failures: list[Violation] = []
        for seed in seeds:
            try:
                totals.update(Simulation(seed).run())
            except Violation as violation:
                failures.append(violation)
        if failures:
            others = ", ".join(str(failure).split(":")[0] for failure in failures[1:])
            self.fail(f"{failures[0]}\n{len(failures)} failing schedules; also: {others or 'none'}")
        if len(seeds) >= 200:
            for counter in (
                "crashes",
                "reads_served",
                "conf_changes",
                "snapshots_sent",
                "elections",
                "poison_proposed",
                "poison_normal_applied",
                "conf_rejected",
                "conf_skipped",
            ):
                self.assertGreater(totals[counter], 0, counter)

    def test_regression_seeds(self) -> None:
        """The seeds that once found a bug (or the one ``RAFT_SIM_SEED``
        names) keep every property."""
        if SEEDS.replay_seed is not None:
            self.play([SEEDS.replay_seed])
        else:
            self.play(sorted(REGRESSION_SEEDS))

    def test_same_seed_same_schedule(self) -> None:
        """A seed fully determines a schedule: replaying gives identical runs."""
        first = Simulation(12345).run()
        second = Simulation(12345).run()
        self.assertEqual(first, second)

    def test_violation_names_replay_command(self) -> None:
        """A failure message contains the exact command that replays it."""
        simulation = Simulation(77, SimConfig())
        with self.assertRaises(Violation) as raised:
            simulation.fail("example")
        self.assertIn(REPLAY_COMMAND.format(seed=77), str(raised.exception))

    def test_fresh_chunks_cover_the_run(self) -> None:
        """The fresh chunks play each of this run's seeds exactly once."""
        played = [seed for chunk in range(FRESH_CHUNKS) for seed in SEEDS.chunk(chunk)]
        self.assertEqual(played, list(SEEDS.all_fresh()))


SEEDS.add_fresh_tests(SimulationTests, SimulationTests.play)
