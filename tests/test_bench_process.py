"""``metastore-bench`` against real servers: a MetaStore member through the
seed API, etcd 3.4 through its v3 JSON gateway (skipped when
``/usr/bin/etcd`` is not installed), and the trivial ceiling server.

Each run is bounded by a request count (``--total``), never by sleeping;
the servers run on 127.0.0.1 free ports and are stopped by the cleanups.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys

import treq
from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, TestCase

from metastore.bench.cli import BenchOptions, run_command
from metastore.bench.servers import start_etcd
from tests.process import Cluster, wait_until

ETCD = "/usr/bin/etcd"


async def bench(argv: list[str]) -> tuple[int, dict]:
    """Run ``metastore-bench ARGV --json`` in this process; its exit status and JSON."""
    options = BenchOptions()
    options.parseOptions(argv + ["--json"])
    out, err = io.StringIO(), io.StringIO()
    status = await run_command(reactor, options, out=out, err=err)
    return status, json.loads(out.getvalue())


class SeedMemberTests(TestCase):
    """Every seed-API subcommand against one real member."""

    timeout = 120

    async def setUp(self) -> None:
        self.cluster = Cluster(self, 1)
        self.cluster.start()
        await self.cluster.leader()
        self.member = self.cluster.members[1]
        self.url = self.member.url

    async def test_put_counts_and_server_cpu(self) -> None:
        """Exactly --total PUTs, every one a 204, are made and stored; the
        member's CPU per 1,000 requests and RSS are reported."""
        status, document = await bench([
            "put", "-u", self.url, "-n", "300", "-c", "8", "-k", "20", "--sequential-keys",
            "--value-size", "33", "--pid", str(self.member.process.pid),
        ])
        self.assertEqual(status, 0)
        self.assertEqual((document["requests"], document["outcomes"], document["errors"]), (300, {"204": 300}, {}))
        (server,) = document["servers"]
        self.assertEqual(server["pid"], self.member.process.pid)
        self.assertGreater(server["cpu_ms_per_1000_requests"], 0)
        self.assertGreater(server["rss_after_mb"], 10)
        code, body, _ = await self.cluster.request(1, "GET", "/bench%2F19")
        self.assertEqual((code, len(body)), (200, 33))

    async def test_reads_find_populated_keys(self) -> None:
        """After population, linearizable and serializable reads (through
        the leader, found by --target-leader) all answer 200: no key is missing."""
        for consistency, op in (("l", "GET"), ("s", "GET-serializable")):
            status, document = await bench([
                "range", "-u", self.url, "--target-leader", "-n", "200", "-c", "4", "-k", "30",
                "--consistency", consistency,
            ])
            self.assertEqual(status, 0)
            self.assertEqual(document["outcomes"], {"200": 200}, consistency)
            self.assertEqual(list(document["by_op"]), [op])
            self.assertEqual(document["config"]["urls"], [self.url])

    async def test_mixed_and_pipelined(self) -> None:
        """A mix through the seed API is PUT and GET; 6 clients pipelined on
        2 connections still get every answer, in order."""
        status, document = await bench([
            "txn-mixed", "-u", self.url, "-n", "300", "-c", "6", "--conns", "2", "-k", "10", "--read-ratio", "0.5",
        ])
        self.assertEqual(status, 0)
        self.assertEqual(set(document["by_op"]), {"PUT", "GET"})
        self.assertEqual(document["requests"], 300)
        self.assertEqual(document["errors"], {})

    async def test_closed_port_fails_cleanly(self) -> None:
        """With the member gone every request is a counted connect failure
        and the exit status says nothing succeeded."""
        self.member.kill()
        status, document = await bench(["put", "-u", self.url, "-n", "10", "-c", "2"])
        self.assertEqual((status, document["outcomes"]), (1, {"connect-failed": 10}))


