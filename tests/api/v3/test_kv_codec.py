"""The v3 JSON codec: jsonpb's leniency on input, the gateway's shapes on output."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from metastore.api.v3 import kv_codec
from metastore.api.v3.json_fields import BadBody, parse_body
from metastore.facade import KeyValue
from metastore.kv.messages import (
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    ResponseHeader,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)

HEADER = {"cluster_id": "1", "member_id": "2", "revision": "9", "raft_term": "3"}


class RequestDecodingTests(SynchronousTestCase):
    """Requests are read as etcd's gateway reads them."""

    def test_range_fields_in_both_spellings_numbers_and_strings(self):
        """snake_case and lowerCamelCase names, int64 as numbers or decimal
        strings, enums as names or numbers, bytes as base64."""
        snake = kv_codec.range_request({
            "key": "YQ==", "range_end": "Yg==", "limit": "2", "revision": 7, "sort_order": "DESCEND",
            "sort_target": 3, "serializable": True, "keys_only": True, "count_only": False,
            "min_mod_revision": "1", "max_mod_revision": 8, "min_create_revision": 2, "max_create_revision": "5",
        })  # fmt: skip
        camel = kv_codec.range_request({
            "key": "YQ==", "rangeEnd": "Yg==", "limit": 2, "revision": "7", "sortOrder": 2, "sortTarget": "MOD",
            "serializable": True, "keysOnly": True, "minModRevision": 1, "maxModRevision": "8",
            "minCreateRevision": "2", "maxCreateRevision": 5,
        })  # fmt: skip
        expected = RangeRequest(b"a", b"b", 2, 7, SortOrder.DESCEND, SortTarget.MOD, True, True, False, 1, 8, 2, 5)
        self.assertEqual(snake, expected)
        self.assertEqual(camel, expected)

    def test_absent_and_null_fields_are_zero(self):
        """A missing or null field has its zero value; unknown fields are ignored."""
        self.assertEqual(kv_codec.range_request({"key": None, "whatever": [1]}), RangeRequest(b""))
        self.assertEqual(kv_codec.put_request({"key": "YQ==", "lease": "0"}), PutRequest(b"a"))

    def test_exact_64_bit_integers(self):
        """int64 values beyond 2**53 stay exact; values out of range are refused."""
        self.assertEqual(kv_codec.put_request({"key": "YQ==", "lease": 2**62 + 1}).lease, 2**62 + 1)
        self.assertEqual(kv_codec.put_request({"key": "YQ==", "lease": str(2**63 - 1)}).lease, 2**63 - 1)
        for bad in (2**63, "9223372036854775808", 1.5, "1.0", "", True, [1]):
            self.assertRaises(BadBody, kv_codec.put_request, {"key": "YQ==", "lease": bad})

    def test_bad_field_types_are_refused(self):
        """Wrong JSON types, bad base64 and unknown enum names are ``BadBody``."""
        bad = [
            {"key": 5}, {"key": "not base64!"}, {"key": "YQ"}, {"key": "YQ==", "serializable": "true"},
            {"key": "YQ==", "sort_order": "SIDEWAYS"}, {"key": "YQ==", "sort_target": 9},
        ]  # fmt: skip
        for body in bad:
            self.assertRaises(BadBody, kv_codec.range_request, body)

    def test_body_parsing(self):
        """Any body is JSON; empty is {}; a non-object or broken JSON is ``BadBody``."""
        self.assertEqual(parse_body(b""), {})
        self.assertEqual(parse_body(b' {"key": "YQ=="} '), {"key": "YQ=="})
        for bad in (b"{", b"[]", b"1", b"\xff\xfe", b'{"key": }'):
            self.assertRaises(BadBody, parse_body, bad)

    def test_txn_with_every_op_and_compare_operand(self):
        """A txn's compares read their operand from the field their target
        names (another field compares as zero); ops nest."""
        txn = kv_codec.txn_request({
            "compare": [
                {"key": "YQ==", "target": "VALUE", "result": "NOT_EQUAL", "value": "MQ=="},
                {"key": "YQ==", "target": "CREATE", "result": 1, "value": "MQ=="},
                {"key": "YQ==", "range_end": "Yg==", "target": "MOD", "mod_revision": "4"},
            ],
            "success": [{"request_put": {"key": "YQ==", "value": "eA=="}}, {"request_delete_range": {"key": "Yg=="}}],
            "failure": [{"request_txn": {"success": [{"request_range": {"key": "YQ=="}}]}}],
        })  # fmt: skip
        value, create, mod = txn.compare
        self.assertEqual((value.target, value.result, value.operand), (CompareTarget.VALUE, CompareResult.NOT_EQUAL, b"1"))
        self.assertEqual((create.target, create.result, create.operand), (CompareTarget.CREATE, CompareResult.GREATER, 0))
        self.assertEqual((mod.operand, mod.range_end, mod.result), (4, b"b", CompareResult.EQUAL))
        self.assertEqual(txn.success, (PutRequest(b"a", b"x"), DeleteRangeRequest(b"b")))
        self.assertEqual(txn.failure, (TxnRequest((), (RangeRequest(b"a"),)),))

    def test_bad_txn_ops_are_refused(self):
        """An op that is not an object or names no operation is ``BadBody``."""
        for body in ({"success": [1]}, {"success": [{}]}, {"compare": "x"}, {"compare": [3]}):
            self.assertRaises(BadBody, kv_codec.txn_request, body)


