"""The seed REST API, served by a real member over loopback TCP.

Each test starts a single-member cluster in this process (real WAL in a
temporary directory, real fsync thread, real HTTP listener on a free
port) and talks to it with treq.
"""

from __future__ import annotations

import errno
import json

import treq
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from metastore.config import Config
from metastore.kv.messages import CompactionRequest
from metastore.service import open_member
from tests.process import wait_until


class SingleMemberTestCase(TestCase):
    """Starts one member; ``self.url`` is its base URL."""

    config_overrides: dict = {}

    async def start_member(self, fsync=None, **overrides):
        """Start a member on a free port and wait until it leads."""
        config = Config(
            cluster=("http://127.0.0.1:0",),
            port=0,
            data_dir=self.mktemp(),
            **{**self.config_overrides, **overrides},
        ).validate()
        kwargs = {"fsync": fsync} if fsync is not None else {}
        member = open_member(config, reactor, **kwargs)
        member.startService()
        self.addCleanup(member.stopService)
        port = await member.http.listening
        self.url = f"http://127.0.0.1:{port.getHost().port}"
        self.member = member
        await wait_until(lambda: member.node.is_leader, timeout=10, what="the member to lead")
        return member

    async def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        """``(response, body bytes)`` for one request on a fresh connection."""
        response = await treq.request(method, self.url + path, data=body, headers=headers, persistent=False)
        content = await treq.content(response)
        return response, content

    def header(self, response, name: str) -> str | None:
        """The first value of a response header, or None."""
        values = response.headers.getRawHeaders(name)
        return values[0] if values else None


