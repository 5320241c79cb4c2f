"""Debian's ``etcdctl --user`` against a real 3-member MetaStore over
gRPC: ``auth enable``, ``user add``, ``role add``, ``role
grant-permission`` and ``user grant-role`` as an operator runs them, then
a restricted user is refused outside its range on every member (the
permission is replicated).  Skipped with the reason when etcdctl is not
installed."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.etcdctl import GrpcCluster, etcdctl, skip_without_etcdctl
from tests.process import wait_healthy, wait_until


class EtcdctlAuthTests(TestCase):
    """RBAC set up and enforced through etcdctl."""

    timeout = 240

    async def test_restricted_user_is_refused_on_every_member(self):
        """A user with readwrite on [app/, app0) writes there through any
        member and is refused "permission denied" outside it everywhere;
        without credentials a request is refused; a restarted member
        (state from a snapshot and the log) enforces the same."""
        skip_without_etcdctl()
        cluster = GrpcCluster(self, 3, extra=["--snapshot-count", "5", "--snapshot-catchup-entries", "2"])
        cluster.start()
        for member in cluster.members.values():
            await wait_healthy(member, 40)
        await cluster.leader()
        one = cluster.endpoints(1)

        async def ok(*args: str, endpoints: str = one) -> str:
            code, out, err = await etcdctl(endpoints, *args)
            self.assertEqual(code, 0, (args, out, err))
            return out

        await ok("user", "add", "root:rootpw")
        await ok("user", "grant-role", "root", "root")
        await ok("auth", "enable")
        root = ("--user", "root:rootpw")
        await ok(*root, "role", "add", "app")
        await ok(*root, "role", "grant-permission", "app", "--prefix=true", "readwrite", "app/")
        await ok(*root, "user", "add", "alice:alicepw")
        await ok(*root, "user", "grant-role", "alice", "app")
        self.assertIn("app/", await ok(*root, "role", "get", "app"))

        alice = ("--user", "alice:alicepw")
        for member_id in sorted(cluster.members):
            endpoints = cluster.endpoints(member_id)

            async def permitted() -> bool:
                code, out, err = await etcdctl(endpoints, *alice, "put", f"app/{member_id}", "v")
                return code == 0

            # A follower applies the grants a moment after the leader answers.
            await wait_until(permitted, timeout=30, interval=0.5, what=f"member {member_id} permitting alice")
            code, out, err = await etcdctl(endpoints, *alice, "put", "other", "x")
            self.assertNotEqual(code, 0)
            self.assertIn("etcdserver: permission denied", err)
            code, out, err = await etcdctl(endpoints, *alice, "get", "other")
            self.assertNotEqual(code, 0)
            self.assertIn("etcdserver: permission denied", err)
        code, out, err = await etcdctl(one, "get", "app/1")
        self.assertNotEqual(code, 0)
        self.assertIn("etcdserver: user name is empty", err)
        code, out, err = await etcdctl(one, "--user", "alice:wrong", "get", "app/1")
        self.assertIn("authentication failed, invalid user ID or password", err)
        self.assertIn("app/3", await ok(*root, "get", "--prefix", "app/"))

        # A restarted member (its WAL replayed past the snapshots that
        # --snapshot-count 5 forced) still enforces the same permissions.
        cluster.members[3].kill()
        cluster.members[3].start()
        await wait_healthy(cluster.members[3], 40)
        three = cluster.endpoints(3)

        async def serving() -> bool:
            code, out, err = await etcdctl(three, *alice, "get", "app/3")
            return code == 0 and "app/3" in out

        await wait_until(serving, timeout=30, interval=0.5, what="the restarted member serving alice")
        code, out, err = await etcdctl(three, *alice, "get", "other")
        self.assertIn("etcdserver: permission denied", err)
