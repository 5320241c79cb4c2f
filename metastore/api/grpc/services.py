"""The gRPC services a member serves: one factory per service.

A factory takes the ``ServedMember`` and the ``grpc.aio.Server`` and adds
its servicer; to serve another service, add its ``register`` here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Coroutine

import grpc
from twisted.internet import defer

from metastore.api.grpc import lease, watch
from metastore.api.grpc.convert import HeaderStamp
from metastore.api.grpc.server import Registration, as_future
from metastore.facade import MemberFacade


@dataclass(frozen=True)
class ServedMember:
    """The member a gRPC server serves: its facade, the reactor it runs on,
    the cluster id for headers, and the request size limit (where a
    fragmenting watch cuts its responses)."""

    member: MemberFacade
    reactor: Any
    cluster_id: int
    max_request_bytes: int

    def stamp(self) -> HeaderStamp:
        """Who answers, in which term: what a response header adds to a revision."""
        return HeaderStamp(self.cluster_id, self.member.member_id, self.member.term)

    async def call(self, coroutine: Coroutine):
        """The result of a service coroutine that awaits Deferreds, awaited
        from a ``grpc.aio`` coroutine (cancelling the call cancels it)."""
        return await as_future(defer.Deferred.fromCoroutine(coroutine), self.reactor)


SERVICE_FACTORIES: tuple[Callable[[ServedMember, grpc.aio.Server], None], ...] = (
    watch.register,
    lease.register,
)
"""Every service served, in no particular order."""


def registrations(served: ServedMember) -> list[Registration]:
    """The ``GrpcService`` registrations of every service for ``served``."""
    return [functools.partial(factory, served) for factory in SERVICE_FACTORIES]
