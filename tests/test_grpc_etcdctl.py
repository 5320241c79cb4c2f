"""Debian's ``etcdctl`` (ETCDCTL_API=3) against a real 3-member MetaStore
over gRPC: ``watch`` (prefix, from a revision, across a restarted member)
and ``lease grant / keep-alive / timetolive / revoke / list``.  Skipped
with the reason when etcdctl is not installed.  Writes the watches see go
through the v3 JSON API: the same revisions and events as gRPC.
"""

from __future__ import annotations

import base64
import json
import re

from twisted.trial.unittest import TestCase

from tests.etcdctl import EtcdctlProcess, GrpcCluster, etcdctl, skip_without_etcdctl
from tests.process import wait_healthy, wait_until


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def start_cluster(testcase) -> GrpcCluster:
    """Three healthy members serving gRPC."""
    skip_without_etcdctl()
    cluster = GrpcCluster(testcase, 3)
    cluster.start()
    for member in cluster.members.values():
        await wait_healthy(member, 40)
    await cluster.leader()
    return cluster


async def put(cluster: GrpcCluster, key: bytes, value: bytes, lease: int = 0, among=None) -> int:
    """Put through the v3 JSON API of the first running member in
    ``among`` that answers 200 (retried while an election runs); the revision."""
    body = json.dumps({"key": b64(key), "value": b64(value), **({"lease": str(lease)} if lease else {})}).encode()
    ids = among or sorted(cluster.members)
    answer = {}

    async def attempt():
        for member_id in ids:
            if cluster.members[member_id].running():
                status, content, _ = await cluster.request(member_id, "POST", "/v3/kv/put", body)
                if status == 200:
                    answer.update(json.loads(content))
                    return True
        return False

    await wait_until(attempt, timeout=30, interval=0.2, what=f"put {key!r}")
    return int(answer["header"]["revision"])


def watched(output: str) -> list[tuple[str, str, str]]:
    """(type, key, value) of each whole event ``etcdctl watch`` printed:
    ``PUT`` or ``DELETE``, the key and the value, each on a line."""
    lines = output.split("\n")
    return [(line, lines[i + 1], lines[i + 2]) for i, line in enumerate(lines[:-3]) if line in ("PUT", "DELETE")]


class EtcdctlWatchTests(TestCase):
    """``etcdctl watch`` on a three-member cluster."""

    timeout = 240

    async def test_watch_prefix_and_from_a_revision(self):
        """``watch --prefix`` prints the events under the prefix only, live;
        ``watch --rev R`` first prints the history from R."""
        cluster = await start_cluster(self)
        first = await put(cluster, b"hist", b"1")
        await put(cluster, b"hist", b"2")
        live = EtcdctlProcess(self, cluster.endpoints(), "watch", "--prefix", "w/")
        history = EtcdctlProcess(self, cluster.endpoints(), "watch", "--rev", str(first), "hist")
        await history.wait_for(lambda out: len(watched(out)) >= 2, what="the history of hist")
        # etcdctl prints nothing on creation: write until the live watch shows a first event.
        await wait_until(lambda: self._probe(cluster, live), timeout=30, interval=0.5, what="the live watch")
        await put(cluster, b"x/1", b"no")
        await put(cluster, b"w/1", b"a")
        await put(cluster, b"w/2", b"b")
        await put(cluster, b"hist", b"3")
        await live.wait_for(lambda out: ("PUT", "w/2", "b") in watched(out), what="w/2")
        events = [e for e in watched(live.output()) if e[1] != "w/0"]
        self.assertEqual(events, [("PUT", "w/1", "a"), ("PUT", "w/2", "b")])
        await history.wait_for(lambda out: len(watched(out)) >= 3, what="the live event of hist")
        self.assertEqual(watched(history.output()), [("PUT", "hist", "1"), ("PUT", "hist", "2"), ("PUT", "hist", "3")])

    async def _probe(self, cluster, process) -> bool:
        """Put ``w/0`` and say whether the watch printed it already."""
        await put(cluster, b"w/0", b"start")
        return any(e[1] == "w/0" for e in watched(process.output()))

    async def test_watch_survives_a_restarted_member(self):
        """One ``etcdctl watch --prefix`` across all three endpoints while
        each member in turn is stopped, written around, and restarted: it
        prints every event exactly once, in order (etcdctl reconnects to
        another endpoint and resumes from the next revision)."""
        cluster = await start_cluster(self)
        start = await put(cluster, b"r/0", b"0")
        watch = EtcdctlProcess(self, cluster.endpoints(), "watch", "--prefix", "--rev", str(start), "r/")
        await watch.wait_for(lambda out: ("PUT", "r/0", "0") in watched(out), what="r/0")
        expected = [("PUT", "r/0", "0")]
        for n, stopped in enumerate((1, 2, 3), start=1):
            cluster.members[stopped].stop()
            rest = [i for i in cluster.members if i != stopped]
            await cluster.leader(among=rest)
            await put(cluster, b"r/%d" % n, b"while %d was down" % stopped, among=rest)
            expected.append(("PUT", f"r/{n}", f"while {stopped} was down"))
            await watch.wait_for(lambda out: len(watched(out)) >= len(expected), timeout=60,
                                 what=f"the event written while member {stopped} was down")
            await wait_healthy_restart(cluster, stopped)
        self.assertEqual(watched(watch.output()), expected)
        self.assertTrue(watch.running(), watch.output())


