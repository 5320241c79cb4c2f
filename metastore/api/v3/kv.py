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

from metastore.auth.messages import AuthInfo
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


def _passed(d: defer.Deferred) -> bool:
    """Whether ``d`` has already fired with None (nothing to wait for, no
    failure to hand on)."""
    return d.called and d.result is None


class KVService:
    """etcd's ``KV`` service over a member's facade.  Every method raises
    (or fails with) etcd's errors: ``KVError`` before anything is
    proposed, the node's ``Unavailable`` when the cluster cannot answer."""

    def __init__(self, member: MemberFacade, wait_physical: Callable[[int], defer.Deferred]) -> None:
        self._member = member
        self._wait_physical = wait_physical

    def range(self, request: RangeRequest, auth: AuthInfo | None = None) -> defer.Deferred:
        """``KV.Range``: fires with a ``RangeResponse``.  ``auth`` (every
        method's) is what the facade's ``authorize`` answered for the
        request: a write proposes it, a read fails with ``AuthOldRevision``
        when the auth state changed before it is answered."""
        return self._read(request, auth)

    def put(self, request: PutRequest, auth: AuthInfo | None = None) -> defer.Deferred:
        """``KV.Put``: fires with a ``PutResponse``."""
        return self._write(request, auth)

    def delete_range(self, request: DeleteRangeRequest, auth: AuthInfo | None = None) -> defer.Deferred:
        """``KV.DeleteRange``: fires with a ``DeleteRangeResponse``."""
        return self._write(request, auth)

    def txn(self, request: TxnRequest, auth: AuthInfo | None = None) -> defer.Deferred:
        """``KV.Txn``: fires with a ``TxnResponse``; read-only txns are
        served like ranges."""
        if self._member.is_read_only(request):
            return self._read(request, auth)
        return self._write(request, auth)

    async def compact(self, request: CompactionRequest, auth: AuthInfo | None = None) -> CompactionResponse:
        """``KV.Compact``; with ``physical``, answers once the versions
        below the revision are gone from the engine."""
        response = await self._member.propose(request, auth)
        if request.physical and request.revision > 0:
            await self._wait_physical(request.revision)
        return response

    # The hot methods chain callbacks on the facade's Deferreds instead of
    # awaiting them in coroutines: a coroutine costs several Deferred hops
    # per request.  A facade Deferred that has already fired with None (a
    # serializable read, a write within the quota) is not waited on at all:
    # chaining one Deferred onto another costs more than the rest of the
    # service.  A bad request raises at once.

    def _read(self, request: RangeRequest | TxnRequest, auth: AuthInfo | None) -> defer.Deferred:
        self._member.check(request)
        consistency = Consistency.SERIALIZABLE if _serializable(request) else Consistency.LINEARIZABLE
        ready = self._member.read(consistency)
        if _passed(ready):
            try:
                return defer.succeed(self._serve_read(None, request, auth))
            except Exception:
                return defer.fail()
        return ready.addCallback(self._serve_read, request, auth)

    def _serve_read(self, _, request: RangeRequest | TxnRequest, auth: AuthInfo | None) -> RangeResponse | TxnResponse:
        if auth is not None:
            self._member.auth_still_current(auth)
        return self._member.read_request(request)

    def _write(self, request, auth: AuthInfo | None) -> defer.Deferred:
        self._member.check(request)
        space = self._member.check_space(request)
        if _passed(space):
            return self._member.propose(request, auth)
        return space.addCallback(self._propose, request, auth)

    def _propose(self, _, request, auth: AuthInfo | None) -> defer.Deferred:
        return self._member.propose(request, auth)
