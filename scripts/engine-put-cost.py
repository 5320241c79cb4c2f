"""What one put costs in the state machine and its engine, memory against RocksDB.

Applies puts (256-byte values, 10,000 random keys, ``--group`` per apply:
1 is a single client's commit, 32 about a 64-client group commit) through
``KeyValueStore`` as the applier does: every apply carries the membership
record with the window of recent request ids (one new 16-byte id per put,
``DEFAULT_SPAN`` indexes remembered), and revision auto-compaction runs as
a member runs it (retention 10,000, proposed every 1,000 revisions,
physical compaction in slices of 500 after each apply).  No Raft, WAL or
HTTP.  After ``--warmup`` puts (the window and the history full), prints
per put, best of ``--repeat`` runs, the engines' runs interleaved:

- ``commit``: the reactor thread's CPU inside ``engine.commit``;
- ``apply``: the reactor thread's CPU for the whole apply and compaction step;
- ``process``: the CPU of every thread of the process (RocksDB's
  background flushes and compactions included), per put.

    PYTHONPATH=. python scripts/engine-put-cost.py --group 1,32
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from dataclasses import replace

from metastore.kv.dedup import RecentRequests
from metastore.kv.messages import CompactionRequest, PutRequest
from metastore.kv.store import KeyValueStore
from metastore.storage.engine import ClusterState
from metastore.storage.memory import MemoryEngine
from metastore.storage.rocksdb import RocksDBEngine

RETENTION, SLACK, STEP = 10_000, 1_000, 500


def _open(storage: str, directory: str):
    if storage == "memory":
        return MemoryEngine()
    return RocksDBEngine.open(os.path.join(directory, "db"))


def cost_per_put(storage: str, puts: int, warmup: int, group: int) -> tuple[float, float, float]:
    """(commit, apply, process) seconds of CPU per put, measured after ``warmup`` puts."""
    directory = tempfile.mkdtemp(prefix="engine-put-cost-")
    engine = _open(storage, directory)
    commit = engine.commit
    in_commit = [0.0]

    def timed_commit(*args, **kwargs):
        started = time.thread_time()
        try:
            return commit(*args, **kwargs)
        finally:
            in_commit[0] += time.thread_time() - started

    engine.commit = timed_commit
    try:
        store = KeyValueStore(engine)
        recent = RecentRequests()
        record = ClusterState(voters=(1,))
        rng = random.Random(1)
        keys = [b"key%07d" % i for i in range(10_000)]
        value = b"v" * 256
        index = 0

        def run(count: int) -> None:
            nonlocal index
            for _ in range(count // group):
                index += 1
                commands = []
                for _ in range(group):
                    recent.add(rng.randbytes(16), index)
                    commands.append(PutRequest(rng.choice(keys), value))
                recent.forget_before(index)
                if store.revision - RETENTION - store.compacted_revision >= SLACK:
                    commands.append(CompactionRequest(store.revision - RETENTION))
                store.apply(index, commands, replace(record, requests=recent.entries()))
                while not store.compact_step(STEP):
                    pass

        run(warmup)
        in_commit[0] = 0.0
        thread0, process0 = time.thread_time(), time.process_time()
        run(puts)
        done = puts // group * group
        return (in_commit[0] / done, (time.thread_time() - thread0) / done, (time.process_time() - process0) / done)
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    """Measure and print the CPU per put for each engine and group size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="memory,rocksdb")
    parser.add_argument("--group", default="1,32", help="comma-separated puts per apply")
    parser.add_argument("--puts", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=25_000)
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    engines = arguments.storage.split(",")
    groups = [int(g) for g in arguments.group.split(",")]
    best = {}
    for _ in range(arguments.repeat):
        for group in groups:
            for storage in engines:
                measured = cost_per_put(storage, arguments.puts, arguments.warmup, group)
                old = best.get((storage, group))
                best[(storage, group)] = measured if old is None else tuple(map(min, old, measured))
    for group in groups:
        for storage in engines:
            commit, apply, process = (x * 1e6 for x in best[(storage, group)])
            print(f"{storage:>8}, {group:>3} per apply: commit {commit:6.1f}  apply {apply:6.1f}  "
                  f"process {process:6.1f} us of CPU per put (best of {arguments.repeat} x {arguments.puts})")


if __name__ == "__main__":
    main()
