"""The CPU one put costs a member below the HTTP layer, in this process.

Builds a real one-member node (``open_member``: Raft, WAL, memory engine,
applier, waiters) on a ``MemoryReactorClock`` in a temporary directory and
proposes puts through its facade in groups of ``--clients`` (one group
commit each: 256-byte values, 10,000 keys), settling every Ready cycle
and WAL job in between.  The WAL's fsync is a no-op (its cost is the
kernel's and the disk's, not the member's CPU) and the collector is tuned
as ``twistd metastore`` tunes it (``metastore.gctuning``).  Prints the
best of ``--repeat`` runs of ``time.process_time`` per put, so a busy
machine moves it less than a rate; ``--profile`` prints a cProfile of one
run instead.  No HTTP is involved: what it measures is the proposal, the
WAL write, the Ready loop, apply and the waiter's Deferred.

    PYTHONPATH=. python scripts/put-core-cpu.py --groups 200
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock

from metastore.config import Config
from metastore.gctuning import tune_for_server
from metastore.kv.messages import PutRequest
from metastore.service import open_member

MAX_SETTLE_STEPS = 200
VALUE = b"v" * 256


class InlineDisk:
    """A ``run_blocking`` that queues disk jobs until ``run_all`` runs them."""

    def __init__(self) -> None:
        self.jobs: list[tuple[object, defer.Deferred]] = []

    def __call__(self, f) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.jobs.append((f, d))
        return d

    def run_all(self) -> int:
        """Run every queued job in order; how many ran."""
        ran = 0
        while self.jobs:
            f, d = self.jobs.pop(0)
            d.callback(f())
            ran += 1
        return ran


class CoreUnderLoad:
    """A led one-member node and the means to push groups of puts through it."""

    def __init__(self, directory: str) -> None:
        self.clock, self.disk = MemoryReactorClock(), InlineDisk()
        config = Config(cluster=("http://127.0.0.1:0",), port=0, snapshot_count=10**9, data_dir=directory).validate()
        self.member = open_member(config, self.clock, run_blocking=self.disk, fsync=lambda fd: None)
        self.node = self.member.node
        self.node.startService()
        for _ in range(MAX_SETTLE_STEPS):
            self.settle()
            if self.node.is_leader:
                break
            self.clock.advance(0.1)
        if not self.node.is_leader:
            raise RuntimeError("the member did not become leader")

    def settle(self) -> None:
        """Run due calls and disk jobs until nothing is due (bounded)."""
        for _ in range(MAX_SETTLE_STEPS):
            self.clock.advance(0)
            ran = self.disk.run_all()
            due = any(c.getTime() <= self.clock.seconds() for c in self.clock.getDelayedCalls())
            if not ran and not due:
                return

    def put_groups(self, groups: int, clients: int) -> int:
        """Propose ``groups`` groups of ``clients`` puts; how many were answered."""
        answered = []
        for group in range(groups):
            for client in range(clients):
                key = b"key-%05d" % ((group * clients + client) % 10_000)
                self.member.api.propose(PutRequest(key, VALUE)).addCallback(answered.append)
            self.settle()
            if group % 5 == 4:
                self.clock.advance(0.1)  # a tick now and then, as a live member has
        return len(answered)

    def stop(self) -> None:
        """Stop the node."""
        self.node.stopService()


def main() -> None:
    """Parse the options and measure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=200, help="group commits per run")
    parser.add_argument("--clients", type=int, default=64, help="puts per group commit")
    parser.add_argument("--repeat", type=int, default=12, help="runs; the best is reported")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run instead")
    arguments = parser.parse_args()
    core = CoreUnderLoad(tempfile.mkdtemp(prefix="metastore-put-core-"))
    try:
        core.put_groups(50, arguments.clients)  # warm up: keys exist, windows filled
        tune_for_server()
        puts = arguments.groups * arguments.clients
        if arguments.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            core.put_groups(arguments.groups, arguments.clients)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            return
        best = float("inf")
        for _ in range(arguments.repeat):
            started = time.process_time()
            answered = core.put_groups(arguments.groups, arguments.clients)
            best = min(best, time.process_time() - started)
            if answered != puts:
                raise RuntimeError(f"{answered} of {puts} puts answered")
        print(f"{1e6 * best / puts:.1f} µs CPU per put below HTTP (best of {arguments.repeat} runs of {puts} puts)")
    finally:
        core.stop()


if __name__ == "__main__":
    main()
