"""The seeds a seeded simulation plays in one test run.

Every run plays a fixed regression set plus a number of fresh seeds from a
first seed drawn at random (printed when the test module loads, so any run
can be replayed), split over several test methods so that ``trial --jobs``
spreads them.  ``{PREFIX}_SEED=N`` replays one seed only,
``{PREFIX}_FIRST_SEED=S`` a whole run, ``{PREFIX}_SCHEDULES=K`` plays K
fresh seeds instead of the default.
"""

from __future__ import annotations

import os
import random
from typing import Callable

from twisted.trial.unittest import SkipTest


class SeedPlan:
    """This run's seeds for the simulation whose variables start with ``prefix``."""

    def __init__(self, prefix: str, what: str, default_schedules: int, chunks: int) -> None:
        self.first_seed_variable = f"{prefix}_FIRST_SEED"
        self.chunks = chunks
        replay = os.environ.get(f"{prefix}_SEED")
        self.replay_seed = None if replay is None else int(replay)
        """The one seed to replay, or None."""
        value = os.environ.get(self.first_seed_variable)
        if value is None:
            # Put into the environment, so that ``trial --jobs`` workers,
            # started after this module is loaded, play the same seeds.
            value = str(random.SystemRandom().randrange(10**9))
            os.environ[self.first_seed_variable] = value
        self.first_seed = int(value)
        self.schedules = int(os.environ.get(f"{prefix}_SCHEDULES", str(default_schedules)))
        if self.replay_seed is None:
            print(
                f"{what}: fresh seeds {self.first_seed}..{self.first_seed + self.schedules - 1} "
                f"({self.first_seed_variable}={self.first_seed})"
            )

    def chunk(self, index: int) -> range:
        """The fresh seeds the ``index``-th test method plays."""
        size = -(-self.schedules // self.chunks)
        start = self.first_seed + index * size
        return range(start, min(start + size, self.first_seed + self.schedules))

    def all_fresh(self) -> range:
        """Every fresh seed of this run."""
        return range(self.first_seed, self.first_seed + self.schedules)

    def add_fresh_tests(self, case: type, play: Callable) -> None:
        """Give ``case`` one ``test_fresh_seeds_N`` method per chunk, each
        calling ``play(self, seeds)`` (skipped while one seed is replayed)."""
        for index in range(self.chunks):
            setattr(case, f"test_fresh_seeds_{index}", self._fresh_test(index, play))

    def _fresh_test(self, index: int, play: Callable):
        plan = self

        def test(self) -> None:
            if plan.replay_seed is not None:
                raise SkipTest(f"replaying seed {plan.replay_seed} only")
            play(self, plan.chunk(index))

        test.__name__ = f"test_fresh_seeds_{index}"
        test.__doc__ = (
            f"Part {index + 1} of {self.chunks} of this run's fresh seeds keeps every "
            "property and recovers after healing."
        )
        return test