class KeyValueTests(SingleMemberTestCase):
    """PUT, GET and DELETE of keys."""

    async def setUp(self):
        await self.start_member()

    async def test_put_and_get_key_value(self):
        """A value PUT under a key is what GET returns (the original's test)."""
        response, _ = await self.request("PUT", "/test-key", b"test-value")
        self.assertEqual(response.code, 204)
        response, body = await self.request("GET", "/test-key")
        self.assertEqual((response.code, body), (200, b"test-value"))

    async def test_get_absent_key_is_404_with_json_reason(self):
        """A key never written answers 404 and a JSON body naming the error."""
        response, body = await self.request("GET", "/nope")
        self.assertEqual(response.code, 404)
        self.assertEqual(json.loads(body)["error"], "not_found")

    async def test_revision_headers(self):
        """GET carries the ETag (mod_revision) and etcd's per-key metadata."""
        await self.request("PUT", "/k", b"1")
        put, _ = await self.request("PUT", "/k", b"2")
        response, _ = await self.request("GET", "/k")
        self.assertEqual(self.header(response, "ETag"), '"3"')
        self.assertEqual(self.header(put, "ETag"), '"3"')
        self.assertEqual(self.header(response, "X-MetaStore-Create-Revision"), "2")
        self.assertEqual(self.header(response, "X-MetaStore-Version"), "2")
        self.assertEqual(self.header(response, "X-MetaStore-Revision"), "3")

    async def test_binary_keys_and_values(self):
        """Any bytes are a key (percent-encoded in the path) and a value."""
        value = bytes(range(256)) * 3
        path = "/" + "".join(f"%{b:02X}" for b in (0, 0xFF, 0x2F, 0xC3, 0x28, 0x20))
        response, _ = await self.request("PUT", path, value)
        self.assertEqual(response.code, 204)
        response, body = await self.request("GET", path)
        self.assertEqual((response.code, body), (200, value))
        response, _ = await self.request("GET", "/%00%FF")
        self.assertEqual(response.code, 404)

    async def test_slash_in_key(self):
        """``/a/b`` and ``/a%2Fb`` name the same key ``a/b``."""
        await self.request("PUT", "/a/b", b"x")
        response, body = await self.request("GET", "/a%2Fb")
        self.assertEqual(body, b"x")

    async def test_empty_value(self):
        """An empty body stores an empty value, which still exists."""
        await self.request("PUT", "/empty", b"")
        response, body = await self.request("GET", "/empty")
        self.assertEqual((response.code, body), (200, b""))

    async def test_delete(self):
        """DELETE removes a key (204); deleting an absent key is 404."""
        await self.request("PUT", "/gone", b"x")
        response, _ = await self.request("DELETE", "/gone")
        self.assertEqual(response.code, 204)
        response, _ = await self.request("GET", "/gone")
        self.assertEqual(response.code, 404)
        response, _ = await self.request("DELETE", "/gone")
        self.assertEqual(response.code, 404)

    async def test_read_at_past_revisions(self):
        """``?revision=N`` answers the key as it was at N: its value then, or
        404 when it did not exist; a future revision is 400 with etcd's message."""
        await self.request("PUT", "/h", b"1")
        await self.request("PUT", "/h", b"2")
        await self.request("DELETE", "/h")
        for revision, expected in ((2, (200, b"1")), (3, (200, b"2"))):
            response, body = await self.request("GET", f"/h?revision={revision}")
            self.assertEqual((response.code, body), expected)
        response, body = await self.request("GET", "/h?revision=3")
        self.assertEqual(self.header(response, "X-MetaStore-Mod-Revision"), "3")
        response, body = await self.request("GET", "/h?revision=4")
        self.assertEqual(response.code, 404)
        response, body = await self.request("GET", "/h?revision=5")
        self.assertEqual(response.code, 400)
        self.assertEqual(
            json.loads(body),
            {"error": "future_revision", "message": "etcdserver: mvcc: required revision is a future revision"},
        )
        response, body = await self.request("GET", "/h?revision=two")
        self.assertEqual((response.code, json.loads(body)["error"]), (400, "bad_revision"))

    async def test_compacted_revision_is_400(self):
        """Below the compacted revision a read is refused with etcd's message;
        at it, it is answered."""
        for value in (b"1", b"2", b"3"):
            await self.request("PUT", "/c", value)
        await self.member.node.propose(CompactionRequest(3))
        response, body = await self.request("GET", "/c?revision=2")
        self.assertEqual(response.code, 400)
        self.assertEqual(
            json.loads(body),
            {"error": "compacted", "message": "etcdserver: mvcc: required revision has been compacted"},
        )
        response, body = await self.request("GET", "/c?revision=3")
        self.assertEqual((response.code, body), (200, b"2"))
        response, body = await self.request("GET", "/?list&revision=2")
        self.assertEqual((response.code, json.loads(body)["error"]), (400, "compacted"))

    async def test_list_a_prefix(self):
        """``GET /{prefix}?list`` lists the keys under the prefix in key
        order with values and revisions; ``limit`` sets ``more``; a value
        that is not UTF-8 comes as base64; ``GET /?list`` lists every key."""
        await self.request("PUT", "/p/b", b"2")
        await self.request("PUT", "/p/a", b"1")
        await self.request("PUT", "/q", b"\xff\x00")
        response, body = await self.request("GET", "/p/?list")
        self.assertEqual((response.code, self.header(response, "Content-Type")), (200, "application/json"))
        self.assertEqual(
            json.loads(body),
            {
                "revision": 4,
                "count": 2,
                "more": False,
                "kvs": [
                    {"key": "p/a", "value": "1", "create_revision": 3, "mod_revision": 3, "version": 1, "lease": 0},
                    {"key": "p/b", "value": "2", "create_revision": 2, "mod_revision": 2, "version": 1, "lease": 0},
                ],
            },
        )
        response, body = await self.request("GET", "/p/?list&limit=1")
        listed = json.loads(body)
        self.assertEqual(([kv["key"] for kv in listed["kvs"]], listed["more"], listed["count"]), (["p/a"], True, 2))
        response, body = await self.request("GET", "/?list")
        listed = json.loads(body)
        self.assertEqual([kv["key"] for kv in listed["kvs"]], ["p/a", "p/b", "q"])
        self.assertEqual(listed["kvs"][2]["value_base64"], "/wA=")
        response, body = await self.request("GET", "/p/?list&revision=2")
        self.assertEqual([kv["key"] for kv in json.loads(body)["kvs"]], ["p/b"])
        response, body = await self.request("GET", "/p/?list&limit=-1")
        self.assertEqual((response.code, json.loads(body)["error"]), (400, "bad_limit"))

    async def test_serializable_read(self):
        """``?serializable=true`` reads local state."""
        await self.request("PUT", "/s", b"v")
        response, body = await self.request("GET", "/s?serializable=true")
        self.assertEqual((response.code, body), (200, b"v"))

    async def test_concurrent_puts_all_acknowledged_and_applied(self):
        """Many concurrent writes (sharing fsyncs) are all acknowledged and readable."""
        puts = [self.request("PUT", f"/c{i}", b"%d" % i) for i in range(100)]
        responses = await defer.gatherResults([defer.ensureDeferred(p) for p in puts])
        self.assertEqual({r.code for r, _ in responses}, {204})
        for i in range(100):
            _, body = await self.request("GET", f"/c{i}?serializable=true")
            self.assertEqual(body, b"%d" % i)


