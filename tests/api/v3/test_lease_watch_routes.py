"""The v3 Lease and Watch routes on a real in-process member over HTTP:
etcd's shapes (checked against etcd 3.4.23's gateway), its errors, and the
watch stream as etcd3gw reads it, one JSON object per chunk."""

from __future__ import annotations

import base64
import json

from twisted.internet import reactor

from tests.api.test_rest import SingleMemberTestCase
from tests.api.v3.streams import post_stream
from tests.process import wait_until


def b64(data: bytes) -> str:
    """Bytes as the gateway carries them."""
    return base64.b64encode(data).decode()


class V3MemberTestCase(SingleMemberTestCase):
    """One member; JSON posts and streams against it."""

    async def setUp(self):
        await self.start_member()

    async def post(self, path: str, body) -> tuple[int, dict]:
        """POST ``body`` as JSON; the status and the JSON answer."""
        response, content = await self.request("POST", path, json.dumps(body).encode())
        self.assertEqual(self.header(response, "Content-Type"), "application/json", content)
        return response.code, json.loads(content)

    async def ok(self, path: str, body) -> dict:
        """POST, expecting 200; the answer."""
        status, answer = await self.post(path, body)
        self.assertEqual(status, 200, answer)
        return answer

    def assertHeader(self, header: dict, revision: int | None) -> None:
        """``header`` is this member's, at ``revision`` (None: no revision)."""
        expected = {"cluster_id": header.get("cluster_id"), "member_id": str(self.member.api.member_id),
                    "raft_term": str(self.member.api.term)}  # fmt: skip
        if revision is not None:
            expected["revision"] = str(revision)
        self.assertEqual(header, expected)
        self.assertTrue(header["cluster_id"].isdigit())

    async def watch(self, create: dict):
        """Open a watch stream with ``create`` as its create_request."""
        stream = await post_stream(reactor, self.url, "/v3/watch", {"create_request": create})
        self.addCleanup(lambda: stream.transport and stream.transport.abortConnection())
        return stream


