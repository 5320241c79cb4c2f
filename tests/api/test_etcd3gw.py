"""OpenStack's ``etcd3gw`` client, unchanged, drives a 3-member cluster.

The same scenario runs against real etcd (which proves the scenario is
right: it states etcd's behaviour, not ours) and against MetaStore.  It
writes through one member and reads through another, so every step also
checks that answers are linearizable across members.  etcd3gw is blocking
(``requests``), so the scenario runs in a thread; the members are child
processes.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from tests.api.v3targets import V3Target, start_etcd, start_metastore


def etcd3gw_client(url: str):
    """An etcd3gw client of the member at ``url`` (version discovery included)."""
    import etcd3gw

    parts = urlsplit(url)
    return etcd3gw.client(host=parts.hostname, port=parts.port, timeout=10)


class Etcd3gwScenario:
    """Mixin: the etcd3gw scenario; ``start_cluster`` names the system."""

    timeout = 120

    async def start_cluster(self) -> V3Target:
        """Override: a running 3-member cluster."""
        raise NotImplementedError

    async def test_etcd3gw_scenario(self):
        """put/get/delete, get_prefix with sort, delete_prefix, replace,
        create, members() and status() all behave as etcd3gw expects."""
        target = await self.start_cluster()
        clients = [etcd3gw_client(url) for url in target.urls]
        try:
            await threads.deferToThread(self.scenario, clients, target.urls)
        finally:
            for client in clients:
                client.session.close()

    def scenario(self, clients, urls) -> None:
        """The blocking etcd3gw calls and what each must return."""
        one, two, three = clients
        self.assertIs(one.put("/t/a", "1"), True)
        self.assertEqual(two.get("/t/a"), [b"1"])
        [(value, meta)] = three.get("/t/a", metadata=True)
        self.assertEqual(value, b"1")
        self.assertEqual(meta["key"], b"/t/a")
        self.assertEqual(int(meta["version"]), 1)
        self.assertEqual(meta["create_revision"], meta["mod_revision"])
        self.assertEqual(two.get("/t/missing"), [])

        two.put("/t/b", "2")
        three.put("/t/c", "0")
        def values(client, **sort):
            return [value for value, _ in client.get_prefix("/t/", **sort)]

        self.assertEqual(values(one), [b"1", b"2", b"0"])
        self.assertEqual([m["key"] for _, m in two.get_prefix("/t/", sort_order="descend")], [b"/t/c", b"/t/b", b"/t/a"])
        self.assertEqual(values(three, sort_order="ascend", sort_target="value"), [b"0", b"1", b"2"])
        self.assertEqual(values(one, sort_order="descend", sort_target="create"), [b"0", b"2", b"1"])

        self.assertIs(one.delete("/t/a"), True)
        self.assertIs(two.delete("/t/a"), False)
        self.assertEqual(three.get("/t/a"), [])

        self.assertIs(one.replace("/t/b", "2", "3"), True)
        self.assertIs(two.replace("/t/b", "2", "4"), False)
        self.assertEqual(three.get("/t/b"), [b"3"])
        self.assertIs(one.replace("/t/none", "", "x"), False)  # a VALUE compare on a missing key fails
        self.assertEqual(two.get("/t/none"), [])

        self.assertIs(one.create("/t/new", "n"), True)
        self.assertIs(two.create("/t/new", "m"), False)
        self.assertEqual(three.get("/t/new"), [b"n"])

        self.assertIs(one.delete_prefix("/t/"), True)
        self.assertEqual(two.get_prefix("/t/"), [])
        self.assertIs(three.delete_prefix("/t/"), False)

        members = one.members()
        self.assertEqual(len(members), 3, members)
        ids = {member["ID"] for member in members}
        self.assertEqual(len(ids), 3, members)
        self.assertEqual(sorted(u for m in members for u in m.get("clientURLs", [])), sorted(urls))
        for client in clients:
            status = client.status()
            self.assertRegex(status["version"], r"^\d+\.\d+\.\d+$")
            self.assertIn(status["leader"], ids)
            self.assertIn(status["header"]["member_id"], ids)
            self.assertGreaterEqual(int(status["raftIndex"]), 1)
            self.assertGreaterEqual(int(status["raftTerm"]), 1)
            self.assertGreaterEqual(int(status["dbSize"]), 0)
        self.assertEqual(len({c.status()["header"]["member_id"] for c in clients}), 3)


class Etcd3gwAgainstEtcdTests(Etcd3gwScenario, TestCase):
    """The scenario against a real 3-member etcd (skipped without etcd)."""

    async def start_cluster(self):
        """A 3-member etcd."""
        return await start_etcd(self, 3)


class Etcd3gwAgainstMetaStoreTests(Etcd3gwScenario, TestCase):
    """The scenario against a 3-member MetaStore."""

    async def start_cluster(self):
        """A 3-member MetaStore."""
        return await start_metastore(self, 3)
