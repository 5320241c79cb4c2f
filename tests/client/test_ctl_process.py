"""``metastorectl`` run as a subprocess against a real 3-member cluster,
for every subcommand; and a snapshot saved from one cluster restored into
a new one with the same ``hashkv``."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

from twisted.trial.unittest import TestCase

from metastore.client.sync import Client
from tests.process import Cluster, child_env, run_to_exit, wait_healthy, wait_until

CTL = [sys.executable, "-m", "metastore.ctl"]


def ctl(endpoints: list[str], *args: str, stdin: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``metastorectl --endpoints ... ARGS`` to its exit."""
    return subprocess.run([*CTL, "--endpoints", ",".join(endpoints), *args], input=stdin, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


def save_on_a_terminal(endpoints: list[str], path: str) -> tuple[str, str]:
    """``snapshot save`` with its stderr on a pseudo-terminal: (stdout, what the terminal showed)."""
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run([*CTL, "--endpoints", ",".join(endpoints), "snapshot", "save", path], env=child_env(),
                              stdout=subprocess.PIPE, stderr=terminal, text=True, timeout=60)
        os.close(terminal)
        shown = b""
        for _ in range(1000):  # bounded: the child has exited, so this is what it wrote
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: nothing more
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
    if done.returncode != 0:
        raise AssertionError(f"snapshot save failed: {shown!r}")
    return done.stdout, shown.decode("utf-8", "replace")


class CtlTestCase(TestCase):
    """A started 3-member cluster and a way to run metastorectl against it."""

    timeout = 180

    async def start_cluster(self) -> None:
        """Start the cluster; ``self.urls`` lists its client URLs."""
        self.cluster = Cluster(self, 3)
        self.cluster.start()
        self.leader = await self.cluster.leader()
        self.urls = [m.url for m in self.cluster.members.values()]

    def ok(self, *args: str, stdin: str | None = None, endpoints: list[str] | None = None) -> str:
        """metastorectl's output; the test fails if it exits non-zero."""
        done = ctl(endpoints or self.urls, *args, stdin=stdin)
        self.assertEqual(done.returncode, 0, f"metastorectl {' '.join(args)}: {done.stderr}")
        return done.stdout

    def json(self, *args: str, **options):
        """metastorectl ``-w json ARGS``, decoded."""
        return json.loads(self.ok("-w", "json", *args, **options))


class KeyValueCommandTests(CtlTestCase):
    """get, put, del, txn and compaction."""

    async def test_put_get_and_delete(self):
        """Ranges by prefix, from a key, at a revision, with a limit, keys
        only and count only; deletes by prefix; every output format."""
        await self.start_cluster()
        self.assertEqual(self.ok("put", "a/1", "one"), "OK\n")
        first = self.json("get", "a/1")["header"]["revision"]
        self.ok("put", "a/1", "uno")
        self.ok("put", "a/2", stdin="two")
        self.ok("put", "b", "bee")
        self.assertEqual(self.ok("get", "a/", "--prefix"), "a/1\nuno\na/2\ntwo\n")
        self.assertEqual(self.ok("get", "a/2", "--from-key"), "a/2\ntwo\nb\nbee\n")
        self.assertEqual(self.ok("get", "a/1", "--rev", str(first)), "a/1\none\n")
        self.assertEqual(self.ok("get", "a/", "--prefix", "--keys-only"), "a/1\n\na/2\n\n")
        self.assertEqual(self.ok("get", "", "--prefix", "--count-only"), "3\n")
        limited = self.json("get", "a/", "--prefix", "--limit", "1")
        self.assertEqual((len(limited["kvs"]), limited["more"], limited["count"]), (1, True, 2))
        table = self.ok("-w", "table", "get", "b").splitlines()
        self.assertEqual([cell.strip() for cell in table[3].split("|")[1:3]], ["b", "bee"])
        self.assertEqual(self.ok("del", "a/", "--prefix"), "2\n")
        self.assertEqual(self.ok("get", "a/", "--prefix"), "")

    async def test_txn_from_stdin(self):
        """etcdctl's txn text: the success branch when the compares hold, else the failure branch."""
        await self.start_cluster()
        self.ok("put", "k", "v1")
        text = 'value("k") = "v1"\n\nput k "v 2"\nget k\n\nget k\n'
        self.assertEqual(self.ok("txn", stdin=text), "SUCCESS\n\nOK\n\nk\nv 2\n")
        self.assertEqual(self.ok("txn", stdin=text), "FAILURE\n\nk\nv 2\n")
        bad = ctl(self.urls, "txn", stdin="value(k) = 1\n\nput k v\n")
        self.assertEqual(bad.returncode, 1)
        self.assertIn("not a compare", bad.stderr)

    async def test_compaction(self):
        """After compaction an older revision is refused with etcd's error."""
        await self.start_cluster()
        self.ok("put", "k", "1")
        old = self.json("get", "k")["header"]["revision"]
        self.ok("put", "k", "2")
        now = self.json("get", "k")["header"]["revision"]
        self.assertEqual(self.ok("compaction", str(now)), f"compacted revision {now}\n")
        refused = ctl(self.urls, "get", "k", "--rev", str(old))
        self.assertEqual(refused.returncode, 1)
        self.assertIn("required revision has been compacted", refused.stderr)

    async def test_no_member_answers(self):
        """With nothing listening at the endpoint: exit 1 and an error line."""
        await self.start_cluster()
        for member in self.cluster.members.values():
            member.kill()
        done = ctl(self.urls, "--command-timeout", "1", "get", "k")
        self.assertEqual(done.returncode, 1)
        self.assertTrue(done.stderr.startswith("Error: "), done.stderr)


class WatchCommandTests(CtlTestCase):
    """watch prints events as they happen, and history from a revision."""

    async def test_watch_prefix_from_a_revision(self):
        """Events from ``--rev`` (history) and new ones, until ``--max-events``."""
        await self.start_cluster()
        self.ok("put", "w/old", "1")
        start = self.json("get", "w/old")["header"]["revision"]
        watcher = subprocess.Popen([*CTL, "--endpoints", ",".join(self.urls), "watch", "w/", "--prefix", "--rev",
                                    str(start), "--max-events", "3"], env=child_env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: watcher.poll() is None and watcher.kill())
        self.ok("put", "w/new", "2")
        self.ok("del", "w/old")
        self.ok("put", "other", "not watched")
        out, err = watcher.communicate(timeout=30)
        self.assertEqual(watcher.returncode, 0, err)
        self.assertEqual(out, "PUT\nw/old\n1\nPUT\nw/new\n2\nDELETE\nw/old\n")

    async def test_watch_json(self):
        """``-w json`` prints one event per line."""
        await self.start_cluster()
        self.ok("put", "j", "1")
        start = self.json("get", "j")["header"]["revision"]
        done = ctl(self.urls, "-w", "json", "watch", "j", "--rev", str(start), "--max-events", "1")
        event = json.loads(done.stdout)
        self.assertEqual((event["type"], event["kv"]["mod_revision"]), ("PUT", start))


class LeaseCommandTests(CtlTestCase):
    """lease grant, keep-alive, timetolive, list and revoke."""

    async def test_lease_lifecycle(self):
        """A key put with a granted lease is listed by timetolive and goes with revoke."""
        await self.start_cluster()
        granted = self.ok("lease", "grant", "60").split()
        self.assertEqual((granted[0], granted[2:]), ("lease", ["granted", "with", "TTL(60s)"]))
        lease_id = granted[1]
        self.ok("put", "leased", "v", "--lease", lease_id)
        self.assertEqual(self.ok("lease", "keep-alive", "--once", lease_id), f"lease {lease_id} keepalived with TTL(60)\n")
        ttl = self.ok("lease", "timetolive", lease_id, "--keys")
        self.assertTrue(ttl.startswith(f"lease {lease_id} granted with TTL(60s), remaining("), ttl)
        self.assertIn("attached keys(['leased'])", ttl)
        self.assertEqual(self.ok("lease", "list"), f"found 1 leases\n{lease_id}\n")
        self.assertEqual(self.ok("lease", "revoke", lease_id), f"lease {lease_id} revoked\n")
        self.assertEqual(self.ok("get", "leased"), "")
        self.assertEqual(self.ok("lease", "timetolive", lease_id), f"lease {lease_id} already expired\n")
        self.assertEqual(ctl(self.urls, "lease", "revoke", lease_id).returncode, 1)


class MemberCommandTests(CtlTestCase):
    """member list, add (as a learner), promote and remove."""

    async def test_add_promote_remove(self):
        """A learner added, started, promoted once caught up, then removed."""
        await self.start_cluster()
        listed = self.json("member", "list")["members"]
        self.assertEqual([m["ID"] for m in listed], [1, 2, 3])
        learner = self.cluster.add_member()
        added = self.ok("member", "add", "--peer-urls", learner.cluster[-1], "--learner")
        self.assertEqual(added.splitlines()[0], f"Member {learner.member_id:x} added to cluster")
        learner.start()
        await wait_healthy(learner, 40)

        refusals = []

        def promoted():
            done = ctl(self.urls, "member", "promote", f"{learner.member_id:x}")
            refusals.append(done.stderr)
            return done.returncode == 0

        try:
            await wait_until(promoted, timeout=40, interval=0.5, what="the learner to catch up and be promoted")
        except AssertionError:
            self.fail(f"not promoted; the last refusals: {refusals[-2:]}")
        rows = self.json("member", "list")["members"]
        self.assertEqual([(m["ID"], m["isLearner"]) for m in rows], [(1, False), (2, False), (3, False), (4, False)])
        self.ok("member", "remove", f"{learner.member_id:x}")
        self.assertEqual([m["ID"] for m in self.json("member", "list")["members"]], [1, 2, 3])


class EndpointCommandTests(CtlTestCase):
    """endpoint status, health and hashkv for every member, and defrag."""

    async def test_every_member(self):
        """``--cluster`` asks each member: one leader, all healthy, equal hashes."""
        await self.start_cluster()
        self.ok("put", "k", "v")
        one = [self.urls[0]]
        statuses = self.json("endpoint", "status", "--cluster", endpoints=one)
        self.assertEqual(sorted(s["Endpoint"] for s in statuses), sorted(self.urls))
        self.assertEqual({s["Status"]["leader"] for s in statuses}, {self.leader})
        table = self.ok("-w", "table", "endpoint", "status", "--cluster", endpoints=one)
        self.assertEqual(sum(" true " in line.split("|")[5] for line in table.splitlines()[3:-1]), 1)
        health = self.ok("endpoint", "health", "--cluster", endpoints=one).splitlines()
        self.assertEqual(sorted(health), sorted(f"{u} is healthy: successfully committed proposal" for u in self.urls))

        async def hashes_agree():
            hashes = self.json("endpoint", "hashkv", "--cluster", endpoints=one)
            return len(hashes) == 3 and len({h["HashKV"]["hash"] for h in hashes}) == 1

        await wait_until(hashes_agree, timeout=20, what="equal hashes on every member")
        defragged = self.ok("defrag", "--cluster", endpoints=one).splitlines()
        self.assertEqual(len(defragged), 3)

    async def test_an_unhealthy_member_fails_the_check(self):
        """A killed member is reported unhealthy and the exit code is 1."""
        await self.start_cluster()
        victim = next(m for i, m in self.cluster.members.items() if i != self.leader)
        victim.kill()
        done = ctl(self.urls, "--command-timeout", "2", "endpoint", "health")
        self.assertEqual(done.returncode, 1)
        self.assertIn(f"{victim.url} is unhealthy", done.stdout)


class SnapshotCommandTests(CtlTestCase):
    """snapshot save, then restore into a new cluster with the same keyspace."""

    async def test_save_and_restore_into_a_new_cluster(self):
        """A new 3-member cluster restored from the saved file has the
        old cluster's hashkv at the same revision, and takes writes."""
        await self.start_cluster()
        with Client(self.urls) as client:  # the history to carry over (metastorectl's put is tested above)
            for i in range(50):
                client.put(f"k{i % 7}", f"v{i}")
            client.delete("k3")
        revision = self.json("get", "k0")["header"]["revision"]
        path = os.path.abspath(self.mktemp())
        leader_url = [self.cluster.members[self.leader].url]
        saved, progress = save_on_a_terminal(leader_url, path)
        self.assertTrue(saved.startswith(f"Snapshot saved at {path} ("), saved)
        self.assertIn("Saving snapshot", progress)
        self.assertIn("100%", progress)
        self.assertFalse(os.path.exists(path + ".part"))
        old_hash = self.json("endpoint", "hashkv", "--rev", str(revision), endpoints=leader_url)[0]["HashKV"]["hash"]

        restored = Cluster(self, 3)
        os.makedirs(restored.workdir)
        for member_id in restored.members:
            done = run_to_exit([*CTL, "snapshot", "restore", path, "--data-dir", restored.workdir, "--id",
                                str(member_id), "--cluster", ",".join(restored.peer_urls)], cwd=restored.workdir)
            self.assertEqual(done.returncode, 0, done.stderr)
        again = run_to_exit([*CTL, "snapshot", "restore", path, "--data-dir", restored.workdir, "--id", "1",
                             "--cluster", ",".join(restored.peer_urls)], cwd=restored.workdir)
        self.assertEqual(again.returncode, 1)
        self.assertIn("needs a new data directory", again.stderr)
        restored.start()
        await restored.leader()
        new_urls = [m.url for m in restored.members.values()]
        hashes = self.json("endpoint", "hashkv", "--rev", str(revision), endpoints=new_urls)
        self.assertEqual([h["HashKV"]["hash"] for h in hashes], [old_hash] * 3)
        self.assertEqual(self.ok("get", "k0", endpoints=new_urls), "k0\nv49\n")
        self.ok("put", "after", "restore", endpoints=new_urls)
