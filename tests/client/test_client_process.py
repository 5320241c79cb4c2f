"""metastore.client against a real 3-member cluster: failover when the
member in use is killed, watch resume across a kill with no gap and no
duplicate, leases kept alive past their TTL, and lock exclusion."""

from __future__ import annotations


from twisted.internet import defer, reactor, task, threads
from twisted.trial.unittest import TestCase

from metastore.client import concurrency, wire
from metastore.client.stream import WatchCompacted
from metastore.client.failover import Endpoints
from metastore.client.sync import Client
from metastore.client.tx import TxClient
from tests.process import Cluster, wait_until


async def started_cluster(testcase) -> tuple[Cluster, int]:
    """A running 3-member cluster and its leader's id."""
    cluster = Cluster(testcase, 3)
    cluster.start()
    leader = await cluster.leader()
    return cluster, leader


def follower_first(cluster: Cluster, leader: int) -> list[str]:
    """Every member's URL, a follower first (the member the client uses)."""
    ids = sorted(cluster.members, key=lambda i: i == leader)
    return [cluster.members[i].url for i in ids]


def member_at(cluster: Cluster, url: str):
    """The member serving ``url``."""
    return next(m for m in cluster.members.values() if m.url == url)


class SyncFailoverTests(TestCase):
    """The blocking client moves to another member when its member dies."""

    timeout = 120

    async def test_reads_and_writes_move_on_when_the_member_in_use_is_killed(self):
        """A follower in use is killed: the next put (refused) and get go to another member."""
        cluster, leader = await started_cluster(self)
        client = Client(follower_first(cluster, leader), timeout=3)
        self.addCleanup(client.close)
        first = await threads.deferToThread(client.put, "k", "1")
        in_use = client.endpoints.urls[client.endpoints.current]
        self.assertEqual(first.header.member_id, member_at(cluster, in_use).member_id)
        member_at(cluster, in_use).kill()

        second = await threads.deferToThread(client.put, "k", "2")
        self.assertNotEqual(second.header.member_id, member_at(cluster, in_use).member_id)
        self.assertEqual(second.header.revision, first.header.revision + 1)
        found = await threads.deferToThread(client.get, "k")
        self.assertEqual(found.kvs[0].value, b"2")
        self.assertNotEqual(client.endpoints.urls[client.endpoints.current], in_use)

    async def test_reads_ride_over_the_death_of_the_leader_in_use(self):
        """The leader in use is killed: a read retries (refused, then 503 during the
        election) until a new leader answers it."""
        cluster, leader = await started_cluster(self)
        urls = [cluster.members[leader].url] + [m.url for i, m in cluster.members.items() if i != leader]
        client = Client(Endpoints(urls, rounds=40, pause=0.25), timeout=3)
        self.addCleanup(client.close)
        await threads.deferToThread(client.put, "k", "v")
        cluster.members[leader].kill()
        found = await threads.deferToThread(client.get, "k")
        self.assertEqual(found.kvs[0].value, b"v")
        self.assertNotEqual(found.header.member_id, leader)

    async def test_a_write_is_not_resent_after_an_unavailable_answer(self):
        """With no quorum a write answers 503 and is not sent to another member."""
        cluster, leader = await started_cluster(self)
        followers = [i for i in cluster.members if i != leader]
        for i in followers:
            cluster.members[i].kill()
        client = Client(Endpoints([cluster.members[leader].url, cluster.members[followers[0]].url], rounds=3), timeout=8)
        self.addCleanup(client.close)
        with self.assertRaises(wire.ClientError) as raised:
            await threads.deferToThread(client.put, "k", "v")
        self.assertEqual(raised.exception.status, 503)


class TxFailoverTests(TestCase):
    """The Twisted client moves to another member when its member dies."""

    timeout = 120

    async def test_reads_and_writes_move_on_when_the_member_in_use_is_killed(self):
        """A follower in use is killed: the next put and get go to another member."""
        cluster, leader = await started_cluster(self)
        client = TxClient(follower_first(cluster, leader), reactor, timeout=3)
        self.addCleanup(client.close)
        first = await client.put("k", "1")
        in_use = member_at(cluster, client.endpoints.urls[client.endpoints.current])
        self.assertEqual(first.header.member_id, in_use.member_id)
        in_use.kill()
        # The reactor notices the closed keep-alive connection before the next
        # request (a write sent on it would be lost, not refused).
        await wait_until(lambda: not _usable_connections(client, in_use.http_port), timeout=5,
                         what="the pool to see its connection closed")
        second = await client.put("k", "2")
        self.assertNotEqual(second.header.member_id, in_use.member_id)
        self.assertEqual((await client.get("k")).kvs[0].value, b"2")


