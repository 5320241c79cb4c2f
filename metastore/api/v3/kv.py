"""etcd's KV service, protocol-neutral: range, put, delete range, txn and
compaction on the dataclasses of ``metastore.kv.messages``.

The JSON API (``metastore.api.v3.app``) and the gRPC API
(``metastore.api.grpc.kv``) decode their wire form into those requests,
call these methods and encode the responses; the rules live here once.  A
request is checked as etcd checks it before proposing; writes go through
raft; a range, or a txn that only reads, is served from this member's
applied state after a linearizable read barrier (or at once when
serializable), without a new revision, as etcd serves them.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import defer

from metastore.facade import Consistency, MemberFacade
from metastore.kv.messages import (
    CompactionRequest,
    CompactionResponse,
    DeleteRangeRequest,
    DeleteRangeResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    TxnRequest,
    TxnResponse,
)


def _serializable(request: RangeRequest | TxnRequest) -> bool:
    """Whether etcd serves ``request`` from local state: a serializable
    range, or a txn whose operations are all serializable ranges (a txn of
    compares alone is served linearizably here: stricter than etcd)."""
    if isinstance(request, RangeRequest):
        return request.serializable
    ops = request.success + request.failure
    return bool(ops) and all(isinstance(op, RangeRequest) and op.serializable for op in ops)


class KVService:
    """etcd's ``KV`` service over a member's facade.  Every method raises
    (or fails with) etcd's errors: ``KVError`` before anything is
    proposed, the node's ``Unavailable`` when the cluster cannot answer."""

    def __init__(self, member: MemberFacade, wait_physical: Callable[[int], defer.Deferred]) -> None:
        self._member = member
        self._wait_physical = wait_physical

    async def range(self, request: RangeRequest) -> RangeResponse:
        """``KV.Range``."""
        return await self._read(request)

    async def put(self, request: PutRequest) -> PutResponse:
        """``KV.Put``."""
        return await self._write(request)

    async def delete_range(self, request: DeleteRangeRequest) -> DeleteRangeResponse:
        """``KV.DeleteRange``."""
        return await self._write(request)

    async def txn(self, request: TxnRequest) -> TxnResponse:
        """``KV.Txn``: read-only txns are served like ranges."""
        if self._member.is_read_only(request):
            return await self._read(request)
        return await self._write(request)

    async def compact(self, request: CompactionRequest) -> CompactionResponse:
        """``KV.Compact``; with ``physical``, answers once the versions
        below the revision are gone from the engine."""
        response = await self._member.propose(request)
        if request.physical and request.revision > 0:
            await self._wait_physical(request.revision)
        return response

    async def _read(self, request: RangeRequest | TxnRequest):
        self._member.check(request)
        consistency = Consistency.SERIALIZABLE if _serializable(request) else Consistency.LINEARIZABLE
        await self._member.read(consistency)
        return self._member.read_request(request)

    async def _write(self, request):
        self._member.check(request)
        await self._member.check_space(request)
        return await self._member.propose(request)
