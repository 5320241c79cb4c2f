"""Patroni's etcd3 DCS client (``patroni.dcs.etcd3.Etcd3``), unchanged,
keeps a PostgreSQL HA cluster's state in a 3-member cluster; no PostgreSQL
runs: the tests call the DCS methods Patroni's HA loop calls.

What Patroni relies on: a lease of ``ttl`` seconds per node, kept alive
once per loop; the member key and the leader key attached to it (the
leader key created only if absent); transactions on the leader key; and a
watch on the cluster's prefix, started at the revision of a range read,
that keeps its cache of the keys current and wakes the HA loop when the
leader key changes.  The same scenarios run against real etcd (which proves
they state etcd's behaviour) and against MetaStore.  Patroni is blocking
(urllib3 and a watch thread), so its calls run in threads.
"""

from __future__ import annotations

import base64
import time
from urllib.parse import urlsplit

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.api.v3targets import OnMetaStore, OnRealEtcd, V3Client, V3Target, raft_leader_index
from tests.process import wait_until

TTL = 3
"""Seconds a node's lease lives without a keepalive."""


FAILOVER_TTL = 5
"""The lease TTL of the scenario that crashes the DCS's Raft leader: a
crash, an election and Patroni's switch to another member fit in it."""


def etcd3_dcs(urls: list[str], name: str, ttl: int = TTL):
    """Patroni's Etcd3 DCS object for node ``name`` of Patroni cluster
    ``pg`` on the members at ``urls``, with leases of ``ttl`` seconds (its
    watch thread starts at once)."""
    from patroni.dcs.etcd3 import Etcd3
    from patroni.postgresql.mpp import get_mpp

    hosts = [urlsplit(url).netloc for url in urls]
    config = {
        "scope": "pg", "namespace": "/service", "name": name,
        "ttl": ttl, "loop_wait": 1, "retry_timeout": 6, "hosts": hosts,
    }
    return Etcd3(config, get_mpp({}))


def _end_thread() -> None:
    raise SystemExit


def stop_dcs(dcs) -> None:
    """End ``dcs``'s watch thread and close its connections.  Patroni has
    no stop call (its watcher lives as long as the process), so the thread
    is made to leave its reconnect loop: ``SystemExit`` from its next cache
    rebuild ends it, and closing the stream forces that rebuild."""
    cache = dcs._client._kv_cache
    if cache is not None:
        cache._build_cache = _end_thread
        cache.kill_stream()
        cache.join(15)
    dcs._client.http.clear()


