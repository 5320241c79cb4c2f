"""The differential test's request generator and answer comparison, without
any server: seeds replay, the sequence covers what issue 12 lists, and the
comparison ignores exactly the ids that differ between clusters."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from tests.api.v3requests import RequestGenerator, avoid_etcd_panics, b64, comparable, prefix_end, served_locally


def sequence(seed: int, count: int, **options) -> list:
    """``count`` requests of ``seed``, fed a reference whose revision grows
    by one per write and that refuses compactions beyond it."""
    generator = RequestGenerator(seed, **options)
    requests = []
    for _ in range(count):
        request = generator.next()
        requests.append(request)
        if request.path == "/v3/kv/compaction":
            if int(request.body["revision"]) > generator.revision:
                generator.observe(request, 400, {"code": 11})
                continue
            generator.observe(request, 200, {"header": {"revision": str(generator.revision)}})
        else:
            generator.observe(request, 200, {"header": {"revision": str(generator.revision + request.writes)}})
    return requests


def walk(value):
    """Every dict inside a request body, the body included."""
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


class PrefixEndTests(SynchronousTestCase):
    """``prefix_end`` is etcd's rule for a prefix's range_end."""

    def test_increments_last_byte(self):
        """The last byte below 0xff is incremented and what follows it is cut."""
        self.assertEqual(prefix_end(b"a"), b"b")
        self.assertEqual(prefix_end(b"a/"), b"a0")
        self.assertEqual(prefix_end(b"a\xff"), b"b")

    def test_all_ff_means_every_key_from_there(self):
        """A prefix of only 0xff bytes has the range_end ``\\0``."""
        self.assertEqual(prefix_end(b"\xff\xff"), b"\0")


class GeneratorTests(SynchronousTestCase):
    """The generator replays a seed and covers the API of issue 12."""

    def test_same_seed_same_sequence(self):
        """A seed fed the same answers gives the same requests."""
        self.assertEqual(sequence(5, 300), sequence(5, 300))
        self.assertNotEqual(sequence(5, 300), sequence(6, 300))

    def test_covers_the_listed_fields(self):
        """One seed's 2000 requests use every path and option the issue lists."""
        requests = sequence(1, 2000)
        paths = {r.path for r in requests}
        self.assertEqual(paths, {f"/v3/kv/{k}" for k in ("range", "put", "deleterange", "txn", "compaction")})
        fields = {key for r in requests for d in walk(r.body) for key in d}
        for name in (
            "range_end", "limit", "revision", "sort_order", "sort_target", "keys_only", "count_only",
            "serializable", "min_mod_revision", "max_mod_revision", "min_create_revision", "max_create_revision",
            "prev_kv", "ignore_value", "ignore_lease", "lease", "physical", "compare", "success", "failure",
            "request_range", "request_put", "request_delete_range", "request_txn",
        ):
            self.assertIn(name, fields)
        compares = [d for r in requests for d in walk(r.body) if "target" in d]
        targets = {d["target"] for d in compares}
        results = {d["result"] for d in compares}
        self.assertTrue({"VERSION", "CREATE", "MOD", "VALUE", "LEASE", 0, 1, 2, 3, 4} <= targets, targets)
        self.assertTrue({"EQUAL", "GREATER", "LESS", "NOT_EQUAL", 0, 1, 2, 3} <= results, results)
        range_ends = {d.get("range_end") for r in requests for d in walk(r.body)}
        self.assertIn(b64(b"\0"), range_ends)
        self.assertIn(b64(prefix_end(b"a/")), range_ends)

    def test_asks_for_compacted_and_future_revisions(self):
        """Ranges ask for revisions below the compacted one and above the current one."""
        generator = RequestGenerator(3)
        generator.revision, generator.compacted = 100, 50
        revisions = []
        for _ in range(3000):
            request = generator.next()
            if request.path == "/v3/kv/range" and "revision" in request.body:
                revisions.append(int(request.body["revision"]))
        self.assertTrue(any(r < 50 for r in revisions))
        self.assertTrue(any(r > 100 for r in revisions))
        self.assertTrue(any(50 <= r <= 100 for r in revisions))

    def test_valid_revisions_in_txn(self):
        """With ``valid_revisions_in_txn`` no txn range names a compacted or future revision."""
        generator = RequestGenerator(4, valid_revisions_in_txn=True)
        generator.revision, generator.compacted = 100, 50
        for _ in range(3000):
            request = generator.next()
            if request.path == "/v3/kv/txn":
                for d in walk(request.body):
                    if "revision" in d:
                        self.assertTrue(50 <= int(d["revision"]) <= 100, d)


