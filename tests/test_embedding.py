"""A member embedded in another program's service tree, used in-process."""

from __future__ import annotations

import treq
from twisted.application import service
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from metastore.config import Config
from metastore.kv.commands import Put
from metastore.service import open_member
from tests.process import wait_until


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