class SeedClusterTests(TestCase):
    """Endpoints of a three-member cluster: the leader found, or all used."""

    timeout = 120

    async def test_leader_and_all_members(self) -> None:
        """--target-leader picks the member that leads among three; without
        it, serializable reads spread over all three all find their keys."""
        cluster = Cluster(self, 3)
        cluster.start()
        leader = await cluster.leader()
        urls = ",".join(m.url for m in cluster.members.values())
        status, document = await bench(["put", "-u", urls, "--target-leader", "-n", "100", "-c", "4", "-k", "10"])
        self.assertEqual((status, document["outcomes"]), (0, {"204": 100}))
        self.assertEqual(document["config"]["urls"], [cluster.members[leader].url])

        async def applied_everywhere():
            statuses = [await cluster.status(i) for i in cluster.members]
            return None not in statuses and len({s["applied_index"] for s in statuses}) == 1

        await wait_until(applied_everywhere, timeout=30, interval=0.1, what="every member to apply the puts")
        status, document = await bench(["range", "-u", urls, "--consistency", "s", "-n", "300", "-c", "6",
                                        "-k", "10", "--no-populate", "--sequential-keys"])
        self.assertEqual((status, document["outcomes"]), (0, {"200": 300}))
        self.assertEqual(len(document["config"]["urls"]), 3)


class EtcdV3Tests(TestCase):
    """Every v3 subcommand against a real etcd, through its JSON gateway."""

    timeout = 120

    async def setUp(self) -> None:
        if not os.path.exists(ETCD):
            raise SkipTest(f"{ETCD} is not installed: the v3 mode is proven against a real etcd")
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        self.etcd = start_etcd(workdir, ETCD)
        self.addCleanup(self.etcd.stop)
        self.url = self.etcd.url

        async def answers():
            try:
                response = await treq.get(self.etcd.ready_url, timeout=2, persistent=False)
                return response.code == 200
            except Exception:
                return False

        await wait_until(answers, timeout=30, interval=0.1, what="etcd to answer /version")

    async def range_json(self, key: bytes) -> dict:
        """etcd's /v3/kv/range answer for ``key``."""
        body = json.dumps({"key": base64.b64encode(key).decode()}).encode()
        response = await treq.post(self.url + "/v3/kv/range", data=body, timeout=5, persistent=False)
        return json.loads(await treq.content(response))

    async def test_put_stores_base64_keys(self) -> None:
        """PUTs through /v3/kv/put all succeed and store the padded key with
        a value of the asked size; etcd's CPU is accounted."""
        status, document = await bench([
            "put", "--api", "v3", "-u", self.url, "-n", "300", "-c", "8", "-k", "5", "--sequential-keys",
            "--key-size", "12", "--value-size", "40", "--pid", str(self.etcd.process.pid), "--target-leader",
        ])
        self.assertEqual(status, 0)
        self.assertEqual((document["requests"], document["outcomes"]), (300, {"200": 300}))
        self.assertGreater(document["servers"][0]["cpu_ms_per_1000_requests"], 0)
        found = await self.range_json(b"bench/000004")
        self.assertEqual(len(base64.b64decode(found["kvs"][0]["value"])), 40)
        self.assertEqual(found["kvs"][0]["version"], "60")

    async def test_range_and_txn_mixed(self) -> None:
        """Linearizable and serializable ranges, and a txn put / txn range
        mix, all answer 200 after population."""
        for argv, ops in (
            (["range", "--consistency", "l"], {"GET"}),
            (["range", "--consistency", "s"], {"GET-serializable"}),
            (["txn-mixed", "--read-ratio", "0.5"], {"TXN-PUT", "TXN-RANGE"}),
        ):
            status, document = await bench(argv + ["--api", "v3", "-u", self.url, "-n", "200", "-c", "4", "-k", "20"])
            self.assertEqual(status, 0)
            self.assertEqual(document["outcomes"], {"200": 200}, argv)
            self.assertEqual(set(document["by_op"]), ops)
        found = await self.range_json(b"bench/7")
        self.assertEqual(found.get("count"), "1")

    async def test_lease_keepalive(self) -> None:
        """Leases are granted, then refreshed: every keepalive is a 200."""
        status, document = await bench([
            "lease-keepalive", "--api", "v3", "-u", self.url, "-n", "300", "-c", "4", "--leases", "3", "--ttl", "30",
        ])
        self.assertEqual(status, 0)
        self.assertEqual((document["outcomes"], list(document["by_op"])), ({"200": 300}, ["KEEPALIVE"]))

    async def test_watch_fan_out(self) -> None:
        """Every PUT reaches every one of 4 watchers, with a delivery latency."""
        status, document = await bench([
            "watch", "--api", "v3", "-u", self.url, "--watchers", "4", "-c", "2", "-n", "100",
            "--pid", str(self.etcd.process.pid),
        ])
        self.assertEqual(status, 0)
        self.assertEqual(document["watchers_created"], 4)
        self.assertEqual(document["puts"]["outcomes"], {"200": 100})
        self.assertEqual(document["events_expected"], 400)
        self.assertGreaterEqual(document["events_delivered"], 400)
        self.assertEqual(document["watch_outcomes"], {"delivered": document["events_delivered"]})
        self.assertGreater(document["delivery_latency_ms"]["max"], 0)
        self.assertGreater(document["puts"]["servers"][0]["cpu_ms"], 0)

    async def test_watch_memory(self) -> None:
        """500 idle watchers are all created and each costs etcd memory
        (about 130 KB through its gateway: far above the few MB its garbage
        collector moves RSS by)."""
        status, document = await bench([
            "watch-memory", "--api", "v3", "-u", self.url, "--watchers", "500", "--settle", "0.5",
            "--pid", str(self.etcd.process.pid),
        ])
        self.assertEqual(status, 0)
        self.assertEqual(document["watchers_created"], 500)
        self.assertEqual(document["watch_outcomes"], {})
        pid = str(self.etcd.process.pid)
        growth = document["rss_after_bytes"][pid] - document["rss_before_bytes"][pid]
        self.assertEqual(document["rss_growth_bytes"], growth)
        self.assertEqual(document["bytes_per_watcher"], round(growth / 500))
        self.assertGreater(document["bytes_per_watcher"], 20_000)