class WatchResumeTests(TestCase):
    """A watch whose member is killed resumes on another: every write is seen once."""

    timeout = 180

    async def _writes(self, cluster: Cluster, leader: int, count: int, start: int) -> list[int]:
        writer = TxClient([cluster.members[leader].url], reactor)
        self.addCleanup(writer.close)
        return [(await writer.put(f"w/{i}", str(i))).header.revision for i in range(start, start + count)]

    async def test_sync_watch_resumes_without_gap_or_duplicate(self):
        """The iterator sees each of 40 writes once, 20 of them made after its member died."""
        cluster, leader = await started_cluster(self)
        client = Client(follower_first(cluster, leader), timeout=3)
        self.addCleanup(client.close)
        base = (await threads.deferToThread(client.get, "w/", prefix=True)).header.revision
        watch = client.watch("w/", prefix=True, start_revision=base + 1)
        seen: list[wire.Event] = []
        done = threads.deferToThread(lambda: [seen.append(e) for e in watch])
        self.addCleanup(lambda: (watch.cancel(), done)[1])
        watched = member_at(cluster, client.endpoints.urls[client.endpoints.current])

        revisions = await self._writes(cluster, leader, 20, 0)
        await wait_until(lambda: len(seen) >= 20, timeout=20, what="the first 20 events")
        watched.kill()
        revisions += await self._writes(cluster, leader, 20, 20)
        await wait_until(lambda: len(seen) >= 40, timeout=30, what="the 40 events")
        self.assertEqual([e.kv.mod_revision for e in seen], revisions)
        self.assertEqual([e.kv.key for e in seen], [b"w/%d" % i for i in range(40)])
        self.assertNotEqual(client.endpoints.urls[client.endpoints.current], watched.url)

    async def test_tx_watch_resumes_without_gap_or_duplicate(self):
        """The callback sees each of 40 writes once, 20 of them made after its member died."""
        cluster, leader = await started_cluster(self)
        client = TxClient(follower_first(cluster, leader), reactor, timeout=3)
        self.addCleanup(client.close)
        base = (await client.get("w/", prefix=True)).header.revision
        seen: list[wire.Event] = []
        watch = client.watch("w/", seen.append, prefix=True, start_revision=base + 1)
        self.addCleanup(lambda: (watch.cancel(), watch.done)[1])
        watched = member_at(cluster, client.endpoints.urls[client.endpoints.current])

        revisions = await self._writes(cluster, leader, 20, 0)
        await wait_until(lambda: len(seen) >= 20, timeout=20, what="the first 20 events")
        watched.kill()
        revisions += await self._writes(cluster, leader, 20, 20)
        await wait_until(lambda: len(seen) >= 40, timeout=30, what="the 40 events")
        self.assertEqual([e.kv.mod_revision for e in seen], revisions)
        self.assertFalse(watch.done.called)


class LeaseTests(TestCase):
    """Kept leases outlive their TTL; dropped ones expire."""

    timeout = 120

    async def test_tx_keepalive_keeps_the_key_past_its_ttl(self):
        """A key on a kept lease of 2 s is still there after 6 s; once the
        keep-alive stops it goes."""
        cluster, leader = await started_cluster(self)
        client = TxClient([m.url for m in cluster.members.values()], reactor)
        self.addCleanup(client.close)
        lease = await client.lease(2)
        self.addCleanup(lease.stop)
        await client.put("leased", "v", lease=lease.id)
        await task.deferLater(reactor, 3 * lease.ttl, lambda: None)  # three TTLs pass: the behaviour under test
        self.assertEqual([kv.key for kv in (await client.get("leased")).kvs], [b"leased"])
        self.assertFalse(lease.lost)
        lease.stop()

        async def gone():
            return not (await client.get("leased")).kvs

        await wait_until(gone, timeout=3 * lease.ttl + 10, what="the key to expire with its lease")

    async def test_sync_keepalive_keeps_the_key_past_its_ttl(self):
        """The background thread keeps a 2 s lease alive for 6 s."""
        cluster, leader = await started_cluster(self)
        client = Client([m.url for m in cluster.members.values()])
        self.addCleanup(client.close)
        lease = await threads.deferToThread(client.lease, 2)
        self.addCleanup(lease.stop)
        await threads.deferToThread(client.put, "leased", "v", lease=lease.id)
        await task.deferLater(reactor, 3 * lease.ttl, lambda: None)
        self.assertEqual(len((await threads.deferToThread(client.get, "leased")).kvs), 1)
        remaining = await threads.deferToThread(client.lease_time_to_live, lease.id)
        self.assertGreater(remaining.ttl, 0)
        await threads.deferToThread(lease.revoke)
        self.assertEqual((await threads.deferToThread(client.get, "leased")).kvs, ())


