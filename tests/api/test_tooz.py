"""OpenStack's ``tooz``, unchanged, coordinates through a 3-member cluster
with its ``etcd3+http://`` driver (built on etcd3gw and the v3 JSON API).

Each coordinator talks to a different member, so every step also checks
that leases, transactions and ranges agree across members.  The same
scenarios run against real etcd (which proves they state etcd's behaviour)
and against MetaStore.  tooz is blocking (``requests`` and its own heartbeat
thread), so every call runs in a thread; waits poll a condition with a bound.

tooz 9's etcd3 driver has no native leader election (its
``watch_elected_as_leader`` raises ``NotImplemented``); its users elect a
leader with a tooz lock held by heartbeats, which is what the election
scenario does.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.api.v3targets import OnMetaStore, OnRealEtcd, V3Client, V3Target, raft_leader_index
from tests.process import wait_until

TTL = 2
"""Seconds a membership or lock lease lives without a heartbeat (etcd's
smallest TTL with its default election timeout)."""

GROUP = b"workers"


FAILOVER_TTL = 5
"""The lease TTL of the scenario that crashes the Raft leader: a crash and
an election fit in it."""


def coordinator(url: str, member_id: bytes, ttl: int = TTL):
    """A tooz coordinator of the member at ``url`` whose membership and
    lock leases last ``ttl`` seconds."""
    from tooz import coordination

    parts = urlsplit(url)
    uri = f"etcd3+http://{parts.hostname}:{parts.port}?timeout=10&lock_timeout={ttl}&membership_timeout={ttl}"
    return coordination.get_coordinator(uri, member_id)


def stop_quietly(coord) -> None:
    """Stop ``coord`` (its heart and executor) whatever state it is in."""
    import tooz

    if coord.heart.is_alive():
        coord.heart.stop()
        coord.heart.wait(15)
    if coord.is_started:
        try:
            coord.stop()
        except tooz.ToozError:
            pass


class ToozScenarios:
    """Mixin: the tooz scenarios; ``start_cluster`` names the system."""

    timeout = 120

    async def start_cluster(self) -> V3Target:
        """Override: a running 3-member cluster."""
        raise NotImplementedError

    async def started(self, url: str, member_id: bytes, heart: bool = False, ttl: int = TTL):
        """A started coordinator on ``url`` with leases of ``ttl`` seconds,
        stopped at cleanup; with ``heart`` its heartbeat thread runs."""
        coord = coordinator(url, member_id, ttl)
        await deferToThread(coord.start, start_heart=heart)
        self.addCleanup(deferToThread, stop_quietly, coord)
        return coord

    async def test_group_membership_with_heartbeats(self):
        """Members join a group and are listed with their capabilities on
        every member; heartbeats keep them past two TTLs; a member that
        leaves, and one whose heartbeats stop, disappear (the latter once
        its lease runs out) and watchers are told; a heartbeat after the expiry
        takes a new lease to join with."""
        from tooz import coordination

        target = await self.start_cluster()
        alpha = await self.started(target.urls[0], b"alpha", heart=True)
        beta = await self.started(target.urls[1], b"beta", heart=True)
        observer = await self.started(target.urls[2], b"observer")

        await deferToThread(lambda: alpha.create_group(GROUP).get())
        with self.assertRaises(coordination.GroupAlreadyExist):
            await deferToThread(lambda: beta.create_group(GROUP).get())
        await deferToThread(lambda: alpha.join_group(GROUP, b"alpha-caps").get())
        await deferToThread(lambda: beta.join_group(GROUP, b"beta-caps").get())
        with self.assertRaises(coordination.MemberAlreadyExist):
            await deferToThread(lambda: beta.join_group(GROUP).get())

        def members():
            return deferToThread(lambda: observer.get_members(GROUP).get())

        self.assertEqual(await members(), {b"alpha", b"beta"})
        self.assertEqual(
            await deferToThread(lambda: observer.get_members_with_capabilities(GROUP).get()),
            {b"alpha": b"alpha-caps", b"beta": b"beta-caps"},
        )
        # (tooz's get_groups also lists member keys as groups: only ours is checked)
        self.assertIn(GROUP, await deferToThread(lambda: observer.get_groups().get()))

        joined, left = [], []
        await deferToThread(observer.watch_join_group, GROUP, joined.append)
        await deferToThread(observer.watch_leave_group, GROUP, left.append)

        # Heartbeats renew the membership lease: both stay past 2 TTLs.
        since = time.monotonic()
        await wait_until(
            lambda: time.monotonic() > since + 2 * TTL and min(alpha.heart.beats, beta.heart.beats) >= 3,
            timeout=4 * TTL + 10, what="two TTLs and three heartbeats of each member",
        )
        self.assertEqual(await members(), {b"alpha", b"beta"})
        self.assertEqual(await deferToThread(observer.run_watchers), [])

        await deferToThread(lambda: beta.leave_group(GROUP).get())
        self.assertEqual(await members(), {b"alpha"})
        await deferToThread(observer.run_watchers)
        self.assertEqual([(e.group_id, e.member_id) for e in left], [(GROUP, b"beta")])

        await deferToThread(lambda: beta.join_group(GROUP, b"beta-caps").get())
        await deferToThread(observer.run_watchers)
        self.assertEqual([e.member_id for e in joined], [b"beta"])

        # beta's heart stops as if its process hung: its lease runs out.
        beta.heart.stop()
        await deferToThread(beta.heart.wait, 15)
        await wait_until(
            lambda: members().addCallback(lambda m: m == {b"alpha"}),
            timeout=TTL + 15, interval=0.2, what="beta's membership to expire",
        )
        await deferToThread(observer.run_watchers)
        self.assertEqual([e.member_id for e in left], [b"beta", b"beta"])
        self.assertTrue(alpha.heart.is_alive())

        # Its next heartbeat finds the lease gone and takes a new one, with
        # which it joins again.
        expired_lease = beta._membership_lease.id
        await deferToThread(beta.heartbeat)
        self.assertNotEqual(beta._membership_lease.id, expired_lease)
        await deferToThread(lambda: beta.join_group(GROUP, b"beta-caps").get())
        self.assertEqual(await members(), {b"alpha", b"beta"})
        await deferToThread(observer.run_watchers)
        self.assertEqual([e.member_id for e in joined], [b"beta", b"beta"])

    async def test_lock_exclusion_release_and_expiry(self):
        """A lock held by one coordinator is refused to another until it is
        released; a blocked acquire gets it on release; heartbeats keep it;
        without them it expires no sooner than its TTL and is then free."""
        target = await self.start_cluster()
        one = await self.started(target.urls[0], b"one")
        two = await self.started(target.urls[1], b"two")
        mine, theirs = one.get_lock(b"resource"), two.get_lock(b"resource")

        def acquire(lock, blocking=False):
            return deferToThread(lock.acquire, blocking=blocking)

        self.assertIs(await acquire(mine), True)
        self.assertIs(await acquire(theirs), False)
        self.assertIs(await acquire(mine), False)  # not reentrant
        self.assertIs(await deferToThread(theirs.release), False)
        self.assertIs(await deferToThread(mine.release), True)
        self.assertIs(await deferToThread(mine.release), False)

        self.assertIs(await acquire(theirs), True)
        waiting = acquire(mine, blocking=3 * TTL + 10)
        self.assertIs(await acquire(one.get_lock(b"resource")), False)
        self.assertFalse(waiting.called)
        self.assertIs(await deferToThread(theirs.release), True)
        self.assertIs(await waiting, True)
        self.assertIs(await acquire(theirs), False)

        # Heartbeats keep the lock past two TTLs.
        since = time.monotonic()
        for _ in range(16 * TTL):
            self.assertIs(await deferToThread(mine.heartbeat), True)
            self.assertIs(await acquire(theirs), False)
            if time.monotonic() > since + 2 * TTL:
                break
            await wait_until(lambda t=time.monotonic(): time.monotonic() > t + TTL / 4, what="a quarter TTL")
        self.assertGreater(time.monotonic(), since + 2 * TTL)

        # A fresh hold without heartbeats expires after its TTL.
        self.assertIs(await deferToThread(mine.release), True)
        before_grant = time.monotonic()
        self.assertIs(await acquire(mine), True)
        await wait_until(lambda: acquire(theirs), timeout=TTL + 15, interval=0.25, what="the lock to expire")
        self.assertGreaterEqual(time.monotonic() - before_grant, TTL)
        self.assertIs(await acquire(mine), False)
        self.assertIs(await deferToThread(theirs.release), True)

    async def test_leader_election_by_lock(self):
        """Of three candidates campaigning with a heartbeat-held lock,
        exactly one leads; while it beats nobody else does; when it stops
        another (exactly one) takes over, and a resignation hands over at
        once."""
        target = await self.start_cluster()
        names = [b"c1", b"c2", b"c3"]
        candidates = {
            name: await self.started(url, name, heart=True) for name, url in zip(names, target.urls)
        }
        locks = {name: coord.get_lock(b"leader/" + GROUP) for name, coord in candidates.items()}

        async def campaign(among):
            """Every candidate in ``among`` tries once; the ones that won."""
            return [name for name in among if await deferToThread(locks[name].acquire, blocking=False)]

        [leader] = await campaign(names)
        followers = [n for n in names if n != leader]

        since = time.monotonic()
        await wait_until(
            lambda: time.monotonic() > since + 2 * TTL and candidates[leader].heart.beats >= 3,
            timeout=4 * TTL + 10, what="two TTLs of the leader's heartbeats",
        )
        self.assertEqual(await campaign(followers), [])

        # The leader stops beating, as if its process died.
        candidates[leader].heart.stop()
        await deferToThread(candidates[leader].heart.wait, 15)
        winners = await wait_until(lambda: campaign(followers), timeout=TTL + 15, interval=0.25,
                                   what="a follower to take over")
        self.assertEqual(len(winners), 1, winners)
        second = winners[0]
        self.assertEqual(await campaign([n for n in followers if n != second]), [])

        # A resignation hands over without waiting for a TTL.
        [last] = [n for n in followers if n != second]
        self.assertIs(await deferToThread(locks[second].release), True)
        self.assertEqual(await campaign([last]), [last])

    async def test_lock_held_through_a_crash_of_the_raft_leader(self):
        """The Raft leader is killed while a coordinator on a follower holds
        a lock with heartbeats: its keepalives reach the new leader, the
        lease never expires, the other coordinator never gets the lock,
        and the holder still releases its own key afterwards."""
        import tooz

        target = await self.start_cluster()
        crashed = await raft_leader_index(V3Client(self), target)
        survivors = [url for i, url in enumerate(target.urls) if i != crashed]
        holder = await self.started(survivors[0], b"holder", heart=True, ttl=FAILOVER_TTL)
        contender = await self.started(survivors[1], b"contender", ttl=FAILOVER_TTL)
        held, wanted = holder.get_lock(b"resource"), contender.get_lock(b"resource")
        self.assertIs(await deferToThread(held.acquire, blocking=False), True)

        target.kill_member(crashed)
        since, beats = time.monotonic(), holder.heart.beats
        answers = []

        async def contend():
            """One attempt of the contender; true once two TTLs have passed
            and the survivors answer again."""
            try:
                answers.append(await deferToThread(wanted.acquire, blocking=False))
            except tooz.ToozError:  # refused while there is no leader
                answers.append(None)
            return time.monotonic() > since + 2 * FAILOVER_TTL and answers[-1] is False

        await wait_until(contend, timeout=2 * FAILOVER_TTL + 30, interval=0.25,
                         what="two TTLs to pass after the crash, the survivors answering")
        self.assertNotIn(True, answers)
        self.assertGreater(holder.heart.beats, beats + 2)
        self.assertIs(await deferToThread(held.release), True)
        self.assertIs(await deferToThread(wanted.acquire, blocking=False), True)


class ToozAgainstEtcdTests(OnRealEtcd, ToozScenarios, TestCase):
    """The tooz scenarios against a real 3-member etcd (skipped without etcd)."""


class ToozAgainstMetaStoreTests(OnMetaStore, ToozScenarios, TestCase):
    """The tooz scenarios against a 3-member MetaStore."""
