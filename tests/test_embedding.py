"""A member embedded in another program's service tree, used in-process."""

from __future__ import annotations

import json
import os
import sys

import treq
from treq.testing import StubTreq
from twisted.application import service
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from metastore.config import Config
from metastore.kv.commands import Put
from metastore.service import open_member
from metastore.errors import Stopping
from tests.process import REPO_ROOT, free_port, run_to_exit, wait_until


class EmbeddingTests(TestCase):
    """What docs/embedding.md shows works as written."""

    async def test_embedded_member_serves_in_process_and_over_http(self):
        """A member added to an application writes and reads in-process and over HTTP."""
        application = service.MultiService()
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=self.mktemp()).validate()
        member = open_member(config, reactor)
        member.setServiceParent(application)
        application.startService()
        self.addCleanup(application.stopService)
        port = await member.http.listening
        await wait_until(lambda: member.node.is_leader, timeout=10, what="leadership")

        result = await member.node.propose(Put(b"embedded", b"yes"))
        await member.node.read_barrier()
        self.assertEqual(member.node.store.get(b"embedded").mod_revision, result.revision)

        response = await treq.get(f"http://127.0.0.1:{port.getHost().port}/embedded", persistent=False)
        self.assertEqual(await treq.content(response), b"yes")

    async def test_stopped_member_releases_its_data_directory(self):
        """After stopService the same data directory can be opened again."""
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=self.mktemp()).validate()
        first = open_member(config, reactor)
        first.startService()
        await first.http.listening
        await wait_until(lambda: first.node.is_leader, timeout=10, what="leadership")
        await first.node.propose(Put(b"k", b"v"))
        await first.stopService()
        second = open_member(config, reactor)
        second.startService()
        self.addCleanup(second.stopService)
        await second.http.listening
        await wait_until(lambda: second.node.store.get(b"k") is not None, timeout=10, what="replay")
        self.assertEqual(second.node.store.get(b"k").value, b"v")


class ReadyTests(TestCase):
    """``MemberService.ready`` and the documented example that uses it."""

    async def test_ready_fires_once_a_proposal_can_succeed(self):
        """Right after start the first proposal succeeds once ``ready`` fired."""
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=self.mktemp()).validate()
        member = open_member(config, reactor)
        member.startService()
        self.addCleanup(member.stopService)
        self.assertEqual(await member.ready(), 1)
        self.assertNotEqual(member.api.leader_id, 0)
        result = await member.api.propose(Put(b"first", b"ok"))
        self.assertEqual(result.revision, 2)

    async def test_ready_fails_when_the_member_stops_first(self):
        """A member of a 3-member cluster with no peers never gets ready;
        stopping it fails the Deferred with ``Stopping``."""
        cluster = tuple(f"http://127.0.0.1:{free_port()}" for _ in range(3))
        config = Config(cluster=cluster, port=0, data_dir=self.mktemp()).validate()
        member = open_member(config, reactor)
        member.startService()
        d = member.ready()
        self.assertNoResult(d)
        await member.stopService()
        with self.assertRaises(Stopping):
            await d

    async def test_a_member_without_a_leader_answers_503_with_retry_after(self):
        """Until it knows a leader, a starting member refuses writes at once
        with 503 and Retry-After, and /health says why."""
        cluster = tuple(f"http://127.0.0.1:{free_port()}" for _ in range(3))
        config = Config(cluster=cluster, port=0, data_dir=self.mktemp()).validate()
        member = open_member(config, reactor)
        member.startService()
        self.addCleanup(member.stopService)
        client = StubTreq(member.http.factory.resource)
        for method, path in (("PUT", "/k"), ("GET", "/health")):
            response = await client.request(method, "http://member" + path, data=b"v")
            body = json.loads(await response.content())
            self.assertEqual(response.code, 503, body)
            self.assertEqual(response.headers.getRawHeaders(b"Retry-After"), [b"1"])
            self.assertIn("leader", json.dumps(body))

    def test_the_documented_example_runs(self):
        """docs/embedding.md's complete program runs as written."""
        with open(os.path.join(REPO_ROOT, "docs", "embedding.md")) as f:
            text = f.read()
        code = text.split("<!-- runnable example -->\n```python\n", 1)[1].split("```", 1)[0]
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        script = os.path.join(workdir, "example.py")
        with open(script, "w") as f:
            f.write(code)
        done = run_to_exit([sys.executable, script, os.path.join(workdir, "data")], cwd=workdir, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), "hello at revision 2")


class EmbeddedRocksDBTests(TestCase):
    """An embedded RocksDB member releases its database when stopped."""

    async def test_restart_in_the_same_process(self):
        """Stop, then open the same RocksDB data again in this process."""
        config = Config(cluster=("http://127.0.0.1:0",), port=0, data_dir=self.mktemp(), storage="rocksdb").validate()
        first = open_member(config, reactor)
        first.startService()
        await first.http.listening
        await wait_until(lambda: first.node.is_leader, timeout=10, what="leadership")
        await first.node.propose(Put(b"k", b"rocks"))
        await first.stopService()
        second = open_member(config, reactor)
        second.startService()
        self.addCleanup(second.stopService)
        await second.http.listening
        self.assertEqual(second.node.store.get(b"k").value, b"rocks")
