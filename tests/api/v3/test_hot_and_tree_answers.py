"""The hot channel answers the v3 KV requests byte for byte as the Klein
routes do.

Two in-process members of the same one-member cluster configuration take
the same requests in the same order: one answers them on its hot channel
(``metastore.api.fastpath``), the other with its hot channel off (a
client request rate turns it off), so through the resource tree and
``V3API``'s Klein routes.  Every status, Content-Type and body must be
the same bytes: successes, leases, prev_kv, binary keys and refusals.
(Both paths write the answers' JSON with ``kv_codec.kv_response_json``,
which ``test_kv_json`` holds to ``json.dumps`` of the answers' dicts.)
"""

from __future__ import annotations

import base64
import json

from tests.api.test_rest import SingleMemberTestCase


def b64(data: bytes) -> str:
    """Bytes as the gateway carries them."""
    return base64.b64encode(data).decode()


def body(value) -> bytes:
    """``value`` as a request body (bytes are sent as they are)."""
    return value if isinstance(value, bytes) else json.dumps(value).encode()


REQUESTS = [
    ("/v3/lease/grant", {"TTL": 600, "ID": 77}),
    ("/v3/kv/put", {"key": b64(b"a"), "value": b64(b"1")}),
    ("/v3/kv/put", {"key": b64(b"\0\xff binary"), "value": b64(bytes(range(256))), "lease": "77"}),
    ("/v3/kv/put", {"key": b64(b"a"), "value": "", "prev_kv": True}),
    ("/v3/kv/put", {"key": b64(b"a"), "ignore_value": True, "prevKv": True, "lease": 77}),
    ("/v3/kv/put", {"key": b64(b"a"), "ignore_lease": True, "value": b64(b"2"), "prev_kv": True}),
    ("/v3/kv/put", {"key": b64(b"b"), "value": b64(b"x" * 700), "lease": 9223372036854775807}),
    ("/v3/kv/range", {"key": b64(b"a")}),
    ("/v3/kv/range", {"key": b64(b"a"), "serializable": True}),
    ("/v3/kv/range", {"key": b64(b"\0"), "range_end": b64(b"\0"), "limit": 2}),
    ("/v3/kv/range", {"key": b64(b"a"), "rangeEnd": b64(b"c"), "keys_only": True, "sort_order": "DESCEND"}),
    ("/v3/kv/range", {"key": b64(b"a"), "range_end": b64(b"c"), "count_only": True}),
    ("/v3/kv/range", {"key": b64(b"zz")}),
    ("/v3/kv/range", {"key": b64(b"a"), "revision": 2}),
    ("/v3/kv/range", {"key": b64(b"a"), "revision": 99}),
    ("/v3/kv/deleterange", {"key": b64(b"a"), "prev_kv": True}),
    ("/v3/kv/deleterange", {"key": b64(b"a")}),
    ("/v3/kv/txn", {
        "compare": [{"key": b64(b"\0\xff binary"), "target": "VERSION", "result": "GREATER", "version": 0}],
        "success": [{"request_put": {"key": b64(b"t"), "value": b64(b"1"), "prev_kv": True}},
                    {"request_range": {"key": b64(b"b")}},
                    {"request_txn": {"success": [{"request_delete_range": {"key": b64(b"zz")}}]}}],
    }),  # fmt: skip
    ("/v3/kv/range", b""),
    ("/v3/kv/put", b"{nope"),
    ("/v3/kv/put", b'{"key": "YQ==", "value": NaN}'),
    ("/v3/kv/put", b"[1, 2]"),
    ("/v3/kv/put", {"key": "%%%"}),
    ("/v3/kv/put", {"key": b64(b"k"), "lease": 18446744073709551616}),
    ("/v3/kv/put", {"key": b64(b"k"), "lease": "ten", "value": 5}),
    ("/v3/kv/put", {"key": b64(b"k"), "value": b64(b"v"), "ignore_value": True}),
    ("/v3/kv/put", {"key": b64(b"k"), "lease": 5}),
    ("/v3/kv/put", {"value": b64(b"v")}),
    ("/v3/kv/range", {"key": b64(b"a"), "sort_order": "SIDEWAYS"}),
    ("/v3/kv/deleterange", {"key": b64(b"a"), "prev_kv": "yes"}),
    ("/v3/kv/compaction", {"revision": 3}),
    ("/v3/kv/range", {"key": b64(b"a"), "revision": 2}),
]
"""Successes and refusals of every hot v3 RPC, in an order whose
revisions depend only on the requests."""


class HotAndTreeAnswerTests(SingleMemberTestCase):
    """The same requests to a member with its hot channel and to one without."""

    async def setUp(self):
        self.tree_member = await self.start_member(client_request_rate=1_000_000.0)
        self.tree_url = self.url
        self.hot_member = await self.start_member()
        self.hot_url = self.url

    async def answer(self, url: str, path: str, data: bytes) -> tuple[int, str | None, bytes]:
        """The status, Content-Type and body of one POST to ``url``."""
        self.url = url
        response, content = await self.request("POST", path, data)
        return response.code, self.header(response, "Content-Type"), content

    async def test_same_bytes(self):
        """Every answer of the hot channel is the tree's, byte for byte
        (each member in its own cluster, with the same ids and term)."""
        self.assertIsNotNone(self.hot_member.http.factory.hot_routes)
        self.assertIsNone(self.tree_member.http.factory.hot_routes)
        for path, value in REQUESTS:
            data = body(value)
            tree = await self.answer(self.tree_url, path, data)
            hot = await self.answer(self.hot_url, path, data)
            self.assertEqual(hot, tree, (path, data))
        self.assertNotEqual(tree[0], 200)  # the list ends with a refusal: the compacted revision
