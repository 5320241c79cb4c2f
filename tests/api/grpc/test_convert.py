"""Protobuf to ``metastore.kv.messages`` and back, field by field."""

from __future__ import annotations

import dataclasses

import grpc
from twisted.trial.unittest import SynchronousTestCase

from metastore.api.grpc import convert
from metastore.api.grpc.proto import rpc_pb2
from metastore.api.grpc.status import EtcdStatus, status_of
from metastore.kv import messages as m
from metastore.storage.engine import KeyValue

STAMP = convert.HeaderStamp(cluster_id=7, member_id=3, raft_term=5)


class FieldNamesTests(SynchronousTestCase):
    """The dataclasses and the protobuf messages name the same fields, so
    copying by name cannot silently drop one."""

    def test_every_dataclass_field_is_a_proto_field(self):
        """Each field of each request and response dataclass is a field of
        the protobuf message of the same name (Compare's ``operand`` stands
        for its ``target_union``)."""
        classes = [
            m.RangeRequest, m.RangeResponse, m.PutRequest, m.PutResponse, m.DeleteRangeRequest,
            m.DeleteRangeResponse, m.Compare, m.TxnRequest, m.TxnResponse, m.CompactionRequest,
            m.CompactionResponse, m.ResponseHeader,
        ]
        for cls in classes:
            proto_fields = set(rpc_pb2.DESCRIPTOR.message_types_by_name[cls.__name__].fields_by_name)
            ours = {f.name for f in dataclasses.fields(cls)} - {"operand"}
            self.assertEqual(ours - proto_fields, set(), cls.__name__)

    def test_request_fields_are_all_carried(self):
        """Every field of the request messages is read by the conversion:
        the dataclass has a field for each proto field."""
        for cls in (m.RangeRequest, m.PutRequest, m.DeleteRangeRequest, m.CompactionRequest, m.TxnRequest):
            proto_fields = set(rpc_pb2.DESCRIPTOR.message_types_by_name[cls.__name__].fields_by_name)
            self.assertEqual(proto_fields - {f.name for f in dataclasses.fields(cls)}, set(), cls.__name__)