class ConditionalWriteTests(SingleMemberTestCase):
    """Compare-and-swap with If-Match and If-None-Match."""

    async def setUp(self):
        await self.start_member()

    async def test_if_match_current_revision_succeeds(self):
        """PUT with If-Match of the current ETag writes."""
        put, _ = await self.request("PUT", "/cas", b"1")
        response, _ = await self.request("PUT", "/cas", b"2", {"If-Match": [self.header(put, "ETag")]})
        self.assertEqual(response.code, 204)
        _, body = await self.request("GET", "/cas")
        self.assertEqual(body, b"2")

    async def test_if_match_stale_revision_is_412(self):
        """PUT with a stale ETag fails with 412 and changes nothing."""
        first, _ = await self.request("PUT", "/cas", b"1")
        await self.request("PUT", "/cas", b"2")
        response, body = await self.request("PUT", "/cas", b"3", {"If-Match": [self.header(first, "ETag")]})
        self.assertEqual(response.code, 412)
        self.assertEqual(json.loads(body)["error"], "precondition_failed")
        self.assertEqual(self.header(response, "ETag"), '"3"')
        _, value = await self.request("GET", "/cas")
        self.assertEqual(value, b"2")

    async def test_if_none_match_star_creates_only_once(self):
        """If-None-Match: * writes only when the key is absent."""
        first, _ = await self.request("PUT", "/once", b"a", {"If-None-Match": ["*"]})
        second, _ = await self.request("PUT", "/once", b"b", {"If-None-Match": ["*"]})
        self.assertEqual((first.code, second.code), (204, 412))
        _, value = await self.request("GET", "/once")
        self.assertEqual(value, b"a")

    async def test_if_match_star_requires_existence(self):
        """If-Match: * writes only when the key exists."""
        response, _ = await self.request("PUT", "/absent", b"a", {"If-Match": ["*"]})
        self.assertEqual(response.code, 412)

    async def test_conditional_delete(self):
        """DELETE honours If-Match."""
        put, _ = await self.request("PUT", "/d", b"a")
        stale, _ = await self.request("DELETE", "/d", headers={"If-Match": ['"1"']})
        fresh, _ = await self.request("DELETE", "/d", headers={"If-Match": [self.header(put, "ETag")]})
        self.assertEqual((stale.code, fresh.code), (412, 204))

    async def test_malformed_condition_is_400(self):
        """An If-Match that is no revision, or both headers, is a 400."""
        bad, _ = await self.request("PUT", "/k", b"a", {"If-Match": ["banana"]})
        both, _ = await self.request("PUT", "/k", b"a", {"If-Match": ['"2"'], "If-None-Match": ["*"]})
        self.assertEqual((bad.code, both.code), (400, 400))
        response, _ = await self.request("GET", "/k")
        self.assertEqual(response.code, 404)


