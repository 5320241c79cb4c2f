"""Protobuf messages to ``metastore.kv.messages`` and back.

The dataclasses carry etcd's field names, so most of the translation is a
copy by name; the exceptions are spelled out here: enums, ``Compare``'s
``target_union`` (read from the field its ``target`` names, as etcd does),
``RequestOp``/``ResponseOp`` oneofs, and the response header, whose
cluster id, member id and term the API adds (``HeaderStamp``) to the store
revision the response carries; inside a txn etcd sends the revision alone
(``stamp`` None), and an empty header for a nested txn.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import metastore.kv.messages as m
from metastore.api.grpc.proto import kv_pb2, rpc_pb2
from metastore.api.v3.cluster import MemberListing, member_name
from metastore.api.v3.maintenance import StatusAnswer
from metastore.api.v3.watch import WatchCreateRequest
from metastore.facade import MemberRecord, WatchEvent, WatchFilter, WatchResponse
from metastore.kv.errors import KeyNotFoundError


class EmptyRequestOp(KeyNotFoundError):
    """A txn operation that names no request (its oneof is unset): etcd 3.4
    answers it with INVALID_ARGUMENT "etcdserver: key not found"."""


@dataclass(frozen=True, slots=True)
class HeaderStamp:
    """What the API adds to a response's revision: who answered, in which term."""

    cluster_id: int
    member_id: int
    raft_term: int


def _copy(pb, cls, **converted):
    """``cls`` built from the same-named fields of ``pb``, except those given."""
    values = {f.name: getattr(pb, f.name) for f in fields(cls) if f.name not in converted}
    return cls(**values, **converted)


# ---------------------------------------------------------------- requests


def range_request(pb: rpc_pb2.RangeRequest) -> m.RangeRequest:
    """A Range request."""
    return _copy(pb, m.RangeRequest, sort_order=m.SortOrder(pb.sort_order), sort_target=m.SortTarget(pb.sort_target))


def put_request(pb: rpc_pb2.PutRequest) -> m.PutRequest:
    """A Put request."""
    return _copy(pb, m.PutRequest)


def delete_range_request(pb: rpc_pb2.DeleteRangeRequest) -> m.DeleteRangeRequest:
    """A DeleteRange request."""
    return _copy(pb, m.DeleteRangeRequest)


def compaction_request(pb: rpc_pb2.CompactionRequest) -> m.CompactionRequest:
    """A Compact request."""
    return _copy(pb, m.CompactionRequest)


_OPERAND_FIELD = {
    m.CompareTarget.VERSION: "version",
    m.CompareTarget.CREATE: "create_revision",
    m.CompareTarget.MOD: "mod_revision",
    m.CompareTarget.VALUE: "value",
    m.CompareTarget.LEASE: "lease",
}


def compare(pb: rpc_pb2.Compare) -> m.Compare:
    """A txn compare; its operand is the union field its target names
    (unset reads as that field's default, as in etcd)."""
    target = m.CompareTarget(pb.target)
    return m.Compare(
        target=target,
        result=m.CompareResult(pb.result),
        key=pb.key,
        operand=getattr(pb, _OPERAND_FIELD[target]),
        range_end=pb.range_end,
    )


_REQUEST_OPS = {
    "request_range": range_request,
    "request_put": put_request,
    "request_delete_range": delete_range_request,
}


def request_op(pb: rpc_pb2.RequestOp) -> m.RequestOp:
    """One txn operation; ``EmptyRequestOp`` when it names none."""
    which = pb.WhichOneof("request")
    if which is None:
        raise EmptyRequestOp()
    if which == "request_txn":
        return txn_request(pb.request_txn)
    return _REQUEST_OPS[which](getattr(pb, which))


def txn_request(pb: rpc_pb2.TxnRequest) -> m.TxnRequest:
    """A Txn request, nested txns included."""
    return m.TxnRequest(
        compare=tuple(compare(c) for c in pb.compare),
        success=tuple(request_op(op) for op in pb.success),
        failure=tuple(request_op(op) for op in pb.failure),
    )


def watch_create(pb: rpc_pb2.WatchCreateRequest) -> WatchCreateRequest:
    """A watch create request (filters as ``WatchFilter``s)."""
    return _copy(pb, WatchCreateRequest, filters=tuple(WatchFilter(f) for f in pb.filters))


# ---------------------------------------------------------------- responses


def key_value(kv) -> kv_pb2.KeyValue:
    """An ``mvccpb.KeyValue`` from the store's ``KeyValue`` (same field names)."""
    return kv_pb2.KeyValue(**{f.name: getattr(kv, f.name) for f in fields(kv)})


def response_header(header: m.ResponseHeader | None, stamp: HeaderStamp | None) -> rpc_pb2.ResponseHeader:
    """The response header as etcd sends it: stamped in full at the top of
    a response; inside a txn (``stamp`` None) the revision alone; and for a
    nested txn (``header`` None) present but empty."""
    if header is None:
        return rpc_pb2.ResponseHeader()
    if stamp is None:
        return rpc_pb2.ResponseHeader(revision=header.revision)
    return rpc_pb2.ResponseHeader(
        cluster_id=stamp.cluster_id, member_id=stamp.member_id, revision=header.revision, raft_term=stamp.raft_term
    )