class LeaseRouteTests(V3MemberTestCase):
    """``/v3/lease/*`` and ``/v3/kv/lease/*``."""

    async def test_grant_time_to_live_leases_revoke(self):
        """A grant answers its ID and TTL; timetolive counts down and lists
        the keys (base64) when asked; leases lists it; revoke (either path)
        deletes its keys in one revision and ends it."""
        grant = await self.ok("/v3/lease/grant", {"TTL": 30, "ID": 7})
        self.assertEqual((grant["ID"], grant["TTL"]), ("7", "30"))
        self.assertHeader(grant["header"], self.member.api.revision)
        await self.ok("/v3/kv/put", {"key": b64(b"a"), "value": b64(b"1"), "lease": 7})
        put = await self.ok("/v3/kv/put", {"key": b64(b"b"), "value": b64(b"2"), "lease": "7"})
        for path in ("/v3/lease/timetolive", "/v3/kv/lease/timetolive"):
            ttl = await self.ok(path, {"ID": 7, "keys": True})
            self.assertEqual({k: v for k, v in ttl.items() if k != "TTL"}, {
                "header": put["header"], "ID": "7", "grantedTTL": "30", "keys": [b64(b"a"), b64(b"b")]})
            self.assertIn(int(ttl["TTL"]), range(28, 31))
        self.assertNotIn("keys", await self.ok("/v3/lease/timetolive", {"ID": 7}))
        leases = await self.ok("/v3/lease/leases", {})
        self.assertEqual(leases["leases"], [{"ID": "7"}])
        revoke = await self.ok("/v3/kv/lease/revoke", {"ID": 7})
        revision = int(put["header"]["revision"]) + 1
        self.assertHeader(revoke["header"], revision)
        found = await self.ok("/v3/kv/range", {"key": b64(b"a"), "range_end": b64(b"c")})
        self.assertNotIn("kvs", found)
        self.assertEqual(await self.ok("/v3/lease/leases", {}), {"header": revoke["header"]})
        self.assertEqual(await self.ok("/v3/lease/timetolive", {"ID": 7}),
                         {"header": revoke["header"], "ID": "7", "TTL": "-1"})

    async def test_unknown_lease_errors(self):
        """Revoke (both paths) and a put with an unknown lease: 404, code 5,
        etcd's words; an existing ID 412; a TTL too large 400, code 11; a
        small TTL is raised to the minimum."""
        not_found = {"error": "etcdserver: requested lease not found", "code": 5,
                     "message": "etcdserver: requested lease not found"}  # fmt: skip
        for path, body in (("/v3/lease/revoke", {"ID": 99}), ("/v3/kv/lease/revoke", {"ID": 99}),
                           ("/v3/lease/revoke", {}),
                           ("/v3/kv/put", {"key": b64(b"k"), "value": b64(b"v"), "lease": 99})):  # fmt: skip
            self.assertEqual(await self.post(path, body), (404, not_found), path)
        await self.ok("/v3/lease/grant", {"TTL": 10, "ID": 5})
        status, answer = await self.post("/v3/lease/grant", {"TTL": 10, "ID": 5})
        self.assertEqual((status, answer["code"], answer["error"]), (412, 9, "etcdserver: lease already exists"))
        status, answer = await self.post("/v3/lease/grant", {"TTL": 9_000_000_001})
        self.assertEqual((status, answer["code"], answer["error"]), (400, 11, "etcdserver: too large lease TTL"))
        small = await self.ok("/v3/lease/grant", {"TTL": 1})
        self.assertEqual(small["TTL"], str(self.member.api._lessor.min_ttl))
        self.assertGreater(int(small["ID"]), 0)
        for bad in ({"ID": -3, "TTL": 5}, {"TTL": "x"}, {"ID": 1.5}):
            status, answer = await self.post("/v3/lease/grant", bad)
            self.assertEqual((status, answer["code"]), (400, 3), bad)
        self.assertEqual((await self.ok("/v3/lease/timetolive", {}))["TTL"], "-1")

    async def test_keepalive_is_one_stream_message(self):
        """A keepalive answers one chunk ``{"result": ...}`` and ends; the
        TTL is the whole TTL again; an unknown lease has no TTL; no ID, no ID."""
        await self.ok("/v3/lease/grant", {"TTL": 20, "ID": 11})
        revision = self.member.api.revision
        for body, expected in (({"ID": 11}, {"ID": "11", "TTL": "20"}), ({"ID": 12}, {"ID": "12"}), ({}, {})):
            stream = await post_stream(reactor, self.url, "/v3/lease/keepalive", body)
            await wait_until(lambda: stream.ended, timeout=10, what="the keepalive answer to end")
            self.assertEqual(stream.status, 200)
            self.assertEqual(stream.headers[b"content-type"], b"application/json")
            self.assertEqual(len(stream.chunks), 1)
            self.assertTrue(stream.chunks[0].endswith(b"}\n"))
            [result] = stream.results
            self.assertHeader(result.pop("header"), revision)
            self.assertEqual(result, expected, body)
            stream.close()
        status, answer = await self.post("/v3/lease/keepalive", {"ID": "nope"})
        self.assertEqual((status, answer["code"]), (400, 3))


