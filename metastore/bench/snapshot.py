"""Snapshot benchmark: a big keyspace on one in-process member.

``python -m metastore.bench.snapshot --keys 1000000`` loads the keys (100-byte
values by default) through the node, takes a snapshot while a probe
measures how late the reactor runs a 5 ms timer (the longest pause any
request would have seen), writes a tail of entries after it, then restarts
the member and times how long it takes to serve again from snapshot + WAL.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from twisted.internet import defer, task
from twisted.python import usage

from metastore.config import Config
from metastore.kv.commands import Put
from metastore.service import open_member

PROBE_SECONDS = 0.005


class ReactorLagProbe:
    """Runs a timer every few milliseconds and records how late it fires."""

    def __init__(self, reactor, interval: float = PROBE_SECONDS) -> None:
        self.interval = interval
        self.worst = 0.0
        self._last = None
        self._call = task.LoopingCall(self._beat)
        self._call.clock = reactor

    def _beat(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.worst = max(self.worst, now - self._last - self.interval)
        self._last = now

    def start(self) -> None:
        """Start measuring from zero."""
        self.worst, self._last = 0.0, None
        self._call.start(self.interval)

    def stop(self) -> float:
        """Stop; the worst lateness seen, in seconds."""
        self._call.stop()
        return self.worst


class Options(usage.Options):
    """Command-line options of the snapshot benchmark."""

    optParameters = [
        ["keys", "k", 1000000, "Distinct keys to load.", int],
        ["value-size", None, 100, "Bytes per value.", int],
        ["tail", None, 10000, "Writes after the snapshot (replayed from the WAL on restart).", int],
        ["storage", None, "memory", "memory or rocksdb."],
        ["batch", None, 2000, "Concurrent proposals while loading.", int],
        ["data-dir", None, None, "Where to keep the member's data (default: a temporary directory)."],
    ]


async def _start(reactor, config: Config):
    started = time.perf_counter()
    member = open_member(config, reactor)
    member.startService()
    await member.http.listening
    for _ in range(100_000):
        if member.node.is_leader:
            break
        await task.deferLater(reactor, 0.01, lambda: None)
    return member, time.perf_counter() - started


async def _write(member, first: int, count: int, value: bytes, batch: int) -> None:
    for start in range(first, first + count, batch):
        await defer.gatherResults([
            member.node.propose(Put(b"key-%09d" % i, value)) for i in range(start, min(first + count, start + batch))
        ])


async def run(reactor, options: Options) -> None:
    """Load, snapshot under the probe, restart; print the figures."""
    data_dir = options["data-dir"] or tempfile.mkdtemp(prefix="metastore-snapbench-")
    config = Config(
        cluster=("http://127.0.0.1:0",), port=0, data_dir=data_dir, storage=options["storage"],
        snapshot_count=10**12, request_timeout=600,
    ).validate()
    value = os.urandom(options["value-size"])
    keys, tail = options["keys"], options["tail"]
    member, _ = await _start(reactor, config)
    started = time.perf_counter()
    await _write(member, 0, keys, value, options["batch"])
    print(f"loaded {keys} keys in {time.perf_counter() - started:.1f}s")

    probe = ReactorLagProbe(reactor)
    probe.start()
    started = time.perf_counter()
    index = await member.api.take_snapshot()
    snapshot_seconds = time.perf_counter() - started
    worst = probe.stop()
    path = member.node.compaction.snapshotter.directory.snapshots()[-1][2]
    print(f"snapshot at index {index}: {snapshot_seconds:.2f}s, {os.path.getsize(path) / 1e6:.1f} MB")
    print(f"longest reactor pause during the snapshot: {worst * 1000:.1f} ms "
          f"(taking the consistent view: {member.node.compaction.snapshotter.longest_pause_seconds * 1000:.1f} ms)")

    await _write(member, keys, tail, value, options["batch"])
    expected = member.node.applied_index
    await member.stopService()
    started = time.perf_counter()
    member, _ = await _start(reactor, config)
    for _ in range(1_000_000):
        if member.node.applied_index >= expected:
            break
        await task.deferLater(reactor, 0.01, lambda: None)
    restart = time.perf_counter() - started
    print(f"restart from snapshot + {tail}-entry WAL tail: serving every key again after {restart:.2f}s "
          f"(applied index {member.node.applied_index} of {expected})")
    await member.stopService()
    if not options["data-dir"]:
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run the benchmark on the global reactor."""
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        raise SystemExit(f"{e}\n{options}")
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, options)))


if __name__ == "__main__":
    main()
