"""A replicated cluster of real ``twistd metastore`` processes on 127.0.0.1.

Each test starts its own members on free ports and stops them.  Waits
poll a condition with a bound.  The members' logs stay in the test's
``_trial_temp`` directory (``member-N.log``) for a failed test.
"""

from __future__ import annotations

import json

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.process import Cluster, wait_until

REQUEST_TIMEOUT = ["--request-timeout", "2"]


class ClusterTestCase(TestCase):
    """Starts a three-member cluster and waits for its leader."""

    timeout = 180
    size = 3
    member_flags: dict[int, list[str]] = {}

    async def setUp(self):
        self.cluster = Cluster(self, self.size, extra=REQUEST_TIMEOUT, member_flags=self.member_flags)
        self.cluster.start()
        self.leader_id = await self.cluster.leader()

    async def get(self, member_id: int, key: str, serializable: bool = False) -> tuple[int, bytes]:
        query = "?serializable=true" if serializable else ""
        code, body, _ = await self.cluster.request(member_id, "GET", f"/{key}{query}")
        return code, body

    async def assert_everywhere(self, expected: dict[str, bytes], member_ids=None) -> None:
        """Every named member answers every key with its value (linearizably)."""
        for member_id in member_ids or self.cluster.members:
            for key, value in expected.items():
                self.assertEqual(await self.get(member_id, key), (200, value), f"member {member_id}, key {key}")


class ReplicationTests(ClusterTestCase):
    """Writes on any member reach every member, in one order."""

    async def test_propose_on_commit(self):
        """Proposals from each member are committed and applied on all, in the same order."""
        writes = [
            defer.ensureDeferred(self.cluster.request(m, "PUT", f"/from-{m}-{i}", b"%d-%d" % (m, i)))
            for i in range(20)
            for m in (1, 2, 3)
        ]
        codes = [code for code, _, _ in await defer.gatherResults(writes)]
        self.assertEqual(set(codes), {204})
        revisions = {}
        for m in (1, 2, 3):
            for key in (f"from-{w}-{i}" for w in (1, 2, 3) for i in range(20)):
                code, body, response = await self.cluster.request(m, "GET", "/" + key)
                self.assertEqual(code, 200)
                revision = response.headers.getRawHeaders("X-MetaStore-Mod-Revision")[0]
                revisions.setdefault(key, set()).add(revision)
        # One mod_revision per key on every member: the same order of writes everywhere.
        self.assertEqual({len(r) for r in revisions.values()}, {1})
        self.assertEqual(len({r.pop() for r in revisions.values()}), 60)

    async def test_follower_reads_are_linearizable(self):
        """A write acknowledged by one member is read back at once from every other."""
        for i in range(10):
            writer = 1 + i % 3
            code, _, _ = await self.cluster.request(writer, "PUT", f"/lin{i}", b"v%d" % i)
            self.assertEqual(code, 204)
            for reader in (1, 2, 3):
                self.assertEqual(await self.get(reader, f"lin{i}"), (200, b"v%d" % i))

    async def test_members_listing(self):
        """/admin/members lists every member with URLs, the leader and applied indexes."""
        await wait_until(lambda: self._all_client_urls_published(), timeout=20, what="client URLs")
        code, body, _ = await self.cluster.request(1, "GET", "/admin/members")
        document = json.loads(body)
        self.assertEqual(code, 200)
        self.assertEqual([m["id"] for m in document["members"]], [1, 2, 3])
        self.assertEqual(document["leader"], self.leader_id)
        for member in document["members"]:
            self.assertEqual(member["peer_urls"], [self.cluster.peer_urls[member["id"] - 1]])
            self.assertEqual(member["client_urls"], [self.cluster.members[member["id"]].url])
            self.assertIsInstance(member["applied_index"], int)
            self.assertIsInstance(member["term"], int)
            self.assertEqual(member["healthy"], True)
            self.assertEqual(member["role"], "leader" if member["id"] == self.leader_id else "follower")

    async def _all_client_urls_published(self) -> bool:
        code, body, _ = await self.cluster.request(1, "GET", "/admin/members")
        return code == 200 and all(m["client_urls"] for m in json.loads(body)["members"])