class PatroniScenarios:
    """Mixin: the Patroni scenarios; ``start_cluster`` names the system."""

    timeout = 120

    async def start_cluster(self) -> V3Target:
        """Override: a running 3-member cluster."""
        raise NotImplementedError

    async def node(self, urls: list[str], name: str, ttl: int = TTL):
        """A Patroni DCS object for node ``name``, stopped at cleanup (and
        urllib3's connect function, which Patroni replaces, restored)."""
        import urllib3.util.connection

        self.addCleanup(setattr, urllib3.util.connection, "create_connection",
                        urllib3.util.connection.create_connection)
        dcs = await deferToThread(etcd3_dcs, urls, name, ttl)
        self.addCleanup(deferToThread, stop_dcs, dcs)
        return dcs

    async def test_leader_key_taken_renewed_and_expired(self):
        """One node takes the leader key, the other cannot; the leader's
        keepalives hold it past two TTLs; when they stop, its leader and
        member keys expire (no sooner than a TTL after the last keepalive),
        the other node's watched view shows it, and it takes over; back, the
        old leader takes a new lease and rejoins as a replica."""
        target = await self.start_cluster()
        a = await self.node(target.urls, "pg-a")
        b = await self.node(target.urls[::-1], "pg-b")

        self.assertIs(await deferToThread(a.touch_member, {"role": "primary", "state": "running"}), True)
        self.assertIs(await deferToThread(b.touch_member, {"role": "replica", "state": "running"}), True)
        self.assertTrue(await deferToThread(a.attempt_to_acquire_leader))
        self.assertFalse(await deferToThread(b.attempt_to_acquire_leader))

        async def b_sees_a_lead():
            cluster = await deferToThread(b.get_cluster)
            return cluster.leader is not None and cluster

        cluster = await wait_until(b_sees_a_lead, what="pg-b's view to show a leader")
        self.assertEqual(cluster.leader.name, "pg-a")
        self.assertEqual(str(cluster.leader.session), str(a._lease))
        self.assertEqual(sorted(m.name for m in cluster.members), ["pg-a", "pg-b"])
        self.assertEqual(cluster.get_member("pg-b", fallback_to_leader=False).data["role"], "replica")

        # The HA loops run: the leader renews, the replica touches its key.
        since = time.monotonic()
        for _ in range(8 * TTL):
            last_renewal = time.monotonic()
            self.assertIs(await deferToThread(a.update_leader, await deferToThread(a.get_cluster), None), True)
            self.assertIs(await deferToThread(b.touch_member, {"role": "replica", "state": "running"}), True)
            self.assertEqual((await deferToThread(b.get_cluster)).leader.name, "pg-a")
            if time.monotonic() > since + 2 * TTL:
                break
            await wait_until(lambda t=time.monotonic(): time.monotonic() > t + TTL / 3, what="a third of a TTL")
        self.assertGreater(time.monotonic(), since + 2 * TTL)
        self.assertFalse(await deferToThread(b.attempt_to_acquire_leader))

        # pg-a stops; pg-b's loop goes on until its view loses pg-a.
        async def pg_a_gone():
            self.assertIs(await deferToThread(b.touch_member, {"role": "replica", "state": "running"}), True)
            cluster = await deferToThread(b.get_cluster)
            return cluster.leader is None and [m.name for m in cluster.members] == ["pg-b"]

        await wait_until(pg_a_gone, timeout=TTL + 20, interval=0.2, what="pg-a's leader and member keys to expire")
        self.assertGreaterEqual(time.monotonic() - last_renewal, TTL)

        self.assertTrue(await deferToThread(b.attempt_to_acquire_leader))

        async def a_sees_b_lead():
            leader = (await deferToThread(a.get_cluster)).leader
            return leader is not None and (leader.name, str(leader.session)) == ("pg-b", str(b._lease))

        await wait_until(a_sees_b_lead, what="pg-a's watched view to show pg-b leading")

        # pg-a comes back: its keepalive finds the lease gone, it takes a
        # new one for its member key, and stays a replica.
        expired_lease = a._lease
        self.assertIs(await deferToThread(a.touch_member, {"role": "replica", "state": "running"}), True)
        self.assertNotEqual(a._lease, expired_lease)
        self.assertFalse(await deferToThread(a.attempt_to_acquire_leader))

        async def pg_a_back():
            cluster = await deferToThread(b.get_cluster)
            return cluster.leader is not None and cluster.leader.name == "pg-b" and sorted(m.name for m in cluster.members) == ["pg-a", "pg-b"]

        await wait_until(pg_a_back, what="pg-b to see pg-a's member key again")

    async def test_watch_wakes_the_loop_and_keeps_the_view_current(self):
        """A replica's watch wakes its HA loop when the leader key is
        created and deleted, stays asleep while nothing it cares about
        changes, and keeps its cached view of member data current."""
        target = await self.start_cluster()
        a = await self.node(target.urls, "pg-a")
        b = await self.node(target.urls[1:], "pg-b")
        self.assertIs(await deferToThread(a.touch_member, {"state": "starting"}), True)
        self.assertIs(await deferToThread(b.touch_member, {"state": "running"}), True)

        async def a_seen_by_b(state):
            member = (await deferToThread(b.get_cluster)).get_member("pg-a", fallback_to_leader=False)
            return member is not None and member.data.get("state") == state

        await wait_until(lambda: a_seen_by_b("starting"), what="pg-b to see pg-a's member key")
        self.assertIs(await deferToThread(b.watch, None, 1), False)

        woken = deferToThread(b.watch, None, 30)
        started = time.monotonic()
        self.assertTrue(await deferToThread(a.attempt_to_acquire_leader))
        self.assertIs(await woken, True)
        self.assertLess(time.monotonic() - started, 30)
        self.assertEqual((await deferToThread(b.get_cluster)).leader.name, "pg-a")

        self.assertIs(await deferToThread(a.touch_member, {"state": "running"}), True)
        await wait_until(lambda: a_seen_by_b("running"), what="pg-b to see pg-a's new member data")

        woken = deferToThread(b.watch, None, 30)
        leader = (await deferToThread(a.get_cluster)).leader
        self.assertIs(await deferToThread(a.delete_leader, leader), True)
        self.assertIs(await woken, True)
        self.assertIsNone((await deferToThread(b.get_cluster)).leader)

    async def test_leader_key_survives_a_crash_of_the_raft_leader(self):
        """The DCS's Raft leader is killed while Patroni's leader renews its
        key and a replica watches: renewals go on through the survivors,
        the leader key keeps its lease and its creation revision (a live
        lease never expires, it is not re-created), and the replica's
        watched view still follows changes."""
        target = await self.start_cluster()
        a = await self.node(target.urls, "pg-a", FAILOVER_TTL)
        b = await self.node(target.urls[::-1], "pg-b", FAILOVER_TTL)
        self.assertIs(await deferToThread(a.touch_member, {"state": "running"}), True)
        self.assertIs(await deferToThread(b.touch_member, {"state": "running"}), True)
        self.assertTrue(await deferToThread(a.attempt_to_acquire_leader))
        lease = a._lease
        client = V3Client(self)
        leader_key = {"key": base64.b64encode(b"/service/pg/leader").decode()}

        async def leader_kv(urls):
            for url in urls:
                answer = await client.post(url, "/v3/kv/range", leader_key)
                if answer.status == 200:
                    return answer.json().get("kvs", [None])[0]
            return None

        before = await leader_kv(target.urls)
        crashed = await raft_leader_index(client, target)
        target.kill_member(crashed)
        survivors = [url for i, url in enumerate(target.urls) if i != crashed]

        since = time.monotonic()
        for _ in range(8 * FAILOVER_TTL):
            self.assertIs(await deferToThread(a.update_leader, await deferToThread(a.get_cluster), None), True)
            self.assertIs(await deferToThread(b.touch_member, {"state": "running"}), True)
            if time.monotonic() > since + 2 * FAILOVER_TTL:
                break
            await wait_until(lambda t=time.monotonic(): time.monotonic() > t + 1, what="a second")
        self.assertGreater(time.monotonic(), since + 2 * FAILOVER_TTL)

        self.assertEqual(a._lease, lease)
        after = await wait_until(lambda: leader_kv(survivors), what="the leader key on a survivor")
        self.assertEqual((after["create_revision"], after["lease"]), (before["create_revision"], before["lease"]))
        self.assertEqual(base64.b64decode(after["value"]), b"pg-a")

        self.assertIs(await deferToThread(a.touch_member, {"state": "after the crash"}), True)

        async def b_follows():
            cluster = await deferToThread(b.get_cluster)
            member = cluster.get_member("pg-a", fallback_to_leader=False)
            leader = cluster.leader
            return leader is not None and leader.name == "pg-a" and member and member.data["state"] == "after the crash"

        await wait_until(b_follows, what="pg-b's view to follow pg-a after the crash")


class PatroniAgainstEtcdTests(OnRealEtcd, PatroniScenarios, TestCase):
    """The Patroni scenarios against a real 3-member etcd (skipped without etcd)."""


class PatroniAgainstMetaStoreTests(OnMetaStore, PatroniScenarios, TestCase):
    """The Patroni scenarios against a 3-member MetaStore."""
