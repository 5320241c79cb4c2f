"""etcd's KV messages to and from the gateway's JSON.

Requests are read with ``json_fields`` (jsonpb's leniency); responses are
written as jsonpb writes them with ``OrigName`` and without defaults:
proto field names, bytes as base64, 64-bit integers as decimal strings,
and every zero value (0, False, b"", empty list, absent message) left out.

Responses are made as dicts (``kv_response``; a txn nests them) and, for
the API's answers, as compact JSON bytes (``kv_response_json``): the
range, put and delete range answers are written straight into bytes,
with exactly the bytes the dicts encode to.  Every string in them is
base64 or a decimal, so no JSON escaping is ever needed.
"""

from __future__ import annotations

import base64
import binascii

import orjson

from metastore.api.v3.json_fields import (
    BadBody,
    Fields,
    bool_field,
    bool_value,
    bytes_field,
    bytes_value,
    enum_field,
    enum_kind,
    int_field,
    int_value,
    list_field,
    object_field,
)
from metastore.api.v3.header import Headers
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


_RANGE = Fields(
    RangeRequest,
    key=bytes_value,
    range_end=bytes_value,
    limit=int_value,
    revision=int_value,
    sort_order=enum_kind(SortOrder),
    sort_target=enum_kind(SortTarget),
    serializable=bool_value,
    keys_only=bool_value,
    count_only=bool_value,
    min_mod_revision=int_value,
    max_mod_revision=int_value,
    min_create_revision=int_value,
    max_create_revision=int_value,
)
_PUT = Fields(
    PutRequest,
    key=bytes_value,
    value=bytes_value,
    lease=int_value,
    prev_kv=bool_value,
    ignore_value=bool_value,
    ignore_lease=bool_value,
)
_DELETE_RANGE = Fields(DeleteRangeRequest, key=bytes_value, range_end=bytes_value, prev_kv=bool_value)


def range_request(body: dict) -> RangeRequest:
    """A ``RangeRequest`` from its JSON."""
    return _RANGE.read(body)


def put_request(body: dict) -> PutRequest:
    """A ``PutRequest`` from its JSON."""
    return _PUT.read(body)


def delete_range_request(body: dict) -> DeleteRangeRequest:
    """A ``DeleteRangeRequest`` from its JSON."""
    return _DELETE_RANGE.read(body)


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


# -- responses as JSON bytes -------------------------------------------------------


def key_value_json(kv: KeyValue) -> bytes:
    """``key_value(kv)`` as compact JSON."""
    key, value, create, mod, version, lease = kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease
    if key and value and create and mod and version:  # a live key, unless its value is empty
        if lease:
            return b'{"key":"%s","create_revision":"%d","mod_revision":"%d","version":"%d","value":"%s","lease":"%d"}' % (
                binascii.b2a_base64(key, newline=False), create, mod, version,
                binascii.b2a_base64(value, newline=False), lease)  # fmt: skip
        return b'{"key":"%s","create_revision":"%d","mod_revision":"%d","version":"%d","value":"%s"}' % (
            binascii.b2a_base64(key, newline=False), create, mod, version, binascii.b2a_base64(value, newline=False))
    members = []
    if key:
        members.append(b'"key":"%s"' % binascii.b2a_base64(key, newline=False))
    for name, number in ((b"create_revision", create), (b"mod_revision", mod), (b"version", version)):
        if number:
            members.append(b'"%s":"%d"' % (name, number))
    if value:
        members.append(b'"value":"%s"' % binascii.b2a_base64(value, newline=False))
    if lease:
        members.append(b'"lease":"%d"' % lease)
    return b"{%s}" % b",".join(members)


def _key_values_json(kvs: tuple[KeyValue, ...]) -> bytes:
    return b"[%s]" % b",".join([key_value_json(kv) for kv in kvs])


def _with_header(header: bytes) -> list[bytes]:
    """The start of a response object whose first member is ``header``
    (left out when it is empty, as every empty message is)."""
    return [b'{"header":', header] if header != b"{}" else [b"{"]


def _member(parts: list[bytes], member: bytes) -> None:
    """Append ``member`` (``"name":value``) to the object ``parts`` started."""
    parts.append(member if len(parts) == 1 else b"," + member)


def range_response_json(response: RangeResponse, header: bytes) -> bytes:
    """``range_response`` as compact JSON, ``header`` its header's JSON."""
    if response.kvs and not response.more and response.count and header != b"{}":  # the usual answer
        return b'{"header":%s,"kvs":%s,"count":"%d"}' % (header, _key_values_json(response.kvs), response.count)
    parts = _with_header(header)
    if response.kvs:
        _member(parts, b'"kvs":' + _key_values_json(response.kvs))
    if response.more:
        _member(parts, b'"more":true')
    if response.count:
        _member(parts, b'"count":"%d"' % response.count)
    parts.append(b"}")
    return b"".join(parts)


def put_response_json(response: PutResponse, header: bytes) -> bytes:
    """``put_response`` as compact JSON."""
    if response.prev_kv is None and header != b"{}":  # the usual answer
        return b'{"header":%s}' % header
    parts = _with_header(header)
    prev = b"{}" if response.prev_kv is None else key_value_json(response.prev_kv)
    if prev != b"{}":
        _member(parts, b'"prev_kv":' + prev)
    parts.append(b"}")
    return b"".join(parts)


def delete_range_response_json(response: DeleteRangeResponse, header: bytes) -> bytes:
    """``delete_range_response`` as compact JSON."""
    parts = _with_header(header)
    if response.deleted:
        _member(parts, b'"deleted":"%d"' % response.deleted)
    if response.prev_kvs:
        _member(parts, b'"prev_kvs":' + _key_values_json(response.prev_kvs))
    parts.append(b"}")
    return b"".join(parts)


_JSON_ENCODERS = {
    RangeResponse: range_response_json,
    PutResponse: put_response_json,
    DeleteRangeResponse: delete_range_response_json,
}


def kv_response_json(response: ResponseOp | CompactionResponse, headers: Headers) -> bytes:
    """``kv_response`` as compact JSON, its header ``headers``' at the
    response's revision."""
    revision = response.header.revision
    encode = _JSON_ENCODERS.get(type(response))
    if encode is not None:
        return encode(response, headers.json_at(revision))
    # a txn or compaction: the dict holds only strings of ASCII, bools,
    # lists and dicts, which orjson writes byte for byte as json.dumps does
    return orjson.dumps(kv_response(response, headers.at(revision)))