class LocalServingTests(SynchronousTestCase):
    """``served_locally`` follows etcd's rule for reads without a linearizable read."""

    def test_rules(self):
        """Serializable ranges, and txns of serializable ranges only or of no ops."""
        serializable = {"request_range": {"key": "YQ==", "serializable": True}}
        self.assertTrue(served_locally("range", {"key": "YQ==", "serializable": True}))
        self.assertFalse(served_locally("range", {"key": "YQ=="}))
        self.assertTrue(served_locally("txn", {"compare": [{"key": "YQ=="}]}))
        self.assertTrue(served_locally("txn", {"success": [serializable], "failure": [serializable]}))
        self.assertFalse(served_locally("txn", {"success": [serializable, {"request_range": {"key": "YQ=="}}]}))
        self.assertFalse(served_locally("txn", {"success": [{"request_txn": {}}]}))
        self.assertFalse(served_locally("put", {"key": "YQ==", "serializable": True}))


class AvoidEtcdPanicsTests(SynchronousTestCase):
    """Txns that crash etcd 3.4.23 are changed into ones it survives."""

    def test_no_lease_in_nested_put(self):
        """A nested put loses its lease; a top-level one keeps it."""
        txn = {"success": [
            {"request_put": {"key": "YQ==", "lease": 7}},
            {"request_txn": {"success": [{"request_put": {"key": "Yg==", "lease": 7}}]}},
        ]}
        avoid_etcd_panics(txn)
        self.assertEqual(txn["success"][0]["request_put"]["lease"], 7)
        self.assertNotIn("lease", txn["success"][1]["request_txn"]["success"][0]["request_put"])

    def test_no_ignore_flags_beside_a_delete_to_the_end(self):
        """With a ``\\0``-ended delete in the txn, puts lose ignore_value and ignore_lease."""
        put = {"key": "YQ==", "ignore_value": True, "ignore_lease": True, "value": "eA=="}
        txn = {"success": [{"request_delete_range": {"key": "YQ==", "range_end": "AA=="}}],
               "failure": [{"request_put": put}]}
        avoid_etcd_panics(txn)
        self.assertEqual(put, {"key": "YQ=="})


class ComparableTests(SynchronousTestCase):
    """Answers are equal when they differ only in ids of the cluster."""

    def answer(self, header: dict, **fields) -> bytes:
        return json.dumps({"header": header, **fields}).encode()

    def test_ignores_cluster_member_and_term(self):
        """cluster_id, member_id and raft_term are not compared; revision is."""
        one = self.answer({"cluster_id": "1", "member_id": "2", "revision": "5", "raft_term": "2"}, count="1")
        two = self.answer({"cluster_id": "9", "member_id": "8", "revision": "5", "raft_term": "7"}, count="1")
        later = self.answer({"cluster_id": "1", "member_id": "2", "revision": "6", "raft_term": "2"}, count="1")
        self.assertEqual(comparable(200, "application/json", one), comparable(200, "application/json", two))
        self.assertNotEqual(comparable(200, "application/json", one), comparable(200, "application/json", later))

    def test_status_fields_and_text(self):
        """The status and every other field count; non-JSON bodies compare as text with their type."""
        body = self.answer({"revision": "5"}, count="1")
        self.assertNotEqual(comparable(200, "application/json", body), comparable(400, "application/json", body))
        self.assertNotEqual(
            comparable(200, "application/json", body),
            comparable(200, "application/json", self.answer({"revision": "5"}, count="1", more=True)),
        )
        self.assertEqual(comparable(404, "text/plain; charset=utf-8", b"Not Found"), (404, "text/plain", "Not Found"))
        self.assertNotEqual(
            comparable(404, "text/plain", b"Not Found"), comparable(404, "application/json", b"Not Found")
        )