async def wait_healthy_restart(cluster: GrpcCluster, member_id: int) -> None:
    """Start a stopped member again and wait until it is healthy."""
    cluster.members[member_id].start()
    await wait_healthy(cluster.members[member_id], 40)


LEASE_ID = re.compile(r"lease ([0-9a-f]+) granted with TTL\((\d+)s\)")


class EtcdctlLeaseTests(TestCase):
    """``etcdctl lease`` on a three-member cluster."""

    timeout = 240

    async def test_grant_keepalive_timetolive_list_revoke(self):
        """grant prints the id and TTL; a key put with the lease is listed
        by ``timetolive --keys``; ``keep-alive --once`` and a running
        ``keep-alive`` renew it; ``list`` shows it; ``revoke`` deletes the
        key and then ``timetolive`` says it expired."""
        cluster = await start_cluster(self)
        endpoints = cluster.endpoints()
        code, out, err = await etcdctl(endpoints, "lease", "grant", "60")
        self.assertEqual(code, 0, err)
        found = LEASE_ID.search(out)
        self.assertIsNotNone(found, out)
        hex_id, ttl = found.group(1), found.group(2)
        self.assertEqual(ttl, "60")
        await put(cluster, b"leased", b"v", lease=int(hex_id, 16))

        code, out, err = await etcdctl(endpoints, "lease", "timetolive", "--keys", hex_id)
        self.assertEqual(code, 0, err)
        self.assertRegex(out, rf"lease {hex_id} granted with TTL\(60s\), remaining\(\d+s\), "
                              r"attached keys\(\[leased\]\)")

        code, out, err = await etcdctl(endpoints, "lease", "keep-alive", "--once", hex_id)
        self.assertEqual((code, out.strip()), (0, f"lease {hex_id} keepalived with TTL(60)"), err)

        code, out, err = await etcdctl(endpoints, "lease", "grant", "6")
        short = LEASE_ID.search(out).group(1)
        keeper = EtcdctlProcess(self, endpoints, "lease", "keep-alive", short)
        # clientv3 renews every TTL/3 seconds: two renewals within a TTL.
        await keeper.wait_for(lambda out: out.count(f"lease {short} keepalived with TTL(6)") >= 2, timeout=20,
                              what="two keepalives")
        self.assertTrue(keeper.running())
        code, out, err = await etcdctl(endpoints, "lease", "list")
        self.assertEqual(code, 0, err)
        self.assertEqual(out.splitlines()[0], "found 2 leases")
        self.assertEqual(sorted(out.splitlines()[1:]), sorted([hex_id, short]))
        keeper.stop()

        code, out, err = await etcdctl(endpoints, "lease", "revoke", hex_id)
        self.assertEqual((code, out.strip()), (0, f"lease {hex_id} revoked"), err)
        self.assertEqual(await keys_under(cluster, b"leased"), [])
        code, out, err = await etcdctl(endpoints, "lease", "timetolive", hex_id)
        self.assertEqual((code, out.strip()), (0, f"lease {hex_id} already expired"), err)

    async def test_revoke_of_an_unknown_lease_is_etcds_error(self):
        """``lease revoke`` of an id never granted fails with etcd's message."""
        cluster = await start_cluster(self)
        code, out, err = await etcdctl(cluster.endpoints(), "lease", "revoke", "1234")
        self.assertNotEqual(code, 0)
        self.assertIn("etcdserver: requested lease not found", err)


