"""Members that fall behind the compacted log catch up through a snapshot
streamed over the peer connection, and end with the leader's keyspace."""

from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from metastore.bench.load import BenchConfig, Operation, run_benchmark
from tests.process import Cluster, wait_until

WRITES = 50_000
SNAPSHOT_FLAGS = ["--snapshot-count", "1000", "--snapshot-catchup-entries", "200", "--request-timeout", "3"]


class SnapshotCatchUpTests(TestCase):
    """The issue's catch-up proofs, on real processes."""

    timeout = 600
    member_flags: dict[int, list[str]] = {}
    newcomer_flags: list[str] = []

    async def hashkv(self, cluster: Cluster, member_id: int) -> dict | None:
        code, body, _ = await cluster.request(member_id, "GET", "/admin/hashkv")
        return json.loads(body) if code == 200 else None

    async def assert_same_keyspace(self, cluster: Cluster, member_ids: list[int]) -> None:
        """Wait until the members are at one applied index, then compare hashes."""

        async def converged():
            documents = [await self.hashkv(cluster, i) for i in member_ids]
            if None in documents or len({d["applied_index"] for d in documents}) != 1:
                return None
            return documents

        documents = await wait_until(converged, timeout=120, interval=0.5, what=f"members {member_ids} to converge")
        self.assertEqual(len({d["hash"] for d in documents}), 1, documents)
        self.assertEqual(len({d["revision"] for d in documents}), 1, documents)

    async def test_lagging_and_new_members_catch_up_by_snapshot(self):
        """A member stopped during 50,000 writes, and a member added after
        compaction, both install a streamed snapshot and match the leader."""
        cluster = Cluster(self, 3, extra=SNAPSHOT_FLAGS, member_flags=self.member_flags)
        cluster.start()
        await cluster.leader()
        cluster.members[3].kill()
        config = BenchConfig(
            urls=(cluster.members[1].url, cluster.members[2].url), clients=32, operation=Operation.PUT,
            value_size=32, keys=4000, duration=None, requests=WRITES, populate=False, seed=7,
        )
        result = await run_benchmark(reactor, config)
        self.assertGreater(result.overall.succeeded, WRITES * 0.95, result.overall)
        leader = await cluster.leader(among=[1, 2])
        status = await cluster.status(leader)
        self.assertGreater(status["first_log_index"], 2, "the leader's log was never compacted")

        cluster.start(3)
        await self.assert_same_keyspace(cluster, [1, 2, 3])
        self.assertIn("installed snapshot", cluster.members[3].log_text())

        async def member_1_reconnected_to_3():
            status = await cluster.status(1)
            return status is not None and {2, 3} <= set(status["connected_peers"])

        # The strict reconfiguration check counts connected members: wait
        # for member 1's link to the restarted member 3 (it redials with backoff).
        await wait_until(member_1_reconnected_to_3, timeout=30, interval=0.1, what="member 1 to reconnect to 3")
        newcomer = cluster.add_member()
        newcomer.extra += self.newcomer_flags
        code, body, _ = await cluster.request(1, "POST", "/4", cluster.peer_urls[3].encode())
        self.assertEqual(code, 204, body)
        cluster.start(4)
        await self.assert_same_keyspace(cluster, [1, 2, 3, 4])
        self.assertIn("installed snapshot", newcomer.log_text())


class MixedEngineSnapshotCatchUpTests(SnapshotCatchUpTests):
    """The same with RocksDB members 1 and 2 (the leader writes its snapshot
    file on demand, from RocksDB), memory member 3 installing it, and a new
    member 4 on RocksDB installing it into a fresh database."""

    member_flags = {1: ["--storage", "rocksdb"], 2: ["--storage", "rocksdb"]}
    newcomer_flags = ["--storage", "rocksdb"]