class WatchRouteTests(V3MemberTestCase):
    """``POST /v3/watch``."""

    async def put(self, key: bytes, value: bytes = b"v") -> int:
        """Put; the revision."""
        return int((await self.ok("/v3/kv/put", {"key": b64(key), "value": b64(value)}))["header"]["revision"])

    async def test_created_at_once_then_events_one_chunk_each(self):
        """The created message (at the current revision) comes before any
        event; then a put and a delete with prev_kv, each in its own chunk
        ending with a newline; a PUT has no ``type``, a DELETE's kv only its
        key and mod_revision; watch id 0 is absent."""
        first = await self.put(b"other")
        stream = await self.watch({"key": b64(b"k"), "prev_kv": True})
        [created] = await stream.wait_for(1)
        self.assertEqual((stream.status, stream.headers[b"transfer-encoding"]), (200, b"chunked"))
        self.assertEqual(stream.headers[b"content-type"], b"application/json")
        self.assertHeader(created.pop("header"), first)
        self.assertEqual(created, {"created": True})
        put = await self.put(b"k", b"1")
        await self.put(b"other")
        await self.ok("/v3/kv/deleterange", {"key": b64(b"k")})
        _, put_message, delete_message = await stream.wait_for(3)
        self.assertTrue(all(chunk.endswith(b"}\n") for chunk in stream.chunks))
        self.assertHeader(put_message.pop("header"), put)
        kv = {"key": b64(b"k"), "create_revision": str(put), "mod_revision": str(put), "version": "1", "value": b64(b"1")}
        self.assertEqual(put_message, {"events": [{"kv": kv}]})
        self.assertHeader(delete_message.pop("header"), put + 2)
        self.assertEqual(delete_message, {"events": [
            {"type": "DELETE", "kv": {"key": b64(b"k"), "mod_revision": str(put + 2)}, "prev_kv": kv}]})
        self.assertFalse(stream.ended)

    async def test_replay_prefix_filters_and_txn_together(self):
        """From a past revision: history replayed then live, no gap, no
        duplicate; a prefix watch (range_end) sees only its range; NOPUT
        leaves only deletes; a txn's events share one message."""
        start = await self.put(b"p/a", b"1")
        await self.put(b"q", b"x")
        await self.put(b"p/b", b"2")
        everything = await self.watch({"key": b64(b"p/"), "range_end": b64(b"p0"), "start_revision": start})
        deletes = await self.watch({"key": b64(b"p/"), "range_end": b64(b"p0"), "filters": ["NOPUT"]})
        await everything.wait_for(2)
        await deletes.wait_for(1)
        txn = {"success": [{"request_put": {"key": b64(b"p/c"), "value": b64(b"3")}},
                           {"request_delete_range": {"key": b64(b"p/a")}}]}  # fmt: skip
        revision = int((await self.ok("/v3/kv/txn", txn))["header"]["revision"])
        results = await everything.wait_for(3)
        seen = [(base64.b64decode(e["kv"]["key"]), int(e["kv"]["mod_revision"]), e.get("type", "PUT"))
                for r in results[1:] for e in r["events"]]  # fmt: skip
        self.assertEqual(seen, [(b"p/a", start, "PUT"), (b"p/b", start + 2, "PUT"),
                                (b"p/c", revision, "PUT"), (b"p/a", revision, "DELETE")])  # fmt: skip
        self.assertEqual(len(results[2]["events"]), 2)
        [_, only_delete] = await deletes.wait_for(2)
        self.assertEqual([e.get("type") for e in only_delete["events"]], ["DELETE"])

    async def test_compacted_start_revision(self):
        """A watch from below the compacted revision: created, then a cancel
        with etcd's compact_revision and a header without revision; the
        response then ends."""
        start = await self.put(b"k", b"1")
        await self.put(b"k", b"2")
        latest = await self.put(b"k", b"3")
        await self.ok("/v3/kv/compaction", {"revision": latest})
        stream = await self.watch({"key": b64(b"k"), "start_revision": start})
        await wait_until(lambda: stream.ended, timeout=10, what="the compacted watch to end")
        created, canceled = stream.results
        self.assertEqual(created["created"], True)
        self.assertHeader(canceled.pop("header"), None)
        self.assertEqual((canceled["canceled"], canceled["compact_revision"]), (True, str(latest)))
        await wait_until(lambda: self.member.api.watch_count() == 0, timeout=5, what="the watch to be freed")

    async def test_disconnect_frees_the_watch(self):
        """A client that goes away without a word loses its watch."""
        stream = await self.watch({"key": b64(b"k")})
        await stream.wait_for(1)
        self.assertEqual(self.member.api.watch_count(), 1)
        stream.close()
        await wait_until(lambda: self.member.api.watch_count() == 0, timeout=10, what="the watch to be freed")
        await self.put(b"k")

    async def test_member_shutdown_cancels_with_a_reason(self):
        """A watch cancelled by the member (here: it stops) gets a last
        message with ``canceled`` and the reason, and the response ends."""
        stream = await self.watch({"key": b64(b"k")})
        await stream.wait_for(1)
        self.member.api._watch_hub.stopService()
        await wait_until(lambda: stream.ended, timeout=10, what="the stream to end")
        last = stream.results[-1]
        self.assertEqual((last["canceled"], last["cancel_reason"]), (True, "the member is shutting down"))

    async def test_slow_reader_is_cancelled_with_a_reason(self):
        """A client that stops reading: once the socket buffers are full the
        watch buffers, boundedly; past the bound it is cancelled with a
        reason.  What the client then reads is every revision up to some
        point, whole and in order, then the cancel, then the end."""
        stream = await self.watch({"key": b64(b"s/"), "range_end": b64(b"s0")})
        await stream.wait_for(1)
        stream.transport.pauseProducing()
        value = b64(b"x" * 200)
        txn = {"success": [{"request_put": {"key": b64(b"s/%03d" % i), "value": value}} for i in range(128)]}
        first = None
        for _ in range(3000):  # bounded: 3000 txns are 384,000 events, far past the bound
            revision = int((await self.ok("/v3/kv/txn", txn))["header"]["revision"])
            first = first or revision
            if self.member.api.watch_count() == 0:
                break
        self.assertEqual(self.member.api.watch_count(), 0, "the slow watch was never cancelled")
        stream.transport.resumeProducing()
        await wait_until(lambda: stream.ended, timeout=30, what="the slow stream to end")
        *events, last = stream.results[1:]
        self.assertEqual((last["canceled"], "events" in last), (True, False))
        self.assertIn("too slow", last["cancel_reason"])
        revisions = [int(r["header"]["revision"]) for r in events]
        self.assertEqual(revisions, list(range(first, first + len(revisions))))
        self.assertTrue(all(len(r["events"]) == 128 for r in events))
        self.assertLess(revisions[-1], revision)

    async def test_progress_request_and_bad_bodies(self):
        """A progress request alone answers one message of watch -1; a body
        with no request, broken JSON, bad base64 or an unknown filter: 400,
        code 3, no stream."""
        stream = await post_stream(reactor, self.url, "/v3/watch", {"progress_request": {}})
        self.addCleanup(stream.close)
        await wait_until(lambda: stream.ended, timeout=10, what="the progress answer")
        [answer] = stream.results
        self.assertEqual(answer["watch_id"], "-1")
        self.assertHeader(answer["header"], self.member.api.revision)
        for body in ({}, {"create_request": {"key": "%%"}}, {"create_request": {"key": "aw==", "filters": ["BAD"]}},
                     {"create_request": {"key": "aw==", "start_revision": "x"}}):  # fmt: skip
            status, answer = await self.post("/v3/watch", body)
            self.assertEqual((status, answer["code"]), (400, 3), body)
        response, content = await self.request("POST", "/v3/watch", b"nope")
        self.assertEqual((response.code, json.loads(content)["code"]), (400, 3))
        self.assertEqual(self.member.api.watch_count(), 0)


