"""Leases, blocking reads and the recipes across three real members.

Each test starts its own ``twistd metastore`` processes on free ports;
every wait polls a condition with a bound (``wait_until``).
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from metastore.recipes.client import RestClient
from metastore.recipes.election import Election
from metastore.recipes.lock import Lock
from metastore.recipes.registry import ServiceRegistry
from tests.process import Cluster, wait_until

FLAGS = ["--request-timeout", "2"]


class ThreeMemberTestCase(TestCase):
    """A three-member cluster and a client per member (each failing over to the others)."""

    timeout = 180

    async def setUp(self):
        self.cluster = Cluster(self, 3, extra=FLAGS)
        self.cluster.start()
        self.leader_id = await self.cluster.leader()
        self.followers = [i for i in (1, 2, 3) if i != self.leader_id]

    def client(self, first: int) -> RestClient:
        """A client that asks member ``first``, then the others."""
        order = [first] + [i for i in (1, 2, 3) if i != first]
        return RestClient([self.cluster.members[i].url for i in order], reactor, timeout=5)

    async def code(self, member_id: int, key: str) -> int:
        code, _, _ = await self.cluster.request(member_id, "GET", f"/kv/{key}")
        return code


class LeaseProcessTests(ThreeMemberTestCase):
    """Expiry, keepalive across a leader kill, blocking reads across members."""

    async def test_expiry_deletes_the_key_on_every_member(self):
        """A key PUT with ?ttl on a follower is deleted everywhere once the
        TTL passes without a refresh; a key without a lease stays."""
        client = self.client(self.followers[0])
        await client.put("plain", "v")
        await client.put("leased", "v", ttl=2)
        self.assertEqual({await self.code(i, "leased") for i in (1, 2, 3)}, {200})

        async def gone_everywhere():
            return {await self.code(i, "leased") for i in (1, 2, 3)} == {404}

        await wait_until(gone_everywhere, timeout=20, what="the leased key to expire on every member")
        self.assertEqual({await self.code(i, "plain") for i in (1, 2, 3)}, {200})

    async def test_blocking_read_on_a_follower_wakes_on_a_write_elsewhere(self):
        """A blocking read on one follower answers the value written through
        the other follower, with the write's revision as the next index."""
        reader, writer = self.client(self.followers[0]), self.client(self.followers[1])
        answer = await writer.put("cfg", "1")
        waiting = defer.ensureDeferred(reader.get("cfg", index=answer["revision"], wait=30))
        second = await writer.put("cfg", "2")
        value, index = await waiting
        self.assertEqual((value, index >= second["revision"]), ("2", True))

    async def test_a_kept_alive_lease_outlives_the_leader(self):
        """Kill the leader while a lease is kept alive from a client: the new
        leader extends it, the keepalives reach it, and the key never
        disappears; once the keepalives stop, it expires."""
        registry = ServiceRegistry(self.client(self.leader_id), reactor)
        await registry.register("db", "a", "10.0.0.1:5432", ttl=3)
        self.cluster.members[self.leader_id].kill()
        await self.cluster.leader(among=self.followers)
        started = reactor.seconds()
        while reactor.seconds() - started < 9:  # three TTLs, bounded
            for member_id in self.followers:
                self.assertNotEqual(await self.code(member_id, "services/db/a"), 404, "the kept-alive key expired")
            await _sleep(0.5)
        registry.stop_keepalive("db", "a")

        async def gone():
            return {await self.code(i, "services/db/a") for i in self.followers} == {404}

        await wait_until(gone, timeout=20, what="the key to expire once the keepalives stop")


class RecipeProcessTests(ThreeMemberTestCase):
    """Lock, election and registry between clients on different members."""

    async def test_lock_excludes_and_hands_over(self):
        """Two clients on different members never hold the lock together; a
        release hands it over; an abandoned lock frees itself after its TTL."""
        first = Lock(self.client(self.followers[0]), "locks/job", reactor, ttl=2)
        second = Lock(self.client(self.followers[1]), "locks/job", reactor, ttl=2)
        third = Lock(self.client(self.leader_id), "locks/job", reactor, ttl=2)
        await first.acquire()
        waiting = defer.ensureDeferred(second.acquire())
        await _sleep(1)
        self.assertFalse(waiting.called)
        self.assertEqual(await second.holder(), first.key)
        await first.release()
        await waiting
        self.assertEqual(await first.holder(), second.key)
        third_waiting = defer.ensureDeferred(third.acquire())
        second.abandon()  # as if its process died: no release
        await wait_until(lambda: third_waiting.called, timeout=20, what="the abandoned lock to expire")
        self.assertEqual(await third.holder(), third.key)
        await third.release()

    async def test_election_campaign_observe_resign(self):
        """The first candidate leads; an observer on another member sees it,
        then the next candidate once the leader resigns."""
        alice = Election(self.client(self.followers[0]), "elections/primary", reactor, ttl=5)
        bob = Election(self.client(self.followers[1]), "elections/primary", reactor, ttl=5)
        seen = []
        stop = Election(self.client(self.leader_id), "elections/primary", reactor).observe(seen.append)
        self.addCleanup(stop)
        await alice.campaign("alice")
        bob_waiting = defer.ensureDeferred(bob.campaign("bob"))
        await wait_until(lambda: seen and seen[-1] == "alice", timeout=15, what="the observer to see alice")
        self.assertFalse(bob_waiting.called)
        await alice.resign()
        await bob_waiting
        await wait_until(lambda: seen[-1] == "bob", timeout=15, what="the observer to see bob")
        self.assertEqual(await alice.leader(), "bob")
        await bob.resign()

    async def test_registry_lists_and_forgets_dead_instances(self):
        """Instances registered through one member are listed through
        another; one whose keepalive stops disappears, and a watcher sees it go."""
        registry = ServiceRegistry(self.client(self.followers[0]), reactor)
        await registry.register("web", "a", "10.0.0.1:80", ttl=2)
        await registry.register("web", "b", "10.0.0.2:80", ttl=2)
        reader = ServiceRegistry(self.client(self.followers[1]), reactor)
        self.assertEqual(await reader.instances("web"), {"a": "10.0.0.1:80", "b": "10.0.0.2:80"})
        changes = []
        stop = reader.watch("web", changes.append)
        self.addCleanup(stop)
        registry.stop_keepalive("web", "b")
        await wait_until(lambda: changes and changes[-1] == {"a": "10.0.0.1:80"}, timeout=20,
                         what="the watcher to see b expire")
        await registry.deregister("web", "a")
        self.assertEqual(await reader.instances("web"), {})


def _sleep(seconds: float) -> defer.Deferred:
    d = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d
