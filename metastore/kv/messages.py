"""etcd's KV requests and responses as frozen dataclasses.

Field names, enum names and defaults follow etcd's ``rpc.proto`` (etcd
3.4), so that an API in etcd's wire format is a mechanical translation:
a protobuf default (empty bytes, 0, False) is the dataclass default, and a
``range_end`` of ``b""`` means "just ``key``".  ``KeyValue`` is the storage
layer's (``metastore.storage.engine``); it carries etcd's ``mvccpb.KeyValue``
fields.

Responses carry a ``ResponseHeader`` with the store revision only; the API
adds cluster_id, member_id and raft_term.  ``header`` is None for the
response of a nested txn, whose header etcd leaves empty.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

from metastore.storage.engine import KeyValue

ALL_KEYS = b"\0"
"""A ``range_end`` meaning every key greater than or equal to ``key``."""


def prefix_range_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix``
    (etcd's ``GetPrefixRangeEnd``): the prefix with its last byte below 0xff
    incremented and what follows dropped; ``ALL_KEYS`` when there is none."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return ALL_KEYS


class SortOrder(enum.IntEnum):
    """``RangeRequest.SortOrder``."""

    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(enum.IntEnum):
    """``RangeRequest.SortTarget``."""

    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class CompareTarget(enum.IntEnum):
    """``Compare.CompareTarget``: which attribute of a key a compare reads."""

    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class CompareResult(enum.IntEnum):
    """``Compare.CompareResult``: how the attribute relates to the operand."""

    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


@dataclass(frozen=True, slots=True)
class ResponseHeader:
    """The store revision a response was made at (etcd's header.revision)."""

    revision: int


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """``RangeRequest``: keys in ``[key, range_end)`` as of ``revision``
    (0: now).  ``limit`` 0 means no limit."""

    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    sort_order: SortOrder = SortOrder.NONE
    sort_target: SortTarget = SortTarget.KEY
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0


@dataclass(frozen=True, slots=True)
class RangeResponse:
    """``RangeResponse``: ``count`` keys matched (before ``limit`` and the
    revision filters); ``more`` when ``limit`` cut the answer short."""

    header: ResponseHeader | None
    kvs: tuple[KeyValue, ...] = ()
    more: bool = False
    count: int = 0


@dataclass(frozen=True, slots=True)
class PutRequest:
    """``PutRequest``: set ``key`` to ``value`` with ``lease`` (0: none)."""

    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False


@dataclass(frozen=True, slots=True)
class PutResponse:
    """``PutResponse``: ``prev_kv`` when asked for and the key existed."""

    header: ResponseHeader | None
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> int:
        """The header's revision (the revision of the put)."""
        return self.header.revision


@dataclass(frozen=True, slots=True)
class DeleteRangeRequest:
    """``DeleteRangeRequest``: delete ``key`` or every key in ``[key, range_end)``."""

    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False


@dataclass(frozen=True, slots=True)
class DeleteRangeResponse:
    """``DeleteRangeResponse``: how many keys were deleted; their last
    versions in key order when ``prev_kv`` was asked for."""

    header: ResponseHeader | None
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()

    @property
    def revision(self) -> int:
        """The header's revision."""
        return self.header.revision


@dataclass(frozen=True, slots=True)
class Compare:
    """``Compare``: ``target(key) <result> operand`` for ``key``, or for
    every key in ``[key, range_end)`` (all must hold).  ``operand`` is the
    proto's ``target_union`` (version, create_revision, mod_revision,
    value or lease: the one ``target`` names).  A VALUE compare on an
    absent key fails; any other compares an absent key as all zeros."""

    target: CompareTarget
    result: CompareResult
    key: bytes
    operand: int | bytes
    range_end: bytes = b""


RequestOp = Union[RangeRequest, PutRequest, DeleteRangeRequest, "TxnRequest"]
"""``RequestOp``'s oneof: one operation of a txn."""


@dataclass(frozen=True, slots=True)
class TxnRequest:
    """``TxnRequest``: if every compare in ``compare`` holds, run
    ``success``, otherwise ``failure``; all writes share one revision."""

    compare: tuple[Compare, ...] = ()
    success: tuple[RequestOp, ...] = ()
    failure: tuple[RequestOp, ...] = ()


ResponseOp = Union[RangeResponse, PutResponse, DeleteRangeResponse, "TxnResponse"]
"""``ResponseOp``'s oneof: the response to one ``RequestOp``."""


@dataclass(frozen=True, slots=True)
class TxnResponse:
    """``TxnResponse``: whether the compares held, and one response per
    operation of the branch that ran, in order."""

    header: ResponseHeader | None
    succeeded: bool = False
    responses: tuple[ResponseOp, ...] = ()

    @property
    def revision(self) -> int:
        """The header's revision."""
        return self.header.revision


@dataclass(frozen=True, slots=True)
class CompactionRequest:
    """``CompactionRequest``: forget versions older than ``revision``;
    ``physical`` asks the API to answer only once they are gone from the
    engine."""

    revision: int
    physical: bool = False


@dataclass(frozen=True, slots=True)
class CompactionResponse:
    """``CompactionResponse``."""

    header: ResponseHeader


# The seed's shorter names, used by the REST API and older callers.
Put = PutRequest
DeleteRange = DeleteRangeRequest
Txn = TxnRequest


MAX_LEASE_TTL = 9_000_000_000
"""etcd's largest lease TTL in seconds (``MaxLeaseTTL``)."""


@dataclass(frozen=True, slots=True)
class LeaseGrantRequest:
    """``LeaseGrantRequest``: grant lease ``id`` (never 0 here: the member
    that takes the request picks one when the client did not, as etcd
    does) for ``ttl`` seconds."""

    ttl: int
    id: int


@dataclass(frozen=True, slots=True)
class LeaseGrantResponse:
    """``LeaseGrantResponse``: the lease granted and its TTL."""

    header: ResponseHeader
    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseRevokeRequest:
    """``LeaseRevokeRequest``: end lease ``id`` and delete every key
    attached to it, all in one revision."""

    id: int


@dataclass(frozen=True, slots=True)
class LeaseRevokeResponse:
    """``LeaseRevokeResponse``; ``deleted`` counts the keys it deleted."""

    header: ResponseHeader
    deleted: int = 0


@dataclass(frozen=True, slots=True)
class LeaseKeepAliveRequest:
    """A keepalive of lease ``id``, replicated so that it reaches the
    leader from any member and survives a leader change: it resets the
    lease's checkpointed remaining TTL to the whole TTL."""

    id: int


@dataclass(frozen=True, slots=True)
class LeaseKeepAliveResponse:
    """``LeaseKeepAliveResponse``: the lease's TTL, counted again from now."""

    header: ResponseHeader
    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseCheckpointRequest:
    """``LeaseCheckpointRequest``: ``(id, remaining_ttl)`` pairs the leader
    measured, so that a new leader (or a restarted cluster) counts from
    them rather than from the whole TTL."""

    checkpoints: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class LeaseCheckpointResponse:
    """``LeaseCheckpointResponse``."""

    header: ResponseHeader


LeaseRequest = Union[LeaseGrantRequest, LeaseRevokeRequest, LeaseKeepAliveRequest, LeaseCheckpointRequest]
"""The lease commands the state machine applies."""