class ResponseEncodingTests(SynchronousTestCase):
    """Responses are written as the gateway writes them."""

    def test_zero_values_are_left_out(self):
        """An empty value, lease 0, count 0, more false, no kvs: all absent."""
        kv = KeyValue(b"k", b"", 3, 4, 2)
        self.assertEqual(
            kv_codec.key_value(kv), {"key": "aw==", "create_revision": "3", "mod_revision": "4", "version": "2"}
        )
        self.assertEqual(kv_codec.range_response(RangeResponse(ResponseHeader(9)), HEADER), {"header": HEADER})
        self.assertEqual(kv_codec.delete_range_response(DeleteRangeResponse(ResponseHeader(9)), HEADER), {"header": HEADER})
        self.assertEqual(kv_codec.txn_response(TxnResponse(ResponseHeader(9)), HEADER), {"header": HEADER})

    def test_range_with_64_bit_strings(self):
        """Counts, revisions and leases are decimal strings; bytes base64."""
        kv = KeyValue(b"k", b"v", 3, 4, 1, 2**62)
        answer = kv_codec.range_response(RangeResponse(ResponseHeader(9), (kv,), True, 5), HEADER)
        self.assertEqual(answer, {
            "header": HEADER,
            "kvs": [{"key": "aw==", "create_revision": "3", "mod_revision": "4", "version": "1", "value": "dg==",
                     "lease": str(2**62)}],
            "more": True,
            "count": "5",
        })  # fmt: skip

    def test_txn_nested_headers(self):
        """Ops inside a txn carry only their revision; a nested txn's header
        is present and empty."""
        nested = TxnResponse(None, True, (PutResponse(ResponseHeader(9)),))
        answer = kv_codec.txn_response(TxnResponse(ResponseHeader(9), True, (nested,)), HEADER)
        self.assertEqual(answer, {
            "header": HEADER,
            "succeeded": True,
            "responses": [{"response_txn": {"header": {}, "succeeded": True,
                                            "responses": [{"response_put": {"header": {"revision": "9"}}}]}}],
        })  # fmt: skip

    def test_put_prev_kv(self):
        """``prev_kv`` appears only when there is one."""
        kv = KeyValue(b"k", b"v", 3, 3, 1)
        self.assertNotIn("prev_kv", kv_codec.put_response(PutResponse(ResponseHeader(9)), HEADER))
        self.assertEqual(kv_codec.put_response(PutResponse(ResponseHeader(9), kv), HEADER)["prev_kv"]["value"], "dg==")
