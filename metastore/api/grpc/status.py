"""Which gRPC status a failure answers with: etcd's code and message.

Clients act on these: clientv3 retries a read on ``UNAVAILABLE`` at another
member and shows the ``etcdserver: ...`` text; a compacted revision is
``OUT_OF_RANGE``.  One place maps every failure, so servicers only raise.

An error that carries etcd's wire form itself (``grpc_code``, an int, and
``message``, as ``metastore.kv`` errors do) answers with it; the node's
errors (``metastore.errors``) are mapped here; anything else answers
``UNKNOWN`` with its text, as etcd does for an error it has no entry for.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import grpc

from metastore.errors import NoLeader, RequestTimedOut, Stopping, Unavailable

_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True, slots=True)
class EtcdStatus:
    """A gRPC status code and etcd's message for it."""

    code: grpc.StatusCode
    message: str


NO_LEADER = EtcdStatus(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
REQUEST_TIMED_OUT = EtcdStatus(grpc.StatusCode.UNAVAILABLE, "etcdserver: request timed out")
SERVER_STOPPED = EtcdStatus(grpc.StatusCode.UNAVAILABLE, "etcdserver: server stopped")

_NODE_ERRORS = ((NoLeader, NO_LEADER), (RequestTimedOut, REQUEST_TIMED_OUT), (Stopping, SERVER_STOPPED))


def status_of(error: BaseException) -> EtcdStatus:
    """The status ``error`` answers with (see the module's rules)."""
    code, message = getattr(error, "grpc_code", None), getattr(error, "message", None)
    if isinstance(code, int) and isinstance(message, str):
        return EtcdStatus(_CODES.get(code, grpc.StatusCode.UNKNOWN), message)
    for kind, status in _NODE_ERRORS:
        if isinstance(error, kind):
            return status
    if isinstance(error, Unavailable):
        # Any other "retry later" (a refused membership change, a failed
        # disk): clients retry on the code; the text says which.
        return EtcdStatus(grpc.StatusCode.UNAVAILABLE, f"etcdserver: {error}")
    return EtcdStatus(grpc.StatusCode.UNKNOWN, str(error) or type(error).__name__)


def answers_etcd_errors(method):
    """Decorate a unary servicer method (``async def M(self, request,
    context)``): a failure it raises ends the call with ``status_of`` it.
    gRPC's own aborts and cancellations pass through untouched."""

    @functools.wraps(method)
    async def call(self, request, context):
        try:
            return await method(self, request, context)
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as error:
            status = status_of(error)
            await context.abort(status.code, status.message)

    return call
