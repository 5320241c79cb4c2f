"""``--workers auto``: how many front processes a member gets from its cores.

The rule (measured and explained in ``docs/workers.md``, "How auto
chooses"): no fronts with fewer than ``MIN_CORES`` usable cores, where a
front costs more CPU per request than it saves (on two cores shared with
the clients, two fronts were slower for puts and level for gets); with
more, one front per core beyond the one left to the core process (Raft,
the WAL, apply), at most ``MAX_FRONTS`` (each front applies every write
again and holds a replica in memory, and the core process saturates on
writes before that many fronts do).

A configuration fronts cannot serve (``Config.workers_unsupported``) gets
no fronts from auto, with the reason in the log, instead of an error.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from metastore.config import Config

MIN_CORES = 3
"""Fewer usable cores than this: no fronts."""
MAX_FRONTS = 4
"""Auto never starts more fronts than this."""
CGROUP_V2_CPU_MAX = "/sys/fs/cgroup/cpu.max"
CGROUP_V1_QUOTA = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"
CGROUP_V1_PERIOD = "/sys/fs/cgroup/cpu/cpu.cfs_period_us"


def fronts_for(cores: int) -> int:
    """The fronts auto gives a member that may use ``cores`` cores."""
    if cores < MIN_CORES:
        return 0
    return min(cores - 1, MAX_FRONTS)


def quota_cores(cpu_max: str) -> float | None:
    """The cores a cgroup v2 ``cpu.max`` (``"QUOTA PERIOD"`` or ``"max
    PERIOD"``) allows, or None when it sets no limit (or cannot be read)."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (``taskset``, a
    container's cpuset), lowered by a cgroup CPU quota (``docker --cpus``),
    rounded up; at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = None
    cpu_max = _read(CGROUP_V2_CPU_MAX)
    if cpu_max is not None:
        quota = quota_cores(cpu_max)
    else:
        v1_quota, v1_period = _read(CGROUP_V1_QUOTA), _read(CGROUP_V1_PERIOD)
        if v1_quota is not None and v1_period is not None:
            quota = quota_cores(f"{v1_quota.strip()} {v1_period.strip()}")
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(cores, 1)


@dataclass(frozen=True, slots=True)
class AutoChoice:
    """What ``--workers auto`` resolved to, and the log line that says why."""

    workers: int
    reason: str


def choose(config: Config, cores: int) -> AutoChoice:
    """``--workers auto`` for ``config`` on a machine with ``cores`` usable
    cores: ``fronts_for(cores)``, or 0 when fronts cannot serve ``config``."""
    workers = fronts_for(cores)
    if workers == 0:
        return AutoChoice(0, f"--workers auto: no front processes ({cores} usable core(s); "
                             f"auto starts fronts from {MIN_CORES} cores)")
    unsupported = config.workers_unsupported()
    if unsupported:
        return AutoChoice(0, f"--workers auto: no front processes ({cores} usable cores), because fronts cannot "
                             f"serve {unsupported} yet")
    return AutoChoice(workers, f"--workers auto: {workers} front processes ({cores} usable cores, "
                               f"one left to the core process, at most {MAX_FRONTS})")