class RequestTests(SynchronousTestCase):
    """Requests from the wire."""

    def test_range_with_every_field_set(self):
        """Every Range field, enums included, reaches the dataclass."""
        pb = rpc_pb2.RangeRequest(
            key=b"a", range_end=b"b", limit=3, revision=9, sort_order=rpc_pb2.RangeRequest.DESCEND,
            sort_target=rpc_pb2.RangeRequest.MOD, serializable=True, keys_only=True, count_only=True,
            min_mod_revision=1, max_mod_revision=2, min_create_revision=3, max_create_revision=4,
        )
        self.assertEqual(
            convert.range_request(pb),
            m.RangeRequest(
                key=b"a", range_end=b"b", limit=3, revision=9, sort_order=m.SortOrder.DESCEND,
                sort_target=m.SortTarget.MOD, serializable=True, keys_only=True, count_only=True,
                min_mod_revision=1, max_mod_revision=2, min_create_revision=3, max_create_revision=4,
            ),
        )
        self.assertIs(type(convert.range_request(pb).sort_order), m.SortOrder)

    def test_put_and_delete_defaults(self):
        """Unset proto fields are the dataclass defaults."""
        self.assertEqual(convert.put_request(rpc_pb2.PutRequest(key=b"k")), m.PutRequest(key=b"k"))
        self.assertEqual(
            convert.put_request(rpc_pb2.PutRequest(key=b"k", value=b"v", lease=5, prev_kv=True, ignore_lease=True)),
            m.PutRequest(key=b"k", value=b"v", lease=5, prev_kv=True, ignore_lease=True),
        )
        self.assertEqual(
            convert.delete_range_request(rpc_pb2.DeleteRangeRequest(key=b"a", range_end=b"\0", prev_kv=True)),
            m.DeleteRangeRequest(key=b"a", range_end=b"\0", prev_kv=True),
        )

    def test_txn_with_every_op_and_compare_target(self):
        """Compares take the operand their target names; each RequestOp
        kind, a nested txn included, becomes its dataclass."""
        pb = rpc_pb2.TxnRequest(
            compare=[
                rpc_pb2.Compare(key=b"a", target=rpc_pb2.Compare.VALUE, result=rpc_pb2.Compare.EQUAL, value=b"x"),
                rpc_pb2.Compare(key=b"a", target=rpc_pb2.Compare.MOD, result=rpc_pb2.Compare.LESS, mod_revision=4,
                                range_end=b"b"),
                rpc_pb2.Compare(key=b"a", target=rpc_pb2.Compare.VERSION, result=rpc_pb2.Compare.GREATER),
            ],
            success=[
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"p", value=b"1")),
                rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"r")),
            ],
            failure=[
                rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"d")),
                rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(
                    success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"n"))])),
            ],
        )
        self.assertEqual(
            convert.txn_request(pb),
            m.TxnRequest(
                compare=(
                    m.Compare(m.CompareTarget.VALUE, m.CompareResult.EQUAL, b"a", b"x"),
                    m.Compare(m.CompareTarget.MOD, m.CompareResult.LESS, b"a", 4, range_end=b"b"),
                    m.Compare(m.CompareTarget.VERSION, m.CompareResult.GREATER, b"a", 0),
                ),
                success=(m.PutRequest(key=b"p", value=b"1"), m.RangeRequest(key=b"r")),
                failure=(m.DeleteRangeRequest(key=b"d"), m.TxnRequest(success=(m.PutRequest(key=b"n"),))),
            ),
        )

    def test_compare_reads_the_field_its_target_names(self):
        """A compare whose union holds another field than its target reads
        the target's field (its default), as etcd does."""
        pb = rpc_pb2.Compare(key=b"a", target=rpc_pb2.Compare.VALUE, version=3)
        self.assertEqual(convert.compare(pb).operand, b"")

    def test_empty_request_op_is_refused_as_etcd_does(self):
        """A RequestOp that names no request raises EmptyRequestOp, which
        answers etcd's INVALID_ARGUMENT "etcdserver: key not found"."""
        with self.assertRaises(convert.EmptyRequestOp) as caught:
            convert.txn_request(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp()]))
        self.assertEqual(
            status_of(caught.exception), EtcdStatus(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key not found")
        )


class ResponseTests(SynchronousTestCase):
    """Responses to the wire."""

    def kv(self, key: bytes, value: bytes = b"v") -> KeyValue:
        """A stored key-value with every field set."""
        return KeyValue(key=key, value=value, create_revision=2, mod_revision=4, version=3, lease=9)

    def test_range_response(self):
        """Header stamped with cluster, member and term; kvs field by field."""
        pb = convert.range_response(
            m.RangeResponse(header=m.ResponseHeader(revision=12), kvs=(self.kv(b"a"),), more=True, count=5), STAMP
        )
        self.assertEqual(
            (pb.header.cluster_id, pb.header.member_id, pb.header.revision, pb.header.raft_term), (7, 3, 12, 5)
        )
        kv = pb.kvs[0]
        self.assertEqual(
            (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease), (b"a", b"v", 2, 4, 3, 9)
        )
        self.assertEqual((pb.more, pb.count), (True, 5))

    def test_put_and_delete_responses(self):
        """prev_kv only when present; deleted and prev_kvs carried."""
        bare = convert.put_response(m.PutResponse(header=m.ResponseHeader(revision=3)), STAMP)
        self.assertFalse(bare.HasField("prev_kv"))
        with_prev = convert.put_response(m.PutResponse(header=m.ResponseHeader(3), prev_kv=self.kv(b"k")), STAMP)
        self.assertEqual(with_prev.prev_kv.key, b"k")
        deleted = convert.delete_range_response(
            m.DeleteRangeResponse(header=m.ResponseHeader(4), deleted=2, prev_kvs=(self.kv(b"a"), self.kv(b"b"))),
            STAMP,
        )
        self.assertEqual((deleted.deleted, [kv.key for kv in deleted.prev_kvs]), (2, [b"a", b"b"]))
        compacted = convert.compaction_response(m.CompactionResponse(header=m.ResponseHeader(6)), STAMP)
        self.assertEqual(compacted.header.revision, 6)

    def test_txn_response_with_nested_ops(self):
        """Each response lands in the oneof field its type names; inside
        the txn headers carry the revision alone, and a nested txn's header
        is present but empty, as etcd sends them (see test_contract)."""
        r = m.TxnResponse(
            header=m.ResponseHeader(revision=8),
            succeeded=True,
            responses=(
                m.PutResponse(header=m.ResponseHeader(8)),
                m.RangeResponse(header=m.ResponseHeader(8), count=1, kvs=(self.kv(b"a"),)),
                m.DeleteRangeResponse(header=m.ResponseHeader(8), deleted=1),
                m.TxnResponse(header=None, succeeded=False),
            ),
        )
        pb = convert.txn_response(r, STAMP)
        self.assertEqual(
            [op.WhichOneof("response") for op in pb.responses],
            ["response_put", "response_range", "response_delete_range", "response_txn"],
        )
        self.assertTrue(pb.succeeded)
        self.assertEqual(pb.header, rpc_pb2.ResponseHeader(cluster_id=7, member_id=3, revision=8, raft_term=5))
        inner = [getattr(op, op.WhichOneof("response")) for op in pb.responses]
        self.assertEqual([op.header for op in inner[:3]], [rpc_pb2.ResponseHeader(revision=8)] * 3)
        self.assertTrue(inner[3].HasField("header"))
        self.assertEqual(inner[3].header, rpc_pb2.ResponseHeader())
        self.assertEqual(pb.responses[1].response_range.kvs[0].key, b"a")