def range_response(r: m.RangeResponse, stamp: HeaderStamp | None) -> rpc_pb2.RangeResponse:
    """A Range response."""
    return rpc_pb2.RangeResponse(
        header=response_header(r.header, stamp), kvs=[key_value(kv) for kv in r.kvs], more=r.more, count=r.count
    )


def put_response(r: m.PutResponse, stamp: HeaderStamp | None) -> rpc_pb2.PutResponse:
    """A Put response."""
    prev = key_value(r.prev_kv) if r.prev_kv is not None else None
    return rpc_pb2.PutResponse(header=response_header(r.header, stamp), prev_kv=prev)


def delete_range_response(r: m.DeleteRangeResponse, stamp: HeaderStamp | None) -> rpc_pb2.DeleteRangeResponse:
    """A DeleteRange response."""
    return rpc_pb2.DeleteRangeResponse(
        header=response_header(r.header, stamp), deleted=r.deleted, prev_kvs=[key_value(kv) for kv in r.prev_kvs]
    )


def compaction_response(r: m.CompactionResponse, stamp: HeaderStamp | None) -> rpc_pb2.CompactionResponse:
    """A Compact response."""
    return rpc_pb2.CompactionResponse(header=response_header(r.header, stamp))


def response_op(r: m.ResponseOp, stamp: HeaderStamp | None) -> rpc_pb2.ResponseOp:
    """One txn operation's response, in the oneof field its type names."""
    if isinstance(r, m.RangeResponse):
        return rpc_pb2.ResponseOp(response_range=range_response(r, stamp))
    if isinstance(r, m.PutResponse):
        return rpc_pb2.ResponseOp(response_put=put_response(r, stamp))
    if isinstance(r, m.DeleteRangeResponse):
        return rpc_pb2.ResponseOp(response_delete_range=delete_range_response(r, stamp))
    return rpc_pb2.ResponseOp(response_txn=txn_response(r, stamp))


def txn_response(r: m.TxnResponse, stamp: HeaderStamp | None) -> rpc_pb2.TxnResponse:
    """A Txn response, nested txns included; the responses of its
    operations carry their revision alone, as etcd's do."""
    return rpc_pb2.TxnResponse(
        header=response_header(r.header, stamp),
        succeeded=r.succeeded,
        responses=[response_op(op, None) for op in r.responses],
    )


# ---------------------------------------------------------------- cluster and maintenance


def header(revision: int, stamp: HeaderStamp) -> rpc_pb2.ResponseHeader:
    """A full response header at ``revision`` (0: none, as in the Cluster service)."""
    return rpc_pb2.ResponseHeader(
        cluster_id=stamp.cluster_id, member_id=stamp.member_id, revision=revision, raft_term=stamp.raft_term
    )


def member(record: MemberRecord) -> rpc_pb2.Member:
    """etcd's ``Member`` for a gRPC client: its ``clientURLs`` hold the
    member's gRPC URL, the one a gRPC client can dial (none when the member
    serves no gRPC)."""
    return rpc_pb2.Member(
        ID=record.member_id,
        name=member_name(record),
        peerURLs=[record.peer_url],
        clientURLs=[record.grpc_url] if record.grpc_url else [],
        isLearner=record.is_learner,
    )


def members(listing: MemberListing) -> list[rpc_pb2.Member]:
    """The ``members`` of a Cluster RPC's answer."""
    return [member(record) for record in listing.members]


def status_response(s: StatusAnswer, stamp: HeaderStamp) -> rpc_pb2.StatusResponse:
    """A Status response."""
    return rpc_pb2.StatusResponse(
        header=header(s.revision, stamp),
        version=s.version,
        dbSize=s.db_size,
        leader=s.leader,
        raftIndex=s.raft_index,
        raftTerm=s.raft_term,
        raftAppliedIndex=s.raft_applied_index,
        errors=s.errors,
        dbSizeInUse=s.db_size_in_use,
        isLearner=s.is_learner,
    )


def alarm_members(alarms) -> list[rpc_pb2.AlarmMember]:
    """``AlarmMember`` messages of ``(member_id, AlarmType)`` pairs."""
    return [rpc_pb2.AlarmMember(memberID=member_id, alarm=int(alarm)) for member_id, alarm in alarms]


# ---------------------------------------------------------------- watch


def watch_event(e: WatchEvent) -> kv_pb2.Event:
    """An ``mvccpb.Event`` (``prev_kv`` only when the watch asked for it)."""
    prev = key_value(e.prev_kv) if e.prev_kv is not None else None
    return kv_pb2.Event(type=int(e.type), kv=key_value(e.kv), prev_kv=prev)


def watch_response(r: WatchResponse, stamp: HeaderStamp) -> rpc_pb2.WatchResponse:
    """A watch stream's response, its ``watch_id`` already the stream's; a
    compacted cancel's header has no revision, as etcd's."""
    return rpc_pb2.WatchResponse(
        header=header(0 if r.compact_revision else r.revision, stamp),
        watch_id=r.watch_id,
        created=r.created,
        canceled=r.canceled,
        compact_revision=r.compact_revision,
        cancel_reason=r.cancel_reason,
        fragment=r.fragment,
        events=[watch_event(e) for e in r.events],
    )
