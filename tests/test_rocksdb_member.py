"""A real member on the RocksDB engine: durability and recovery without replay."""

from __future__ import annotations

import os

import treq
from twisted.trial.unittest import TestCase

from tests.process import Member, burst_then_kill, free_port, start_healthy, wait_until


class RocksDBMemberTests(TestCase):
    """``--storage rocksdb`` in a ``twistd metastore`` process."""

    timeout = 180

    def member(self, *flags: str) -> Member:
        member = Member(1, [f"http://127.0.0.1:{free_port()}"], free_port(), os.path.abspath(self.mktemp()),
                        ["--storage", "rocksdb", *flags])
        self.addCleanup(member.kill)
        return member

    async def start(self, member: Member) -> None:
        await start_healthy(member)

    async def request(self, member: Member, method: str, path: str, body: bytes | None = None):
        response = await treq.request(method, member.url + path, data=body, persistent=False)
        return response.code, await treq.content(response)

    async def status(self, member: Member) -> dict:
        response = await treq.get(member.url + "/admin/status", persistent=False)
        return await treq.json_content(response)

    async def test_layout_is_the_seeds(self):
        """Data lives under <data-dir>/data/{id}/ with db, wal and snap inside."""
        member = self.member()
        await self.start(member)
        self.assertEqual(await self.request(member, "PUT", "/k", b"v"), (204, b""))
        root = os.path.join(member.workdir, "data", "1")
        self.assertTrue(all(os.path.isdir(os.path.join(root, d)) for d in ("db", "wal", "snap")))
        self.assertEqual((await self.status(member))["storage"], "rocksdb")

    async def test_sigkill_mid_burst_recovers_without_replaying_applied_entries(self):
        """SIGKILL during a write burst: every acknowledged write is back, and
        the restart starts from RocksDB's applied index, applying nothing twice.
        (The engine's state on disk is its last flush, which a checkpoint
        makes: with snapshots every 50 entries one is waited for first.)"""
        member = self.member("--snapshot-count", "50")
        await self.start(member)
        for i in range(60):
            self.assertEqual((await self.request(member, "PUT", f"/before-{i}", b"x"))[0], 204)

        async def checkpointed() -> bool:
            return (await self.status(member))["snapshot_index"] > 0

        await wait_until(checkpointed, what="a checkpoint")
        async def put(i: int) -> bool:
            return (await self.request(member, "PUT", f"/burst-{i}", b"%d" % i))[0] == 204

        outcome = await burst_then_kill(member, put, count=300, kill_after=100)
        acknowledged = {i for i, ok in outcome.items() if ok}
        self.assertGreaterEqual(len(acknowledged), 100)
        await self.start(member)
        status = await self.status(member)
        self.assertGreater(status["start_applied_index"], 0)
        first = status["first_applied_index"]
        self.assertTrue(first is None or first == status["start_applied_index"] + 1, status)
        for i in sorted(acknowledged):
            self.assertEqual(await self.request(member, "GET", f"/burst-{i}"), (200, b"%d" % i))

    async def test_sigkill_at_any_point_loses_no_acknowledged_write(self):
        """The engine writes no WAL of its own: after SIGKILL it is at its
        last flush, and the raft WAL replays the rest.  Killed at four
        points of bursts that cross checkpoints (engine flushes) and WAL
        releases, the member comes back with every acknowledged write each
        time, the later writes over the earlier ones."""
        member = self.member("--snapshot-count", "40", "--snapshot-catchup-entries", "10")
        acknowledged_in: dict[int, int] = {}
        """key number -> the round of its last acknowledged write"""
        for round_number, kill_after in enumerate((15, 60, 95, 140)):
            await self.start(member)

            async def put(i: int, round_number=round_number) -> bool:
                return (await self.request(member, "PUT", f"/crash-{i}", b"%d-%d" % (round_number, i)))[0] == 204

            outcome = await burst_then_kill(member, put, count=150, kill_after=kill_after)
            acknowledged = {i for i, ok in outcome.items() if ok}
            self.assertGreaterEqual(len(acknowledged), kill_after)
            acknowledged_in.update((i, round_number) for i in acknowledged)
            await self.start(member)
            for i, acked_round in sorted(acknowledged_in.items()):
                code, found = await self.request(member, "GET", f"/crash-{i}")
                # That value, or one written later (acknowledged or not).
                allowed = {b"%d-%d" % (r, i) for r in range(acked_round, round_number + 1)}
                self.assertEqual((code, found in allowed), (200, True), (i, acked_round, found))
            member.kill()

    async def test_snapshots_and_restart_on_rocksdb(self):
        """With frequent snapshots the WAL is compacted and a restart still
        starts from the engine, with every key."""
        member = self.member("--snapshot-count", "50", "--snapshot-catchup-entries", "10")
        await self.start(member)
        for i in range(160):
            self.assertEqual((await self.request(member, "PUT", f"/k{i % 40}", b"v%d" % i))[0], 204)
        self.assertGreater((await self.status(member))["snapshot_index"], 100)
        member.kill()
        await self.start(member)
        for i in range(120, 160):
            self.assertEqual(await self.request(member, "GET", f"/k{i % 40}"), (200, b"v%d" % i))
