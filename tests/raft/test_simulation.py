"""Thousands of seeded, randomized schedules of a simulated cluster.

Each schedule (see ``tests.raft.simulator``) mixes drops, duplicates,
delays, reordering, symmetric and one-way partitions, crashes with restart
from persisted state, proposals, reads, membership changes and leader
transfers; safety is checked after every event and liveness after healing.

Environment:
  RAFT_SIM_SEED=N        replay exactly one seed (the failure message says so)
  RAFT_SIM_SCHEDULES=K   run K schedules instead of the default
  RAFT_SIM_FIRST_SEED=S  start at seed S (to split long runs across cores)
"""

from __future__ import annotations

import os
from collections import Counter

from twisted.trial.unittest import SynchronousTestCase

from tests.raft.simulator import REPLAY_COMMAND, SimConfig, Simulation, Violation

DEFAULT_SCHEDULES = 2000


class SimulationTests(SynchronousTestCase):
    """Raft keeps its safety properties under every simulated schedule, and
    recovers once the faults heal."""

    def test_seeded_schedules(self) -> None:
        """Every schedule keeps: one leader per term, log matching, leader
        completeness, state machine safety and linearizable reads; and after
        healing a leader commits every pending proposal within the bound."""
        replay = os.environ.get("RAFT_SIM_SEED")
        if replay is not None:
            seeds = [int(replay)]
        else:
            first = int(os.environ.get("RAFT_SIM_FIRST_SEED", "0"))
            count = int(os.environ.get("RAFT_SIM_SCHEDULES", str(DEFAULT_SCHEDULES)))
            seeds = range(first, first + count)
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
        # The schedules must actually exercise the interesting paths.
        if replay is None and len(seeds) >= 200:
            for counter in ("crashes", "reads_served", "conf_changes", "snapshots_sent", "elections"):
                self.assertGreater(totals[counter], 0, counter)

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