class CeilingServerTests(TestCase):
    """The trivial server of docs/benchmark.md answers every request, pipelined or not."""

    timeout = 60

    async def setUp(self) -> None:
        output = os.path.abspath(self.mktemp())
        with open(output, "wb") as out:
            self.server = subprocess.Popen([sys.executable, "-m", "metastore.bench.ceiling"], stdout=out,
                                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.addCleanup(self.server.wait, 15)
        self.addCleanup(self.server.terminate)

        def listening():
            with open(output) as f:
                words = f.read().split()
            return words[2] if len(words) >= 3 else None

        self.url = await wait_until(listening, timeout=20, what="the ceiling server to listen")

    async def test_every_request_answered(self) -> None:
        """Seed PUTs on 2 pipelined connections and v3 ranges all get their 200."""
        for argv in (["put", "-c", "6", "--conns", "2"], ["range", "--api", "v3", "--no-populate", "-c", "3"]):
            status, document = await bench(argv + ["-u", self.url, "-n", "500", "--pid", str(self.server.pid)])
            self.assertEqual((status, document["outcomes"]), (0, {"200": 500}), argv)
            self.assertGreaterEqual(document["servers"][0]["cpu_ms"], 0)

    async def test_watch_never_confirmed(self) -> None:
        """A server that ends the watch answer without confirming it: the
        watchers are counted as ended and not created (after --timeout),
        and the run ends with status 1 since no event was delivered."""
        status, document = await bench(["watch", "--api", "v3", "-u", self.url, "--watchers", "2", "-n", "10",
                                         "--timeout", "1"])
        self.assertEqual(status, 1)
        self.assertEqual(document["watchers_created"], 0)
        self.assertEqual(document["watch_outcomes"], {"watch-ended": 2, "watch-not-created": 2})
        self.assertEqual(document["puts"]["outcomes"], {"200": 10})
