"""What every servicer is given: the member's facade on the reactor, and
the few things a servicer adds to the protocol-neutral services.

The services of ``metastore.api.v3`` are coroutines that await the node's
Deferreds (or, on the hot KV methods, return Deferreds); ``ServedMember.call``
runs one the Twisted way (``Deferred.fromCoroutine``) and hands
``grpc.aio`` a future of it, so a servicer is a translation and nothing
more.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Coroutine

from twisted.internet import defer

from metastore.api.grpc.convert import HeaderStamp
from metastore.api.grpc.server import as_future
from metastore.facade import MemberFacade


TOKEN_METADATA_KEYS = ("token", "authorization")
"""Where etcd's clients put the auth token (clientv3: ``token``; the
gateway forwards ``Authorization`` as ``authorization``)."""


def call_token(context) -> str | None:
    """The auth token a call carries in its metadata, or None."""
    for key, value in context.invocation_metadata() or ():
        if key in TOKEN_METADATA_KEYS:
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


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
    max_watchers_per_stream: int = 0
    """Live watches one Watch stream may hold (0: no limit)."""

    def stamp(self) -> HeaderStamp:
        """Who answers, in which term: what a response header adds to a revision."""
        return HeaderStamp(self.cluster_id, self.member.member_id, self.member.term)

    async def call(self, work: Coroutine | defer.Deferred):
        """The result of a service coroutine that awaits Deferreds (or of a
        service's Deferred), awaited from a ``grpc.aio`` coroutine
        (cancelling the call cancels it)."""
        d = work if isinstance(work, defer.Deferred) else defer.Deferred.fromCoroutine(work)
        return await as_future(d, self.reactor)


def admin_only(method):
    """Decorate a unary servicer method (under ``answers_etcd_errors``) of
    a servicer with ``_served``: once auth is enabled only a user with the
    root role may call it."""

    @functools.wraps(method)
    async def call(self, request, context):
        self._served.member.authorize_admin(call_token(context))
        return await method(self, request, context)

    return call


def user_only(method):
    """Like ``admin_only``, for calls any authenticated user may make."""

    @functools.wraps(method)
    async def call(self, request, context):
        self._served.member.authorize_user(call_token(context))
        return await method(self, request, context)

    return call