class FailureTests(ClusterTestCase):
    """Members die; acknowledged writes do not."""

    async def test_recovery_walkthrough(self):
        """Write foo, SIGKILL a member, write bar, restart it: it reads bar."""
        follower = next(i for i in (1, 2, 3) if i != self.leader_id)
        other = next(i for i in (1, 2, 3) if i not in (follower,))
        code, _, _ = await self.cluster.request(other, "PUT", "/foo", b"foo")
        self.assertEqual(code, 204)
        self.cluster.members[follower].kill()
        code, _, _ = await self.cluster.request(other, "PUT", "/bar", b"bar")
        self.assertEqual(code, 204)
        self.cluster.start(follower)
        await wait_until(lambda: self._reads(follower, "bar", b"bar"), timeout=30, what="the restarted member to read bar")
        self.assertEqual(await self.get(follower, "foo"), (200, b"foo"))

    async def _reads(self, member_id: int, key: str, value: bytes) -> bool:
        return await self.get(member_id, key) == (200, value)

    async def test_leader_sigkill(self):
        """After the leader is killed a new one is elected; every acknowledged write survives."""
        followers = [i for i in (1, 2, 3) if i != self.leader_id]
        before = {f"before-{i}": b"%d" % i for i in range(20)}
        for key, value in before.items():
            code, _, _ = await self.cluster.request(followers[i % 2] if (i := int(value)) else followers[0], "PUT", "/" + key, value)
            self.assertEqual(code, 204)
        self.cluster.members[self.leader_id].kill()
        new_leader = await self.cluster.leader(among=followers)
        self.assertIn(new_leader, followers)
        after = {f"after-{i}": b"%d" % i for i in range(20)}
        for i, (key, value) in enumerate(after.items()):
            await self.cluster.put_until_ok(followers[i % 2], key, value)
        self.cluster.start(self.leader_id)
        await self.cluster.leader()
        await self.assert_everywhere({**before, **after})

    async def test_minority_cannot_serve_and_loses_nothing(self):
        """With two of three stopped, writes and linearizable reads are 503; all survives restart."""
        code, _, _ = await self.cluster.request(1, "PUT", "/kept", b"yes")
        self.assertEqual(code, 204)
        survivor = self.leader_id
        stopped = [i for i in (1, 2, 3) if i != survivor]
        for i in stopped:
            self.cluster.members[i].kill()
        code, body, response = await self.cluster.request(survivor, "PUT", "/lost", b"no")
        self.assertEqual(code, 503, body)
        self.assertIsNotNone(response.headers.getRawHeaders("Retry-After"))
        code, body, _ = await self.cluster.request(survivor, "GET", "/kept")
        self.assertEqual(code, 503, body)
        self.assertEqual(await self.get(survivor, "kept", serializable=True), (200, b"yes"))
        self.cluster.start(*stopped)
        await self.cluster.leader()
        await self.assert_everywhere({"kept": b"yes"})

    async def test_whole_cluster_restart(self):
        """SIGKILL every member, restart all: every write and the membership are back."""
        expected = {f"k{i}": b"value %d" % i for i in range(30)}
        for i, (key, value) in enumerate(expected.items()):
            code, _, _ = await self.cluster.request(1 + i % 3, "PUT", "/" + key, value)
            self.assertEqual(code, 204)
        for member in self.cluster.members.values():
            member.kill()
        self.cluster.start()
        await self.cluster.leader()
        await self.assert_everywhere(expected)
        code, body, _ = await self.cluster.request(2, "GET", "/admin/members")
        self.assertEqual([m["id"] for m in json.loads(body)["members"]], [1, 2, 3])


class MembershipTests(ClusterTestCase):
    """Members join and leave a running cluster."""

    async def test_add_and_remove_members(self):
        """POST /4 + --join adds a serving member; DELETE /3 removes one, which exits."""
        code, _, _ = await self.cluster.request(1, "PUT", "/early", b"before 4 joined")
        self.assertEqual(code, 204)
        self.cluster.add_member()
        code, body, _ = await self.cluster.request(1, "POST", "/4", self.cluster.peer_urls[3].encode())
        self.assertEqual(code, 204, body)
        self.cluster.start(4)
        await wait_until(lambda: self._reads(4, "early", b"before 4 joined"), timeout=30, what="member 4 to catch up")
        code, _, _ = await self.cluster.request(4, "PUT", "/from-4", b"hello")
        self.assertEqual(code, 204)
        self.assertEqual(await self.get(1, "from-4"), (200, b"hello"))

        code, body, _ = await self.cluster.request(1, "DELETE", "/3")
        self.assertEqual(code, 204, body)
        await wait_until(lambda: not self.cluster.members[3].running(), timeout=30, what="member 3 to exit")
        self.assertEqual(self.cluster.members[3].process.returncode if self.cluster.members[3].process else 0, 0)
        await self.cluster.put_until_ok(2, "after-removal", b"still works")
        self.assertEqual(await self.get(4, "after-removal"), (200, b"still works"))
        code, body, _ = await self.cluster.request(4, "GET", "/admin/members")
        self.assertEqual([m["id"] for m in json.loads(body)["members"]], [1, 2, 4])

    async def _reads(self, member_id: int, key: str, value: bytes) -> bool:
        code, body, _ = await self.cluster.request(member_id, "GET", "/" + key)
        return (code, body) == (200, value)


MIXED = {3: ["--storage", "rocksdb"]}


class MixedEngineReplicationTests(ReplicationTests):
    """The replication tests with member 3 on RocksDB, 1 and 2 in memory."""

    member_flags = MIXED


class MixedEngineFailureTests(FailureTests):
    """The failure tests with member 3 on RocksDB, 1 and 2 in memory."""

    member_flags = MIXED
