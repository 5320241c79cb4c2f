"""The v3 KV service: range, put, delete range, txn and compaction.

Each handler takes the parsed JSON body and returns the JSON answer (a
Deferred of it).  A
request is checked as etcd checks it before proposing; writes go through
raft; a range, or a txn that only reads, is served from this member's
applied state after a linearizable read barrier (or at once when
serializable), without a new revision, as etcd serves them.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import defer

from metastore.api.v3 import kv_codec
from metastore.api.v3.header import Headers
from metastore.facade import Consistency, MemberFacade
from metastore.kv.messages import RangeRequest, TxnRequest


def _serializable(request: RangeRequest | TxnRequest) -> bool:
    """Whether etcd serves ``request`` from local state: a serializable
    range, or a txn whose operations are all serializable ranges (a txn of
    compares alone is served linearizably here: stricter than etcd)."""
    if isinstance(request, RangeRequest):
        return request.serializable
    ops = request.success + request.failure
    return bool(ops) and all(isinstance(op, RangeRequest) and op.serializable for op in ops)


class KVService:
    """etcd's ``KV`` service over a member's facade."""

    def __init__(
        self, member: MemberFacade, headers: Headers, wait_physical: Callable[[int], defer.Deferred]
    ) -> None:
        self._member = member
        self._headers = headers
        self._wait_physical = wait_physical

    def range(self, body: dict) -> defer.Deferred:
        """``/kv/range``."""
        return self._read(kv_codec.range_request(body))

    def put(self, body: dict) -> defer.Deferred:
        """``/kv/put``."""
        return self._write(kv_codec.put_request(body))

    def delete_range(self, body: dict) -> defer.Deferred:
        """``/kv/deleterange``."""
        return self._write(kv_codec.delete_range_request(body))

    def txn(self, body: dict) -> defer.Deferred:
        """``/kv/txn``: read-only txns are served like ranges."""
        request = kv_codec.txn_request(body)
        if self._member.is_read_only(request):
            return self._read(request)
        return self._write(request)

    async def compact(self, body: dict) -> dict:
        """``/kv/compaction``; with ``physical``, answers once the versions
        below the revision are gone from the engine."""
        request = kv_codec.compaction_request(body)
        response = await self._member.propose(request)
        if request.physical and request.revision > 0:
            await self._wait_physical(request.revision)
        return {"header": self._headers.at(response.header.revision)}

    # The hot methods chain callbacks on the facade's Deferreds instead of
    # awaiting them: a coroutine costs several Deferred hops per request.
    # A bad request raises at once; the caller turns that into its answer.

    def _read(self, request: RangeRequest | TxnRequest) -> defer.Deferred:
        self._member.check(request)
        consistency = Consistency.SERIALIZABLE if _serializable(request) else Consistency.LINEARIZABLE
        return self._member.read(consistency).addCallback(self._serve_read, request)

    def _serve_read(self, _, request: RangeRequest | TxnRequest) -> dict:
        return self._answer(self._member.read_request(request))

    def _write(self, request) -> defer.Deferred:
        self._member.check(request)
        return self._member.check_space(request).addCallback(self._propose, request)

    def _propose(self, _, request) -> defer.Deferred:
        return self._member.propose(request).addCallback(self._answer)

    def _answer(self, response) -> dict:
        return kv_codec.kv_response(response, self._headers.at(response.header.revision))
