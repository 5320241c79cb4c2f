"""etcd's KV messages to and from the gateway's JSON.

Requests are read with ``json_fields`` (jsonpb's leniency); responses are
written as jsonpb writes them with ``OrigName`` and without defaults:
proto field names, bytes as base64, 64-bit integers as decimal strings,
and every zero value (0, False, b"", empty list, absent message) left out.
"""

from __future__ import annotations

import base64

from metastore.api.v3.json_fields import (
    BadBody,
    bool_field,
    bytes_field,
    enum_field,
    int_field,
    list_field,
    object_field,
)
from metastore.facade import KeyValue
from metastore.kv.messages import (
    CompactionRequest,
    CompactionResponse,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    RequestOp,
    ResponseHeader,
    ResponseOp,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)

# -- requests ----------------------------------------------------------------


def range_request(body: dict) -> RangeRequest:
    """A ``RangeRequest`` from its JSON."""
    return RangeRequest(
        key=bytes_field(body, "key"),
        range_end=bytes_field(body, "range_end"),
        limit=int_field(body, "limit"),
        revision=int_field(body, "revision"),
        sort_order=enum_field(body, "sort_order", SortOrder),
        sort_target=enum_field(body, "sort_target", SortTarget),
        serializable=bool_field(body, "serializable"),
        keys_only=bool_field(body, "keys_only"),
        count_only=bool_field(body, "count_only"),
        min_mod_revision=int_field(body, "min_mod_revision"),
        max_mod_revision=int_field(body, "max_mod_revision"),
        min_create_revision=int_field(body, "min_create_revision"),
        max_create_revision=int_field(body, "max_create_revision"),
    )


def put_request(body: dict) -> PutRequest:
    """A ``PutRequest`` from its JSON."""
    return PutRequest(
        key=bytes_field(body, "key"),
        value=bytes_field(body, "value"),
        lease=int_field(body, "lease"),
        prev_kv=bool_field(body, "prev_kv"),
        ignore_value=bool_field(body, "ignore_value"),
        ignore_lease=bool_field(body, "ignore_lease"),
    )


def delete_range_request(body: dict) -> DeleteRangeRequest:
    """A ``DeleteRangeRequest`` from its JSON."""
    return DeleteRangeRequest(
        key=bytes_field(body, "key"),
        range_end=bytes_field(body, "range_end"),
        prev_kv=bool_field(body, "prev_kv"),
    )


_OPERAND_FIELDS = {
    CompareTarget.VERSION: "version",
    CompareTarget.CREATE: "create_revision",
    CompareTarget.MOD: "mod_revision",
    CompareTarget.VALUE: "value",
    CompareTarget.LEASE: "lease",
}
"""The ``target_union`` member each compare target reads its operand from
(an operand given in another member compares as zero, as etcd does)."""


def compare(body: dict) -> Compare:
    """A ``Compare`` from its JSON."""
    target = enum_field(body, "target", CompareTarget)
    field = _OPERAND_FIELDS[target]
    operand = bytes_field(body, field) if target is CompareTarget.VALUE else int_field(body, field)
    return Compare(
        target=target,
        result=enum_field(body, "result", CompareResult),
        key=bytes_field(body, "key"),
        operand=operand,
        range_end=bytes_field(body, "range_end"),
    )


_REQUEST_OPS = {
    "request_range": range_request,
    "request_put": put_request,
    "request_delete_range": delete_range_request,
}


def request_op(body: object) -> RequestOp:
    """One ``RequestOp`` (its oneof: range, put, delete range or txn)."""
    if not isinstance(body, dict):
        raise BadBody("a txn operation must be an object")
    for name, decode in _REQUEST_OPS.items():
        op = object_field(body, name)
        if op is not None:
            return decode(op)
    op = object_field(body, "request_txn")
    if op is not None:
        return txn_request(op)
    raise BadBody("a txn operation must hold request_range, request_put, request_delete_range or request_txn")