class BadInputTests(SingleMemberTestCase):
    """Bad requests get clear 4xx answers and damage nothing stored."""

    config_overrides = {"max_request_bytes": 4096}

    async def setUp(self):
        await self.start_member()
        await self.request("PUT", "/keep", b"kept")

    async def assertKeptIntact(self):
        response, body = await self.request("GET", "/keep")
        self.assertEqual((response.code, body), (200, b"kept"))

    async def test_empty_key_is_400(self):
        """PUT / has no key: 400."""
        response, body = await self.request("PUT", "/", b"v")
        self.assertEqual(response.code, 400)
        self.assertEqual(json.loads(body)["error"], "empty_key")
        await self.assertKeptIntact()

    async def test_key_over_limit_is_413(self):
        """A 1,537-byte key is refused with 413; 1,536 bytes is fine."""
        response, _ = await self.request("PUT", "/" + "k" * 1537, b"v")
        self.assertEqual(response.code, 413)
        response, _ = await self.request("PUT", "/" + "k" * 1536, b"v")
        self.assertEqual(response.code, 204)

    async def test_huge_key_or_header_is_431_with_a_reason(self):
        """A 20 KB key (or header) is over the 16 KiB request head: 431 with
        a JSON reason, not a dropped connection; the member keeps serving."""
        response, body = await self.request("PUT", "/" + "k" * 20000, b"v")
        self.assertEqual((response.code, json.loads(body)["error"]), (431, "request_head_too_large"))
        response, body = await self.request("GET", "/keep", headers={"X-Big": ["x" * 20000]})
        self.assertEqual(response.code, 431)
        await self.assertKeptIntact()

    async def test_body_over_limit_is_413_and_stores_nothing(self):
        """A body over --max-request-bytes is 413 and the old value stays."""
        response, body = await self.request("PUT", "/keep", b"x" * 5000)
        self.assertEqual(response.code, 413)
        self.assertEqual(json.loads(body)["error"], "body_too_large")
        await self.assertKeptIntact()

    async def test_wrong_method_is_405_with_allow(self):
        """POST on a key and PATCH anywhere: 405 with an Allow header."""
        post, _ = await self.request("POST", "/keep", b"v")
        patch, _ = await self.request("PATCH", "/keep", b"v")
        self.assertEqual((post.code, patch.code), (405, 405))
        self.assertEqual(self.header(post, "Allow"), "GET, HEAD, PUT, DELETE")
        await self.assertKeptIntact()

    async def test_bad_member_operations(self):
        """POST /{id} needs a peer URL and a new id; DELETE /{id} a known one."""
        garbage, body = await self.request("POST", "/2", b"not a url")
        self.assertEqual((garbage.code, json.loads(body)["error"]), (400, "bad_peer_url"))
        binary, _ = await self.request("POST", "/2", b"\xff\xfe")
        self.assertEqual(binary.code, 400)
        existing, body = await self.request("POST", "/1", b"http://127.0.0.1:9021")
        self.assertEqual((existing.code, json.loads(body)["error"]), (409, "member_exists"))
        unknown, body = await self.request("DELETE", "/9")
        self.assertEqual((unknown.code, json.loads(body)["error"]), (404, "no_such_member"))
        await self.assertKeptIntact()

    async def test_reserved_prefixes_are_not_keys(self):
        """/v3/…, /admin/…, /metrics are reserved: never keys (404; 405 for a method other
        than POST to a v3 RPC, as etcd, or than GET to /metrics), and nothing is stored."""
        for path, status in (("/v3/kv/put", 405), ("/v3/nothing", 405), ("/admin/nothing-here", 404), ("/metrics", 405)):
            response, body = await self.request("PUT", path, b"v")
            self.assertEqual(response.code, status, path)
            self.assertTrue(json.loads(body)["error"], path)
        self.assertEqual(self.member.node.store.revision, 2)

    async def test_admin_status_and_members(self):
        """/admin/status and /admin/members describe this one-member cluster."""
        # Publishing the client URL is a proposal of its own: let it apply first.
        await wait_until(lambda: self.member.node.membership.members[1].client_url, timeout=10, what="the client URL published")
        status, body = await self.request("GET", "/admin/status")
        document = json.loads(body)
        self.assertEqual((status.code, document["role"], document["leader"]), (200, "leader", 1))
        members, body = await self.request("GET", "/admin/members")
        [me] = json.loads(body)["members"]
        self.assertEqual((me["id"], me["is_leader"], me["applied_index"]), (1, True, document["applied_index"]))
        self.assertEqual((me["term"], me["role"], me["healthy"]), (document["term"], "leader", True))

    async def test_health_and_version(self):
        """/health reports a healthy leader; /version names the version."""
        health, body = await self.request("GET", "/health")
        self.assertEqual((health.code, json.loads(body)["health"]), (200, "true"))
        version, body = await self.request("GET", "/version")
        self.assertIn("metastore", json.loads(body))


class DiskFailureTests(SingleMemberTestCase):
    """A write that cannot be fsynced is never acknowledged."""

    async def test_fsync_failure_is_503_and_old_data_stays_readable(self):
        """With the disk full, PUT is 503; earlier writes still read; health is 503."""
        disk = {"full": False}

        def fsync(fd):
            if disk["full"]:
                raise OSError(errno.ENOSPC, "No space left on device")

        await self.start_member(fsync=fsync)
        await self.request("PUT", "/before", b"safe")
        disk["full"] = True
        response, body = await self.request("PUT", "/after", b"lost")
        self.assertEqual(response.code, 503)
        self.assertEqual(json.loads(body)["error"], "storage_failed")
        self.assertIsNotNone(self.header(response, "Retry-After"))
        response, body = await self.request("GET", "/before")
        self.assertEqual((response.code, body), (200, b"safe"))
        response, _ = await self.request("GET", "/after?serializable=true")
        self.assertEqual(response.code, 404)
        health, _ = await self.request("GET", "/health")
        self.assertEqual(health.code, 503)
        again, _ = await self.request("PUT", "/later", b"x")
        self.assertEqual(again.code, 503)
