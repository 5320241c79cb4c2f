"""The REST API's leases (``?ttl``, ``?refresh``) and blocking reads
(``?index``/``?wait``), on a real single member over loopback TCP."""

from __future__ import annotations

import json

from twisted.internet import defer, reactor, task

from metastore.kv.errors import LeaseNotFoundError
from metastore.kv.messages import Put, prefix_range_end
from tests.api.test_rest import SingleMemberTestCase
from tests.process import wait_until


class LeaseTests(SingleMemberTestCase):
    """A key PUT with ?ttl lives as long as its lease."""

    async def setUp(self):
        await self.start_member()

    async def test_ttl_key_expires_unless_refreshed(self):
        """PUT ?ttl=2 answers the lease; ?refresh keeps the key past its TTL;
        without refreshes the leader revokes the lease and the key goes."""
        response, body = await self.request("PUT", "/svc/a?ttl=2", b"up")
        answer = json.loads(body)
        self.assertEqual((response.code, answer["ttl"]), (200, 2))
        self.assertEqual(self.header(response, "X-MetaStore-Lease"), str(answer["lease"]))
        started = reactor.seconds()
        while reactor.seconds() - started < 3.5:  # longer than the TTL, bounded
            response, body = await self.request("PUT", "/svc/a?refresh")
            self.assertEqual((response.code, json.loads(body)["lease"]), (200, answer["lease"]))
            await deferLater(0.5)
        response, body = await self.request("GET", "/svc/a")
        self.assertEqual((response.code, body), (200, b"up"))

        async def gone():
            response, _ = await self.request("GET", "/svc/a")
            return response.code == 404

        await wait_until(gone, timeout=10, what="the key to expire with its lease")
        response, body = await self.request("PUT", "/svc/a?refresh")
        self.assertEqual(response.code, 404)

    async def test_refresh_needs_a_leased_key_and_ttl_is_checked(self):
        """?refresh on a key without a lease is 409; bad ttls are 400."""
        await self.request("PUT", "/plain", b"v")
        response, body = await self.request("PUT", "/plain?refresh")
        self.assertEqual((response.code, json.loads(body)["error"]), (409, "not_leased"))
        for bad in ("0", "x", "-1", "9000000001"):
            response, body = await self.request("PUT", f"/k?ttl={bad}", b"v")
            self.assertEqual(response.code, 400, bad)
        response, _ = await self.request("GET", "/k")
        self.assertEqual(response.code, 404)


class BlockingReadTests(SingleMemberTestCase):
    """GET ?index=N waits for a change after revision N."""

    async def setUp(self):
        await self.start_member()

    async def test_blocking_read_wakes_on_change(self):
        """A read at the current index waits; a put of the key wakes it with
        the new value and the index to pass next time."""
        put, _ = await self.request("PUT", "/cfg", b"1")
        index = self.header(put, "X-MetaStore-Revision")
        waiting = defer.ensureDeferred(self.request("GET", f"/cfg?index={index}&wait=20s"))
        await deferLater(0.3)
        self.assertFalse(waiting.called)
        await self.request("PUT", "/other", b"x")
        await deferLater(0.3)
        self.assertFalse(waiting.called)
        changed, _ = await self.request("PUT", "/cfg", b"2")
        response, body = await waiting
        self.assertEqual((response.code, body), (200, b"2"))
        self.assertEqual(self.header(response, "X-MetaStore-Index"), self.header(changed, "X-MetaStore-Revision"))

    async def test_blocking_read_returns_at_once_for_an_older_index(self):
        """An index below the key's last change answers at once."""
        await self.request("PUT", "/cfg", b"1")
        response, body = await self.request("GET", "/cfg?index=1&wait=20s")
        self.assertEqual((response.code, body), (200, b"1"))

    async def test_wait_ends_with_the_same_answer(self):
        """When the wait ends without a change the answer is the current one."""
        put, _ = await self.request("PUT", "/cfg", b"1")
        index = self.header(put, "X-MetaStore-Revision")
        response, body = await self.request("GET", f"/cfg?index={index}&wait=300ms")
        self.assertEqual((response.code, body, self.header(response, "X-MetaStore-Index")), (200, b"1", index))

    async def test_blocking_list_wakes_on_a_change_under_the_prefix(self):
        """?list&index=N on a prefix wakes on a delete under it."""
        await self.request("PUT", "/svc/a", b"1")
        put, _ = await self.request("PUT", "/svc/b", b"2")
        index = self.header(put, "X-MetaStore-Revision")
        waiting = defer.ensureDeferred(self.request("GET", f"/svc/?list&index={index}&wait=20s"))
        await deferLater(0.3)
        self.assertFalse(waiting.called)
        await self.request("DELETE", "/svc/a")
        response, body = await waiting
        self.assertEqual([kv["key"] for kv in json.loads(body)["kvs"]], ["svc/b"])

    async def test_bad_wait_and_index_are_400(self):
        """wait must be a duration of at most 10 minutes; index a revision."""
        for query in ("index=1&wait=soon", "index=1&wait=11m", "index=x"):
            response, body = await self.request("GET", f"/cfg?{query}")
            self.assertEqual(response.code, 400, query)
            self.assertIn("error", json.loads(body))