def txn_request(body: dict) -> TxnRequest:
    """A ``TxnRequest`` (nested txns included) from its JSON."""
    compares = []
    for item in list_field(body, "compare"):
        if not isinstance(item, dict):
            raise BadBody("compare: each compare must be an object")
        compares.append(compare(item))
    return TxnRequest(
        compare=tuple(compares),
        success=tuple(request_op(op) for op in list_field(body, "success")),
        failure=tuple(request_op(op) for op in list_field(body, "failure")),
    )


def compaction_request(body: dict) -> CompactionRequest:
    """A ``CompactionRequest`` from its JSON."""
    return CompactionRequest(revision=int_field(body, "revision"), physical=bool_field(body, "physical"))


# -- responses ---------------------------------------------------------------


def without_zeros(fields: dict) -> dict:
    """``fields`` without its zero values, as jsonpb leaves them out."""
    return {name: value for name, value in fields.items() if value not in (None, "0", "", [], False, {})}


def b64(data: bytes) -> str:
    """Bytes as the gateway writes them."""
    return base64.b64encode(data).decode("ascii")


def key_value(kv: KeyValue) -> dict:
    """An ``mvccpb.KeyValue``."""
    return without_zeros({
        "key": b64(kv.key),
        "create_revision": str(kv.create_revision),
        "mod_revision": str(kv.mod_revision),
        "version": str(kv.version),
        "value": b64(kv.value),
        "lease": str(kv.lease),
    })  # fmt: skip


def _nested_header(header: ResponseHeader | None) -> dict:
    """The header of a response inside a txn: its revision only; etcd
    leaves a nested txn's header empty (but present)."""
    return {} if header is None else without_zeros({"revision": str(header.revision)})


def range_response(response: RangeResponse, header: dict) -> dict:
    """A ``RangeResponse`` with ``header`` as its header."""
    return without_zeros({
        "header": header,
        "kvs": [key_value(kv) for kv in response.kvs],
        "more": response.more,
        "count": str(response.count),
    })  # fmt: skip


def put_response(response: PutResponse, header: dict) -> dict:
    """A ``PutResponse``."""
    prev = None if response.prev_kv is None else key_value(response.prev_kv)
    return without_zeros({"header": header, "prev_kv": prev})


def delete_range_response(response: DeleteRangeResponse, header: dict) -> dict:
    """A ``DeleteRangeResponse``."""
    return without_zeros({
        "header": header,
        "deleted": str(response.deleted),
        "prev_kvs": [key_value(kv) for kv in response.prev_kvs],
    })  # fmt: skip


_RESPONSE_OPS = (
    (RangeResponse, "response_range", range_response),
    (PutResponse, "response_put", put_response),
    (DeleteRangeResponse, "response_delete_range", delete_range_response),
)


def response_op(response: ResponseOp) -> dict:
    """One ``ResponseOp`` inside a txn response."""
    if isinstance(response, TxnResponse):
        body = txn_response(response, _nested_header(response.header))
        body["header"] = _nested_header(response.header)  # present even when empty
        return {"response_txn": body}
    for kind, name, encode in _RESPONSE_OPS:
        if isinstance(response, kind):
            return {name: encode(response, _nested_header(response.header))}
    raise TypeError(f"not a txn operation response: {response!r}")


def txn_response(response: TxnResponse, header: dict) -> dict:
    """A ``TxnResponse``, its operations' responses nested."""
    return without_zeros({
        "header": header,
        "succeeded": response.succeeded,
        "responses": [response_op(r) for r in response.responses],
    })  # fmt: skip


def kv_response(response: ResponseOp | CompactionResponse, header: dict) -> dict:
    """Any top-level KV response with ``header``."""
    if isinstance(response, CompactionResponse):
        return {"header": header}
    if isinstance(response, TxnResponse):
        return txn_response(response, header)
    for kind, _, encode in _RESPONSE_OPS:
        if isinstance(response, kind):
            return encode(response, header)
    raise TypeError(f"not a KV response: {response!r}")