class LockTests(TestCase):
    """Two clients never hold one lock at once."""

    timeout = 120

    async def test_sync_lock_excludes_a_second_client(self):
        """Two clients in two threads each add 1 to a counter 5 times
        under the lock, reading then writing: no increment is lost, and
        no holder sees another's mark while it holds."""
        cluster, leader = await started_cluster(self)
        urls = [m.url for m in cluster.members.values()]
        overlaps: list[str] = []

        def contend(name: str) -> None:
            with Client(urls) as client:
                for _ in range(5):
                    with client.lock("locks/counter", ttl=10):
                        client.put("holder", name)
                        found = client.get("counter").kvs
                        client.put("counter", str(int(found[0].value) + 1 if found else 1))
                        if client.get("holder").kvs[0].value != name.encode():
                            overlaps.append(name)

        await defer.gatherResults([threads.deferToThread(contend, "a"), threads.deferToThread(contend, "b")])
        with Client(urls) as client:
            self.assertEqual(client.get("counter").kvs[0].value, b"10")
            self.assertEqual(client.get("locks/", prefix=True).kvs, ())
        self.assertEqual(overlaps, [])

    async def test_tx_lock_waits_for_the_holder(self):
        """The second acquire completes only after the first holder releases."""
        cluster, leader = await started_cluster(self)
        urls = [m.url for m in cluster.members.values()]
        first, second = TxClient(urls, reactor), TxClient(urls, reactor)
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        held = first.lock("locks/one", ttl=10)
        await held.acquire()
        waiting = second.lock("locks/one", ttl=10)
        acquired = defer.ensureDeferred(waiting.acquire())
        await wait_until(lambda: _count(first, "locks/one/"), timeout=10, what="the second contender to queue")
        for _ in range(5):  # the holder works on; the waiter stays queued
            await first.put("work", "x")
            self.assertFalse(acquired.called)
        await held.release()
        await acquired
        self.assertEqual(await _holder(first), waiting.key)
        await waiting.release()


def _usable_connections(client: TxClient, port: int) -> list:
    """The connections to ``port`` that ``client``'s pool would reuse."""
    return [c for key, cached in client._pool._connections.items() if port in key
            for c in cached if c.state == "QUIESCENT"]


async def _count(client: TxClient, prefix: str) -> bool:
    """Whether two contenders are queued under ``prefix``."""
    return (await client.get(prefix, prefix=True)).count == 2


async def _holder(client: TxClient) -> bytes:
    """The key of the holder of ``locks/one``."""
    queue = (await client.get("locks/one/", prefix=True)).kvs
    return min(queue, key=lambda kv: kv.create_revision).key


class ElectionTests(TestCase):
    """Elections: one leader at a time, observed changes, hand-over on resign."""

    timeout = 120

    async def test_tx_election_hands_over_on_resign(self):
        """The second candidate leads only after the first resigns; an
        observer sees each leader and each proclaimed value in order."""
        cluster, leader = await started_cluster(self)
        urls = [m.url for m in cluster.members.values()]
        first, second = TxClient(urls, reactor), TxClient(urls, reactor)
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        seen: list = []
        observer = await first.election("elections/e").observe(lambda kv: seen.append(kv and kv.value))
        self.addCleanup(observer.cancel)
        a, b = first.election("elections/e", ttl=10), second.election("elections/e", ttl=10)
        await a.campaign("a")
        b_leads = defer.ensureDeferred(b.campaign("b"))
        await a.proclaim("a2")
        self.assertEqual((await b.leader()).value, b"a2")
        self.assertFalse(b_leads.called)

        async def both_candidates() -> bool:
            return len((await first.get("elections/e", prefix=True)).kvs) == 2

        # b's key must exist before a resigns, or the observer rightly sees no leader in between.
        await wait_until(both_candidates, timeout=10, what="b's candidacy key")
        await a.resign()
        await b_leads
        self.assertEqual((await a.leader()).value, b"b")
        await wait_until(lambda: seen[-1:] == [b"b"], timeout=10, what="the observer to see b lead")
        self.assertEqual(seen, [None, b"a", b"a2", b"b"])
        await b.resign()

    async def test_sync_proclaim_after_losing_the_lead_fails(self):
        """A leader whose key was deleted behind its back cannot proclaim."""
        cluster, leader = await started_cluster(self)
        client = Client([m.url for m in cluster.members.values()])
        self.addCleanup(client.close)
        election = client.election("elections/s", ttl=10)
        await threads.deferToThread(election.campaign, "me")
        await threads.deferToThread(client.delete, election.key)
        with self.assertRaises(concurrency.NotLeader):
            await threads.deferToThread(election.proclaim, "still me?")
        await threads.deferToThread(election.resign)


class CompactedWatchTests(TestCase):
    """A watch from a compacted revision fails with the revision to start from."""

    timeout = 120

    async def test_watch_from_a_compacted_revision(self):
        """Both flavours raise WatchCompacted with the compaction's revision."""
        cluster, leader = await started_cluster(self)
        client = TxClient([m.url for m in cluster.members.values()], reactor)
        self.addCleanup(client.close)
        first = (await client.put("c", "1")).header.revision
        now = (await client.put("c", "2")).header.revision
        await client.compact(now)
        watch = client.watch("c", lambda event: None, start_revision=first)
        failure = await self.assertFailure(watch.done, WatchCompacted)
        self.assertEqual(failure.compact_revision, now)

        sync = Client([m.url for m in cluster.members.values()])
        self.addCleanup(sync.close)
        with self.assertRaises(WatchCompacted):
            await threads.deferToThread(lambda: list(sync.watch("c", start_revision=first)))
