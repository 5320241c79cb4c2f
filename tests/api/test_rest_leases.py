"""The REST API's leases (``?ttl``, ``?refresh``) and blocking reads
(``?index``/``?wait``), on a real single member over loopback TCP."""

from __future__ import annotations

import json

from twisted.internet import defer, reactor, task

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