class FragmentRouteTests(V3MemberTestCase):
    """``fragment`` splits a large message where etcd splits it."""

    config_overrides = {"max_request_bytes": 10240}

    async def test_fragments_as_etcd(self):
        """Deleting 90 keys of 7000-byte values, watched with prev_kv and
        fragment: two messages of the same revision, 75 events then 15, the
        first marked ``fragment`` (etcd 3.4.23 with --max-request-bytes
        10240 answers exactly this); without fragment, one message."""
        value = b64(b"x" * 7000)
        for i in range(10, 100):
            await self.ok("/v3/kv/put", {"key": b64(b"f/%d" % i), "value": value})
        create = {"key": b64(b"f/"), "range_end": b64(b"f0"), "prev_kv": True}
        split = await self.watch({**create, "fragment": True})
        whole = await self.watch(create)
        await split.wait_for(1)
        await whole.wait_for(1)
        deleted = await self.ok("/v3/kv/deleterange", {"key": b64(b"f/"), "range_end": b64(b"f0")})
        _, first, second = await split.wait_for(3)
        self.assertEqual((len(first["events"]), first["fragment"]), (75, True))
        self.assertEqual((len(second["events"]), "fragment" in second), (15, False))
        self.assertEqual({first["header"]["revision"], second["header"]["revision"]}, {deleted["header"]["revision"]})
        _, only = await whole.wait_for(2)
        self.assertEqual(len(only["events"]), 90)


class ProgressRouteTests(V3MemberTestCase):
    """``progress_notify`` over HTTP."""

    config_overrides = {"watch_progress_interval": 0.2}

    async def test_progress_notify(self):
        """A watch that asked for progress gets header-only messages at the
        store's revision; one that did not gets none."""
        revision = int((await self.ok("/v3/kv/put", {"key": b64(b"x"), "value": b64(b"1")}))["header"]["revision"])
        asked = await self.watch({"key": b64(b"k"), "progress_notify": True})
        quiet = await self.watch({"key": b64(b"k")})
        _, progress = await asked.wait_for(2)
        self.assertHeader(progress.pop("header"), revision)
        self.assertEqual(progress, {})
        self.assertEqual(len(quiet.messages), 1)
