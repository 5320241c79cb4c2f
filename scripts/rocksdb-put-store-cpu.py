"""The CPU a put costs in the state machine and the RocksDB engine alone.

Applies ``--puts`` puts (256-byte values, 10,000 random keys, ``--group``
per apply, as one group commit at 64 clients) through ``KeyValueStore`` on
a fresh ``RocksDBEngine`` in a temporary directory, with revision
auto-compaction as a member runs it (retention 10,000, a compaction
proposed every 1,000 revisions, physical compaction in slices of 500
between applies).  No Raft, WAL or HTTP.  Prints ``time.process_time``
per put for each cache budget (``--cache-bytes``, 0 for no cache of
newest versions), best of ``--repeat`` runs, the budgets' runs
interleaved so a busy machine weighs on each alike.

    PYTHONPATH=. python scripts/rocksdb-put-store-cpu.py --cache-bytes 0,16777216
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time

from metastore.kv.messages import CompactionRequest, PutRequest
from metastore.kv.store import KeyValueStore
from metastore.storage.rocksdb import RocksDBEngine

RETENTION, SLACK, STEP = 10_000, 1_000, 500


def cpu_per_put(puts: int, group: int, cache_bytes: int) -> float:
    """Seconds of CPU per put over one run on a fresh engine."""
    directory = tempfile.mkdtemp(prefix="put-store-cpu-")
    engine = RocksDBEngine.open(os.path.join(directory, "db"), newest_cache_bytes=cache_bytes)
    try:
        store = KeyValueStore(engine)
        rng = random.Random(1)
        keys = [b"key%07d" % i for i in range(10_000)]
        value = b"v" * 256
        started = time.process_time()
        for index in range(1, puts // group + 1):
            commands = [PutRequest(rng.choice(keys), value) for _ in range(group)]
            if store.revision - RETENTION - store.compacted_revision >= SLACK:
                commands.append(CompactionRequest(store.revision - RETENTION))
            store.apply(index, commands)
            while not store.compact_step(STEP):
                pass
        return (time.process_time() - started) / (puts // group * group)
    finally:
        engine.close()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    """Measure and print CPU per put for each budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=100_000)
    parser.add_argument("--group", type=int, default=32, help="puts per apply")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache-bytes", default="0,16777216", help="comma-separated cache budgets")
    arguments = parser.parse_args()
    budgets = [int(b) for b in arguments.cache_bytes.split(",")]
    best = {budget: float("inf") for budget in budgets}
    for _ in range(arguments.repeat):
        for budget in budgets:
            best[budget] = min(best[budget], cpu_per_put(arguments.puts, arguments.group, budget))
    for budget in budgets:
        print(f"cache {budget:>9} bytes: {best[budget] * 1e6:6.1f} us of CPU per put "
              f"(best of {arguments.repeat} x {arguments.puts} puts, {arguments.group} per apply)")


if __name__ == "__main__":
    main()
