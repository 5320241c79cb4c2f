"""Debian's ``etcdctl`` (3.4, gRPC) against a real three-member MetaStore.

Each test starts three ``twistd metastore`` processes with ``--grpc-port``
on free ports (stopped by PID afterwards) and runs ``ETCDCTL_API=3
etcdctl --endpoints 127.0.0.1:<gRPC port>`` against them, checking what it
prints.  Skipped, with the reason, when ``/usr/bin/etcdctl`` is missing
(Debian's ``etcd-client`` package provides it).

etcdctl 3.4 has no ``get --count-only`` flag (3.5 added it);
``tests.api.grpc.test_servicers`` covers ``count_only`` through gRPC.
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SkipTest, TestCase

from tests.etcdctl import GrpcCluster, etcdctl, skip_without_etcdctl
from tests.process import Member, free_port, wait_until

REQUEST_TIMEOUT = ["--request-timeout", "3"]


class EtcdctlTestCase(TestCase):
    """Three members serving gRPC, and ``etcdctl`` to run against them."""

    timeout = 240

    async def setUp(self):
        skip_without_etcdctl()
        self.cluster = GrpcCluster(self, 3, extra=REQUEST_TIMEOUT)
        self.cluster.start()
        self.leader_id = await self.cluster.leader()
        await wait_until(self.all_urls_published, timeout=30, what="every member's gRPC URL in member list")

    def endpoint(self, member_id: int) -> str:
        """Member ``member_id``'s gRPC endpoint as etcdctl takes it."""
        return self.cluster.endpoints(member_id)

    async def etcdctl(self, *args: str, members=(1,), stdin: str | None = None, check: bool = True):
        """Run etcdctl against ``members``' gRPC endpoints; its stdout (and,
        with ``check`` False, ``(returncode, stdout, stderr)``)."""
        code, out, err = await etcdctl(self.cluster.endpoints(*members), *args,
                                       stdin=None if stdin is None else stdin.encode())  # fmt: skip
        if not check:
            return code, out, err
        self.assertEqual(code, 0, f"etcdctl {' '.join(args)}: {err}\n{self.cluster.logs()}")
        return out

    async def json(self, *args: str, members=(1,)):
        """An etcdctl command's ``-w json`` output, parsed."""
        return json.loads(await self.etcdctl(*args, "-w", "json", members=members))

    async def all_urls_published(self) -> bool:
        """Whether member list names every member's gRPC URL."""
        code, out, _ = await self.etcdctl("member", "list", "-w", "json", check=False)
        if code != 0:
            return False
        urls = {m["ID"]: m.get("clientURLs", []) for m in json.loads(out)["members"]}
        return urls == {i: [f"http://{self.endpoint(i)}"] for i in self.cluster.grpc_ports}