async def keys_under(cluster: GrpcCluster, prefix: bytes) -> list[bytes]:
    """The keys under ``prefix`` (a linearizable read through the v3 JSON API)."""
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    body = json.dumps({"key": b64(prefix), "range_end": b64(end), "keys_only": True}).encode()
    for member_id in sorted(cluster.members):
        status, content, _ = await cluster.request(member_id, "POST", "/v3/kv/range", body)
        if status == 200:
            return [base64.b64decode(kv["key"]) for kv in json.loads(content).get("kvs", [])]
    raise AssertionError(f"no member answered a range of {prefix!r}")


class EtcdctlLockElectTests(TestCase):
    """``etcdctl lock`` and ``etcdctl elect`` between two etcdctl processes
    (sessions: a lease kept alive, a txn that creates the waiter's key, a
    range for the owner, a watch on the predecessor)."""

    timeout = 240

    async def test_lock_is_held_by_one_process_at_a_time(self):
        """The second ``lock`` waits (its key queued behind the first's)
        and prints nothing; once the first process is stopped (it unlocks)
        the second holds the lock and prints its key."""
        cluster = await start_cluster(self)
        first = EtcdctlProcess(self, cluster.endpoints(), "lock", "L")
        await first.wait_for(lambda out: out.startswith("L/"), what="the first lock")
        second = EtcdctlProcess(self, cluster.endpoints(), "lock", "L")
        await wait_until(lambda: self._count(cluster, b"L/", 2), timeout=30, interval=0.2,
                         what="the second lock to queue")
        self.assertEqual(second.output(), "")
        self.assertEqual(first.stop(), 0, first.output())
        out = await second.wait_for(lambda out: out.startswith("L/"), what="the second lock")
        self.assertNotEqual(out.splitlines()[0], first.output().splitlines()[0])
        self.assertEqual(await keys_under(cluster, b"L/"), [out.splitlines()[0].encode()])

    async def _count(self, cluster, prefix: bytes, count: int) -> bool:
        """Whether exactly ``count`` keys are under ``prefix``."""
        return len(await keys_under(cluster, prefix)) == count

    async def test_elect_one_leader_then_the_next(self):
        """The first ``elect`` becomes leader and prints its proposal; the
        second waits; an observer (``elect -l``) prints the leader's
        proposal; once the first process stops, the second leads and the
        observer prints its proposal."""
        cluster = await start_cluster(self)
        observer = EtcdctlProcess(self, cluster.endpoints(), "elect", "-l", "E")
        first = EtcdctlProcess(self, cluster.endpoints(), "elect", "E", "p1")
        await first.wait_for(lambda out: "p1" in out.splitlines(), what="the first leader")
        second = EtcdctlProcess(self, cluster.endpoints(), "elect", "E", "p2")
        await wait_until(lambda: self._count(cluster, b"E/", 2), timeout=30, interval=0.2,
                         what="the second candidate to queue")
        self.assertNotIn("p2", second.output().splitlines())
        await observer.wait_for(lambda out: "p1" in out.splitlines(), what="the observer to see p1")
        first.stop()
        await second.wait_for(lambda out: "p2" in out.splitlines(), what="the second leader")
        await observer.wait_for(lambda out: "p2" in out.splitlines(), what="the observer to see p2")
