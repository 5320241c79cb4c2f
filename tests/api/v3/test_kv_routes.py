"""The v3 KV routes on a real in-process member over HTTP: etcd's shapes,
its error bodies, the prefixes older clients use, and /version."""

from __future__ import annotations

import base64
import json

from tests.api.test_rest import SingleMemberTestCase


def b64(data: bytes) -> str:
    """Bytes as the gateway carries them."""
    return base64.b64encode(data).decode()


class KVRouteTests(SingleMemberTestCase):
    """``/v3/kv/*`` on one member."""

    config_overrides = {"max_request_bytes": 4096}

    async def setUp(self):
        await self.start_member()

    async def post(self, path: str, body, headers=None) -> tuple[int, dict]:
        """POST ``body`` (bytes, or JSON) and return the status and the JSON answer."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response, content = await self.request("POST", path, data, headers)
        self.assertEqual(self.header(response, "Content-Type"), "application/json", content)
        return response.code, json.loads(content)

    async def test_put_then_range_in_every_prefix(self):
        """A put answers a header at its revision; the range sees it under
        /v3, /v3beta and /v3alpha, with the member's ids in the header."""
        status, put = await self.post("/v3/kv/put", {"key": b64(b"k"), "value": b64(b"v")})
        self.assertEqual(status, 200)
        self.assertEqual(set(put), {"header"})
        header = put["header"]
        self.assertEqual(header["member_id"], str(self.member.api.member_id))
        self.assertEqual(set(header), {"cluster_id", "member_id", "revision", "raft_term"})
        for prefix in ("/v3", "/v3beta", "/v3alpha"):
            status, found = await self.post(prefix + "/kv/range", {"key": b64(b"k")})
            self.assertEqual(status, 200)
            self.assertEqual(found["kvs"], [{"key": b64(b"k"), "value": b64(b"v"), "version": "1",
                                             "create_revision": header["revision"],
                                             "mod_revision": header["revision"]}])
            self.assertEqual(found["count"], "1")

    async def test_txn_without_content_type(self):
        """etcd3gw posts txns with no Content-Type: the body is JSON anyway."""
        body = json.dumps({
            "compare": [{"key": b64(b"t"), "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
            "success": [{"request_put": {"key": b64(b"t"), "value": b64(b"1")}}],
        }).encode()  # fmt: skip
        response, content = await self.request("POST", "/v3/kv/txn", body)
        self.assertEqual(response.code, 200, content)
        self.assertIs(json.loads(content)["succeeded"], True)
        status, again = await self.post("/v3/kv/txn", body)
        self.assertEqual((status, "succeeded" in again), (200, False))

    async def test_bad_bodies_get_etcds_error_shape(self):
        """Broken JSON, bad base64 and wrong types: 400, code 3; an empty key
        gets etcd's words."""
        for body in (b"{nope", {"key": "%%%"}, {"key": b64(b"k"), "limit": "ten"}, {"key": b64(b"k"), "keys_only": 1}):
            status, answer = await self.post("/v3/kv/range", body)
            self.assertEqual((status, answer["code"]), (400, 3), body)
            self.assertEqual(set(answer), {"error", "code", "message"})
        self.assertEqual(await self.post("/v3/kv/range", b""), (400, {
            "error": "etcdserver: key is not provided", "code": 3, "message": "etcdserver: key is not provided"}))

    async def test_request_too_large(self):
        """A body over --max-request-bytes is etcd's "request is too large"."""
        status, answer = await self.post("/v3/kv/put", {"key": b64(b"k"), "value": b64(b"x" * 8000)})
        self.assertEqual((status, answer["error"], answer["code"]), (400, "etcdserver: request is too large", 3))

    async def test_future_revision_and_compaction(self):
        """Ranges past the store's revision and compactions below it give code 11."""
        _, put = await self.post("/v3/kv/put", {"key": b64(b"k"), "value": b64(b"1")})
        revision = int(put["header"]["revision"])
        status, answer = await self.post("/v3/kv/range", {"key": b64(b"k"), "revision": revision + 5})
        self.assertEqual((status, answer["code"]), (400, 11))
        status, answer = await self.post("/v3/kv/compaction", {"revision": revision, "physical": True})
        self.assertEqual((status, answer["header"]["revision"]), (200, str(revision)))
        status, answer = await self.post("/v3/kv/compaction", {"revision": revision})
        self.assertEqual((status, answer["error"]), (400, "etcdserver: mvcc: required revision has been compacted"))

    async def test_routing_errors_are_json(self):
        """An unknown v3 path is 404 and a GET on an RPC 405, both JSON."""
        status, answer = await self.post("/v3/kv/nothing", {})
        self.assertEqual((status, answer["code"]), (404, 5))
        response, content = await self.request("GET", "/v3/kv/range")
        self.assertEqual(response.code, 405)
        self.assertEqual(json.loads(content)["code"], 12)

    async def test_version(self):
        """/version names an etcd 3.4 release (plain digits) and MetaStore's own."""
        response, content = await self.request("GET", "/version")
        document = json.loads(content)
        self.assertEqual((document["etcdserver"], document["etcdcluster"]), ("3.4.23", "3.4.0"))
        self.assertIn("metastore", document)