class KVCommandTests(EtcdctlTestCase):
    """put, get, del, txn and compaction."""

    async def test_put_get_del_on_every_member(self):
        """Writes through one member are read through the others, with
        etcdctl's range options; del counts what it deleted."""
        for member_id, (key, value) in zip((1, 2, 3, 1, 2), [("a/1", "x"), ("a/2", "yy"), ("a/3", "z"), ("b", "w"),
                                                             ("c", "v")]):  # fmt: skip
            self.assertEqual(await self.etcdctl("put", key, value, members=(member_id,)), "OK\n")
        self.assertEqual(await self.etcdctl("get", "a/", "--prefix", members=(2,)), "a/1\nx\na/2\nyy\na/3\nz\n")
        self.assertEqual(await self.etcdctl("get", "b", "--from-key", "--keys-only", members=(3,)), "b\n\nc\n\n")
        self.assertEqual(await self.etcdctl("get", "a/", "--prefix", "--limit", "2", "--sort-by", "VALUE", "--order", "DESCEND",
                                      members=(3,)), "a/3\nz\na/2\nyy\n")  # fmt: skip
        answer = await self.json("get", "a/", "--prefix", "--keys-only", members=(2,))
        self.assertEqual((answer["count"], [kv.get("value") for kv in answer["kvs"]]), (3, [None, None, None]))
        self.assertEqual(answer["header"]["member_id"], 2)
        first = (await self.json("get", "a/1"))["kvs"][0]["mod_revision"]
        await self.etcdctl("put", "a/1", "x2")
        self.assertEqual(await self.etcdctl("get", "a/1", "--rev", str(first), "--print-value-only"), "x\n")
        self.assertEqual(await self.etcdctl("del", "a/", "--prefix", members=(3,)), "3\n")
        self.assertEqual(await self.etcdctl("get", "a/", "--prefix", members=(1,)), "")

    async def test_txn_from_stdin(self):
        """A non-interactive txn takes the branch its compares choose."""
        await self.etcdctl("put", "k", "1")
        script = 'value("k") = "1"\n\nput k 2\nput other x\n\nput k fail\n\n'
        self.assertEqual(await self.etcdctl("txn", stdin=script, members=(2,)), "SUCCESS\n\nOK\n\nOK\n")
        self.assertEqual(await self.etcdctl("txn", stdin=script, members=(3,)), "FAILURE\n\nOK\n")
        self.assertEqual(await self.etcdctl("get", "k", "--print-value-only"), "fail\n")

    async def test_compaction(self):
        """After compaction a read below it answers etcd's error; the newest versions stay."""
        for value in ("1", "2", "3"):
            await self.etcdctl("put", "k", value)
        revision = (await self.json("get", "k"))["header"]["revision"]
        self.assertEqual(await self.etcdctl("compaction", "--physical", str(revision - 1), members=(2,)),
                         f"compacted revision {revision - 1}\n")  # fmt: skip
        code, _, err = await self.etcdctl("get", "k", "--rev", str(revision - 2), check=False, members=(3,))
        self.assertEqual(code, 1)
        self.assertIn("etcdserver: mvcc: required revision has been compacted", err)
        self.assertEqual(await self.etcdctl("get", "k", "--rev", str(revision - 1), "--print-value-only"), "2\n")


class ClusterCommandTests(EtcdctlTestCase):
    """endpoint, alarm, member and move-leader."""

    async def test_endpoint_commands_reach_every_member(self):
        """With --cluster etcdctl finds every member through member list and
        asks each: all healthy, one leader, equal hashes."""
        await self.etcdctl("put", "k", "v")
        statuses = await self.json("endpoint", "status", "--cluster")
        self.assertEqual(sorted(s["Endpoint"] for s in statuses),
                         sorted(f"http://{self.endpoint(i)}" for i in (1, 2, 3)))  # fmt: skip
        self.assertEqual({s["Status"]["leader"] for s in statuses}, {self.leader_id})
        self.assertEqual(sorted(s["Status"]["header"]["member_id"] for s in statuses), [1, 2, 3])
        health = await self.json("endpoint", "health", "--cluster")
        self.assertEqual([h["health"] for h in health], [True, True, True])

        async def hashes_agree():
            hashes = await self.json("endpoint", "hashkv", "--cluster")
            return len(hashes) == 3 and len({h["HashKV"]["hash"] for h in hashes}) == 1

        await wait_until(hashes_agree, timeout=20, what="every member's HashKV to agree")

    async def test_alarm_list_and_disarm(self):
        """alarm list shows what is raised (here through the JSON API) and
        alarm disarm clears it, on any member."""
        self.assertEqual(await self.etcdctl("alarm", "list", members=(1, 2, 3)), "")
        body = json.dumps({"action": "ACTIVATE", "memberID": "2", "alarm": "NOSPACE"}).encode()
        status, answer, _ = await self.cluster.request(1, "POST", "/v3/maintenance/alarm", body)
        self.assertEqual(status, 200, answer)
        self.assertEqual(await self.etcdctl("alarm", "list", members=(3,)), "memberID:2 alarm:NOSPACE \n")
        code, _, err = await self.etcdctl("put", "k", "v", check=False)
        self.assertEqual(code, 1)
        self.assertIn("etcdserver: mvcc: database space exceeded", err)
        self.assertEqual(await self.etcdctl("alarm", "disarm", members=(2,)), "memberID:2 alarm:NOSPACE \n")
        self.assertEqual(await self.etcdctl("alarm", "list"), "")
        self.assertEqual(await self.etcdctl("put", "k", "v"), "OK\n")

    async def test_member_add_learner_promote_remove(self):
        """A learner added with etcdctl joins, is promoted once caught up,
        shows as a voter with its gRPC URL, and is removed."""
        peer_url = f"http://127.0.0.1:{free_port()}"
        out = await self.etcdctl("member", "add", "newbie", f"--peer-urls={peer_url}", "--learner")
        self.assertRegex(out, r"Member +4 added to cluster")
        grpc_port = free_port()
        member = Member(4, self.cluster.peer_urls + [peer_url], free_port(), self.cluster.workdir,
                        extra=REQUEST_TIMEOUT + ["--join", "--grpc-port", str(grpc_port)])  # fmt: skip
        self.cluster.members[4] = member
        self.cluster.grpc_ports[4] = grpc_port
        endpoint = self.endpoint(4)
        self.addCleanup(member.kill)
        member.start()
        learners = [m for m in (await self.json("member", "list"))["members"] if m.get("isLearner")]
        self.assertEqual([m["ID"] for m in learners], [4])

        async def promoted():
            code, out, _ = await self.etcdctl("member", "promote", "4", members=(1, 2, 3), check=False)
            return code == 0 and "promoted" in out

        await wait_until(promoted, timeout=60, interval=0.5, what="member 4 to be promoted")
        listed = {m["ID"]: m for m in (await self.json("member", "list"))["members"]}
        self.assertFalse(listed[4].get("isLearner", False))
        async def published():
            return (await self.json("member", "list"))["members"][-1].get("clientURLs") == [f"http://{endpoint}"]

        await wait_until(published, timeout=30, what="member 4's gRPC URL")
        self.assertRegex(await self.etcdctl("member", "remove", "4"), r"Member +4 removed from cluster")
        self.assertEqual([m["ID"] for m in (await self.json("member", "list"))["members"]], [1, 2, 3])

    async def test_move_leader(self):
        """move-leader (asked of every endpoint, as etcdctl finds the leader
        itself) hands leadership to the named member."""
        target = next(i for i in (1, 2, 3) if i != self.leader_id)
        out = await self.etcdctl("move-leader", format(target, "x"), members=(1, 2, 3))
        self.assertIn(f"Leadership transferred from {self.leader_id:x} to {target:x}", out)
        statuses = await self.json("endpoint", "status", members=(1, 2, 3))
        self.assertEqual({s["Status"]["leader"] for s in statuses}, {target})


