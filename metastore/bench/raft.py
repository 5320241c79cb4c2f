"""Benchmark of the Raft core alone: a 3-node cluster simulated in memory.

No I/O, no sockets, no clock inside the measured loop other than the one
``perf_counter`` pair around it.  Proposals are made on the leader in
batches; a batch is done when every node has applied it.  Reports committed
and applied entries per second.

Usage::

    .venv/bin/python -m metastore.bench.raft [--proposals N] [--batch B]
        [--size BYTES] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time

from metastore.raft import Config, MemoryStorage, Message, RawNode, StateType


class BenchCluster:
    """Three RawNodes over MemoryStorage, with messages delivered in memory."""

    def __init__(self, size: int = 3) -> None:
        ids = list(range(1, size + 1))
        self.storages = {node_id: MemoryStorage() for node_id in ids}
        self.nodes = {
            node_id: RawNode(
                Config(id=node_id, storage=self.storages[node_id], rng=random.Random(node_id))
            )
            for node_id in ids
        }
        for node in self.nodes.values():
            node.bootstrap(ids)
        self.applied = dict.fromkeys(ids, 0)
        self.pump()
        self.nodes[1].campaign()
        self.pump()
        if self.nodes[1].raft.state != StateType.StateLeader:
            raise RuntimeError("node 1 did not become leader")

    def pump(self) -> None:
        """Run Ready cycles and deliver messages until the cluster is quiet."""
        nodes = self.nodes
        storages = self.storages
        applied = self.applied
        while True:
            outbox: list[Message] = []
            for node_id, node in nodes.items():
                if not node.has_ready():
                    continue
                rd = node.ready()
                storage = storages[node_id]
                if rd.entries:
                    storage.append(rd.entries)
                if rd.hard_state is not None:
                    storage.set_hard_state(rd.hard_state)
                applied[node_id] += len(rd.committed_entries)
                outbox.extend(rd.messages)
                node.advance(rd)
            if not outbox:
                return
            for message in outbox:
                nodes[message.to].step(message)


def run(proposals: int, batch: int, size: int) -> tuple[float, int]:
    """Commit and apply ``proposals`` entries on all three nodes; return the
    elapsed seconds and the number of entries applied per node."""
    cluster = BenchCluster()
    leader = cluster.nodes[1]
    payload = b"x" * size
    start_applied = cluster.applied[3]
    started = time.perf_counter()
    remaining = proposals
    while remaining:
        count = min(batch, remaining)
        for _ in range(count):
            leader.propose(payload)
        remaining -= count
        cluster.pump()
    elapsed = time.perf_counter() - started
    applied = min(cluster.applied.values()) - start_applied
    if applied < proposals:
        raise RuntimeError(f"only {applied} of {proposals} entries applied")
    return elapsed, proposals


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print entries per second."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="payload bytes per entry")
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary")
    options = parser.parse_args(argv)
    if options.profile:
        profiler = cProfile.Profile()
        profiler.enable()
    elapsed, entries = run(options.proposals, options.batch, options.size)
    if options.profile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    print(
        f"raft: 3 nodes, {entries} entries of {options.size} B in batches of {options.batch}: "
        f"{elapsed:.2f} s, {entries / elapsed:,.0f} entries/s committed and applied on every node"
    )


if __name__ == "__main__":
    main()
