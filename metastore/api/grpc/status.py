"""Which gRPC status a failure answers with: etcd's code and message.

Clients act on these: clientv3 retries on ``UNAVAILABLE`` at another
member and shows the ``etcdserver: ...`` text; a compacted revision is
``OUT_OF_RANGE``.  The table is the one the JSON API answers from
(``metastore.api.v3.errors.v3_error``), so both APIs answer a failure
alike; servicers only raise.  Anything the table does not know answers
``UNKNOWN`` with its text, as etcd does for an error it has no entry for.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import grpc

from metastore.api.v3.errors import v3_error
from metastore.errors import Stopping

_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True, slots=True)
class EtcdStatus:
    """A gRPC status code and etcd's message for it."""

    code: grpc.StatusCode
    message: str


def status_of(error: BaseException) -> EtcdStatus:
    """The status ``error`` answers with (see the module's rules)."""
    known = v3_error(error)
    if known is None:
        return EtcdStatus(grpc.StatusCode.UNKNOWN, str(error) or type(error).__name__)
    return EtcdStatus(_CODES.get(known.code, grpc.StatusCode.UNKNOWN), known.message)


async def abort_with(context: grpc.aio.ServicerContext, error: BaseException) -> None:
    """End the call with ``status_of(error)``."""
    status = status_of(error)
    await context.abort(status.code, status.message)


SERVER_STOPPED = status_of(Stopping("the member is stopping"))
"""What a stream still open when the member stops ends with (etcd's
"etcdserver: server stopped", UNAVAILABLE: clients resume elsewhere)."""


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
            await abort_with(context, error)

    return call
