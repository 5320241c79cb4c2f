"""The v3 KV service: range, put, delete range, txn and compaction.

Each handler takes the parsed JSON body and returns the JSON answer.  A
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

    async def range(self, body: dict) -> dict:
        """``/kv/range``."""
        return await self._read(kv_codec.range_request(body))

    async def put(self, body: dict) -> dict:
        """``/kv/put``."""
        return await self._write(kv_codec.put_request(body))

    async def delete_range(self, body: dict) -> dict:
        """``/kv/deleterange``."""
        return await self._write(kv_codec.delete_range_request(body))

    async def txn(self, body: dict) -> dict:
        """``/kv/txn``: read-only txns are served like ranges."""
        request = kv_codec.txn_request(body)
        if self._member.is_read_only(request):
            return await self._read(request)
        return await self._write(request)

    async def compact(self, body: dict) -> dict:
        """``/kv/compaction``; with ``physical``, answers once the versions
        below the revision are gone from the engine."""
        request = kv_codec.compaction_request(body)
        response = await self._member.propose(request)
        if request.physical and request.revision > 0:
            await self._wait_physical(request.revision)
        return {"header": self._headers.at(response.header.revision)}

    async def _read(self, request: RangeRequest | TxnRequest) -> dict:
        self._member.check(request)
        consistency = Consistency.SERIALIZABLE if _serializable(request) else Consistency.LINEARIZABLE
        await self._member.read(consistency)
        response = self._member.read_request(request)
        return kv_codec.kv_response(response, self._headers.at(response.header.revision))

    async def _write(self, request) -> dict:
        self._member.check(request)
        await self._member.check_space(request)
        response = await self._member.propose(request)
        return kv_codec.kv_response(response, self._headers.at(response.header.revision))
