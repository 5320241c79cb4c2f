"""What one range deletion per commit does to RocksDB's point reads.

Until 2026-12-05 the RocksDB engine dropped the request ids that fell out
of the deduplication window with one ``delete_range`` per commit, every one
starting at the same prefix.  RocksDB fragments the range tombstones of the
memtable again for the first read after each write that adds one, and
nested tombstones fragment into a list that grows with their square, so
each put's lookup of its key's newest version cost more and more until the
memtable was flushed.  This replays that pattern on a database opened with
the engine's options: per commit, a put of one key, the window's range
deletion (or, with ``--point``, a point delete of the forgotten id, as the
engine does now) and the new id's put, then one point read.  It prints the
read's average cost every ``--report`` commits and stops after
``--commits`` commits or once a read takes more than ``--stop-ms``.

    PYTHONPATH=. python scripts/rocksdb-range-tombstone-reads.py
    PYTHONPATH=. python scripts/rocksdb-range-tombstone-reads.py --point
"""

from __future__ import annotations

import argparse
import random
import shutil
import struct
import tempfile
import time

import rocksdict

from metastore.storage.rocksdb import META_REQUESTS, MiB, _engine_options

U64 = struct.Struct(">Q")


def main() -> None:
    """Run the replay and print the point reads' cost as it grows (or not)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=5000)
    parser.add_argument("--report", type=int, default=500, help="print every this many commits")
    parser.add_argument("--stop-ms", type=float, default=50.0, help="stop once one read takes longer")
    parser.add_argument("--point", action="store_true", help="point deletes instead of range deletions")
    arguments = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="range-tombstones-")
    db = rocksdict.Rdict(directory, _engine_options(64 * MiB, 32 * MiB))
    try:
        rng = random.Random(1)
        keys = [b"k" + b"key%07d" % i for i in range(10_000)]
        write_options = rocksdict.WriteOptions()
        window_start, spent, slowest, reads = 0, 0.0, 0.0, 0
        for commit in range(1, arguments.commits + 1):
            batch = rocksdict.WriteBatch(raw_mode=True)
            batch.put(rng.choice(keys), b"v" * 288)
            if arguments.point:
                batch.delete(META_REQUESTS + U64.pack(window_start))
            else:
                batch.delete_range(META_REQUESTS, META_REQUESTS + U64.pack(window_start + 1))
            window_start += 1
            batch.put(META_REQUESTS + U64.pack(window_start + 10_000), b"")
            db.write(batch, write_options)
            started = time.perf_counter()
            db.get(rng.choice(keys))
            took = time.perf_counter() - started
            spent, slowest, reads = spent + took, max(slowest, took), reads + 1
            if commit % arguments.report == 0 or took * 1000 > arguments.stop_ms:
                print(f"{commit:6d} commits: point read {spent / reads * 1e6:9.1f} us on average "
                      f"over the last {reads}, slowest {slowest * 1e3:.2f} ms", flush=True)
                spent, slowest, reads = 0.0, 0.0, 0
                if took * 1000 > arguments.stop_ms:
                    print(f"stopped: one read took {took * 1e3:.1f} ms")
                    return
    finally:
        db.close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