class SnapshotTests(EtcdctlTestCase):
    """snapshot save, then a new cluster restored from it."""

    async def test_save_then_restore_a_new_cluster(self):
        """The file etcdctl saves starts a new three-member cluster
        (``--restore-from`` on every member) with the keys, revisions and
        history of the old."""
        for value in ("1", "2"):
            await self.etcdctl("put", "k", value)
        await self.etcdctl("put", "other", "x")
        before = await self.json("get", "", "--from-key")
        path = os.path.join(self.cluster.workdir, "saved.db")
        await self.etcdctl("snapshot", "save", path, members=(2,))
        for member in self.cluster.members.values():
            member.stop()

        self.cluster = GrpcCluster(self, 3, extra=REQUEST_TIMEOUT + ["--restore-from", path])
        self.cluster.start()
        await self.cluster.leader()
        after = await self.json("get", "", "--from-key", members=(3,))
        self.assertEqual(after["kvs"], before["kvs"])
        self.assertEqual(after["header"]["revision"], before["header"]["revision"])
        self.assertEqual(await self.etcdctl("get", "k", "--rev", str(before["kvs"][0]["mod_revision"] - 1),
                                      "--print-value-only", members=(1,)), "1\n")  # fmt: skip
        self.assertEqual(sorted(m["ID"] for m in (await self.json("member", "list"))["members"]), [1, 2, 3])
        self.assertEqual(await self.etcdctl("put", "k", "3", members=(2,)), "OK\n")


class CheckPerfTests(EtcdctlTestCase):
    """``etcdctl check perf``: opt-in, it takes a minute and its latency
    bounds need a machine that is not overloaded."""

    async def setUp(self):
        if os.environ.get("METASTORE_CHECK_PERF") != "1":
            raise SkipTest("takes 60 s and needs an unloaded machine: set METASTORE_CHECK_PERF=1 to run it")
        await super().setUp()

    async def test_check_perf_small_load_passes(self):
        """``check perf --load=s`` (150 writes/s from 50 clients for 60 s)
        passes against the three members: throughput, slowest request
        and standard deviation within etcdctl's bounds."""
        code, out, err = await etcdctl(self.cluster.endpoints(), "check", "perf", "--load=s", timeout=180)
        self.assertEqual(code, 0, out[-2000:] + err[-2000:])
        self.assertIn("PASS: Throughput is", out)