def deferLater(seconds: float) -> defer.Deferred:
    """A Deferred that fires after ``seconds`` on the reactor."""
    return task.deferLater(reactor, seconds, lambda: None)


class FacadeLeaseAndWatchTests(SingleMemberTestCase):
    """The facade methods the v3 lease and watch routes are written against."""

    async def setUp(self):
        await self.start_member()
        self.api = self.member.api

    async def test_lease_lifecycle_through_the_facade(self):
        """grant (own id and chosen id), attach, time_to_live with keys,
        leases, keepalive, revoke deleting the keys, unknown lease errors."""
        chosen = await self.api.lease_grant(60, id=0x1234)
        picked = await self.api.lease_grant(1)
        self.assertEqual((chosen.id, chosen.ttl, picked.ttl), (0x1234, 60, 2))
        self.assertGreater(picked.id, 0)
        await self.api.propose(Put(b"a", b"1", lease=chosen.id))
        await self.api.read()
        status = self.api.lease_time_to_live(chosen.id, keys=True)
        self.assertEqual((status.granted_ttl, status.keys), (60, (b"a",)))
        self.assertTrue(0 < status.ttl <= 60)
        self.assertEqual({lease.id for lease in self.api.leases()}, {chosen.id, picked.id})
        kept = await self.api.lease_keepalive(chosen.id)
        self.assertEqual(kept.ttl, 60)
        await self.assertFailure(defer.ensureDeferred(self.api.propose(Put(b"b", lease=999))), LeaseNotFoundError)
        revoked = await self.api.lease_revoke(chosen.id)
        self.assertEqual(revoked.deleted, 1)
        self.assertIsNone(self.api.get(b"a"))
        self.assertEqual(self.api.lease_time_to_live(chosen.id).ttl, -1)
        await self.assertFailure(defer.ensureDeferred(self.api.lease_keepalive(chosen.id)), LeaseNotFoundError)

    async def test_watch_through_the_facade(self):
        """A facade watch from a past revision gets created, the history,
        then live events, and a canceled response on cancel()."""
        first = await self.api.propose(Put(b"w/a", b"1"))
        responses = []
        handle = self.api.watch(b"w/", prefix_range_end(b"w/"), first.revision, prev_kv=True, callback=responses.append)
        await self.api.propose(Put(b"w/a", b"2"))
        await wait_until(lambda: sum(len(r.events) for r in responses) == 2, timeout=10, what="two events")
        self.assertTrue(responses[0].created)
        events = [e for r in responses for e in r.events]
        self.assertEqual([(e.kv.value, e.prev_kv and e.prev_kv.value) for e in events], [(b"1", None), (b"2", b"1")])
        handle.cancel()
        self.assertTrue(responses[-1].canceled)
