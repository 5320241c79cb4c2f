"""OpenStack's ``etcd3gw`` client, unchanged, drives a 3-member cluster.

The same scenario runs against real etcd (which proves the scenario is
right: it states etcd's behaviour, not ours) and against MetaStore.  It
writes through one member and reads through another, so every step also
checks that answers are linearizable across members.  etcd3gw is blocking
(``requests``), so the scenario runs in a thread; the members are child
processes.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from tests.api.v3targets import V3Target, start_etcd, start_metastore


def etcd3gw_client(url: str):
    """An etcd3gw client of the member at ``url`` (version discovery included)."""
    import etcd3gw

    parts = urlsplit(url)
    return etcd3gw.client(host=parts.hostname, port=parts.port, timeout=10)


def poll(condition, timeout: float, what: str, interval: float = 0.1):
    """In a client thread: ``condition()``'s first true value, checked
    every ``interval`` seconds for at most ``timeout``; AssertionError after."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def take(events, count: int, timeout: float, stop) -> list:
    """The first ``count`` events of an etcd3gw watch iterator, read in a
    helper thread; ``stop`` (the watch's cancel) ends it after ``timeout``."""
    import threading

    got: list = []

    def read():
        for event in events:
            got.append(event)
            if len(got) == count:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    stop()
    reader.join(5)
    return got


def summary(event) -> tuple:
    """An etcd3gw event as (type, key, value)."""
    return (event.get("type", "PUT"), event["kv"]["key"], event["kv"].get("value", b""))


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

    async def run_with_clients(self, scenario) -> None:
        """Start the cluster; run ``scenario(clients)`` (one client per
        member) in a thread."""
        target = await self.start_cluster()
        clients = [etcd3gw_client(url) for url in target.urls]
        try:
            await threads.deferToThread(scenario, clients)
        finally:
            for client in clients:
                client.session.close()

    async def test_leases(self):
        """grant / ttl / keys / refresh / revoke through different members;
        a lease left alone expires and takes its keys along; refresh of an
        expired lease answers -1."""
        await self.run_with_clients(self.lease_scenario)

    def lease_scenario(self, clients) -> None:
        one, two, three = clients
        lease = one.lease(ttl=30)
        self.assertGreater(lease.id, 0)
        self.assertIs(two.put("/l/a", "1", lease=lease), True)
        three.put("/l/b", "2", lease=lease)
        self.assertIn(lease.ttl(), range(25, 31))
        self.assertEqual(sorted(lease.keys()), [b"/l/a", b"/l/b"])
        self.assertEqual(lease.refresh(), 30)
        self.assertIs(lease.revoke(), True)
        self.assertEqual(poll(lambda: two.get_prefix("/l/") == [] and three.get_prefix("/l/") == [], 10,
                              "the revoked lease's keys to go"), True)  # fmt: skip
        self.assertEqual(lease.ttl(), -1)
        self.assertEqual(lease.refresh(), -1)

        from etcd3gw.lease import Lease

        counting = one.lease(ttl=30)
        short = two.lease(ttl=2)
        one.put("/l/short", "s", lease=short)
        kept = three.lease(ttl=2)
        one.put("/l/kept", "k", lease=kept)
        started = time.monotonic()
        while time.monotonic() - started < 4:  # two TTLs, refreshing one lease only
            self.assertEqual(kept.refresh(), 2)
            time.sleep(0.5)
        # every member, asked for the remaining TTL, has counted down
        self.assertEqual([Lease(counting.id, c).ttl() in range(15, 27) for c in clients], [True] * 3)
        counting.revoke()
        poll(lambda: three.get("/l/short") == [], 10, "the expired lease's key to go")
        self.assertEqual(short.ttl(), -1)
        self.assertEqual(short.refresh(), -1)
        self.assertEqual(one.get("/l/kept"), [b"k"])
        kept.revoke()

    async def test_lock_exclusion_and_ttl_hand_over(self):
        """Two clients on two members: one holds the lock, the other cannot
        take it; released, the other takes it; a holder that stops
        refreshing loses it when its lease runs out."""
        await self.run_with_clients(self.lock_scenario)

    def lock_scenario(self, clients) -> None:
        one, two, _ = clients
        first, second = one.lock("job", ttl=30), two.lock("job", ttl=30)
        self.assertIs(first.acquire(), True)
        self.assertIs(second.acquire(), False)
        self.assertTrue(first.is_acquired())
        self.assertFalse(second.is_acquired())
        self.assertEqual(first.refresh(), 30)
        self.assertIs(second.release(), False)
        self.assertIs(first.release(), True)
        self.assertIs(second.acquire(), True)
        self.assertIs(first.acquire(), False)
        self.assertIs(second.release(), True)

        holder, waiter = one.lock("ttl", ttl=2), two.lock("ttl", ttl=2)
        self.assertIs(holder.acquire(), True)
        self.assertIs(waiter.acquire(), False)
        poll(waiter.acquire, 10, "the lock to pass when its holder's lease expires", interval=0.25)
        self.assertFalse(holder.is_acquired())
        self.assertTrue(waiter.is_acquired())
        self.assertIs(waiter.release(), True)

    async def test_watches(self):
        """A key watch and a prefix watch see their events in order, through
        other members' writes; a watch from a past revision replays history;
        watch_once returns the next event, or times out."""
        await self.run_with_clients(self.watch_scenario)

    def watch_scenario(self, clients) -> None:
        from etcd3gw.exceptions import WatchTimedOut

        one, two, three = clients
        key_events, stop_key = one.watch("/w/k")
        prefix_events, stop_prefix = two.watch_prefix("/w/")
        first = int(three.status()["header"]["revision"]) + 1
        three.put("/w/k", "1")
        one.put("/w/other", "x")
        two.put("/w/k", "2")
        three.delete("/w/k")
        self.assertEqual([summary(e) for e in take(key_events, 3, 10, stop_key)],
                         [("PUT", b"/w/k", b"1"), ("PUT", b"/w/k", b"2"), ("DELETE", b"/w/k", b"")])  # fmt: skip
        expected = [("PUT", b"/w/k", b"1"), ("PUT", b"/w/other", b"x"), ("PUT", b"/w/k", b"2"),
                    ("DELETE", b"/w/k", b"")]  # fmt: skip
        self.assertEqual([summary(e) for e in take(prefix_events, 4, 10, stop_prefix)], expected)

        past, stop_past = three.watch_prefix("/w/", start_revision=first)
        self.assertEqual([summary(e) for e in take(past, 4, 10, stop_past)], expected)

        started = time.monotonic()
        with self.assertRaises(WatchTimedOut):
            one.watch_once("/w/quiet", timeout=1)
        self.assertGreaterEqual(time.monotonic() - started, 1)
        import threading

        timer = threading.Timer(0.5, lambda: two.put("/w/once", "o"))
        timer.start()
        try:
            event = three.watch_once("/w/once", timeout=10)
        finally:
            timer.join()
        self.assertEqual(summary(event), ("PUT", b"/w/once", b"o"))

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

        # A member publishes its client URL through raft once it has started
        # (as etcd does): wait for all three, within a bound.
        deadline = time.monotonic() + 30
        for _ in range(300):
            members = one.members()
            if len([u for m in members for u in m.get("clientURLs", [])]) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
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
