"""What every servicer is given: the member's facade on the reactor, and
the few things a servicer adds to the protocol-neutral services.

The services of ``metastore.api.v3`` are coroutines that await the node's
Deferreds (or, on the hot KV methods, return Deferreds); ``ServedMember.call``
runs one the Twisted way (``Deferred.fromCoroutine``) and hands
``grpc.aio`` a future of it, so a servicer is a translation and nothing
more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Coroutine

from twisted.internet import defer

from metastore.api.grpc.convert import HeaderStamp
from metastore.api.grpc.server import as_future
from metastore.facade import MemberFacade


@dataclass(frozen=True)
class ServedMember:
    """The member a gRPC server serves: its facade, the reactor it runs on,
    the cluster id for headers, how to wait for a physical compaction
    (``CompactionService.wait_physical``), and the request size limit
    (where a fragmenting watch cuts its responses)."""

    member: MemberFacade
    reactor: Any
    cluster_id: int
    wait_physical: Callable[[int], defer.Deferred]
    max_request_bytes: int = 1536 * 1024

    def stamp(self) -> HeaderStamp:
        """Who answers, in which term: what a response header adds to a revision."""
        return HeaderStamp(self.cluster_id, self.member.member_id, self.member.term)

    async def call(self, work: Coroutine | defer.Deferred):
        """The result of a service coroutine that awaits Deferreds (or of a
        service's Deferred), awaited from a ``grpc.aio`` coroutine
        (cancelling the call cancels it)."""
        d = work if isinstance(work, defer.Deferred) else defer.Deferred.fromCoroutine(work)
        return await as_future(d, self.reactor)
