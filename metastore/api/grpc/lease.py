"""etcd's ``Lease`` service over the member facade.

Answers as etcd 3.4 does (checked against ``/usr/bin/etcd``): a grant
asking for less than the minimum TTL gets the minimum; a grant of an id in
use is FAILED_PRECONDITION "etcdserver: lease already exists"; more than
etcd's largest TTL is OUT_OF_RANGE "etcdserver: too large lease TTL"; a
revoke of an unknown lease is NOT_FOUND "etcdserver: requested lease not
found"; TimeToLive of an unknown lease answers TTL -1, and a keepalive of
one answers TTL 0, on a stream that goes on.  A member that cannot reach a
leader answers UNAVAILABLE "etcdserver: no leader" (or "request timed
out"), the code clients retry on (``metastore.api.grpc.status``).

``LeaseKeepAlive`` handles its requests one at a time, as etcd does: the
next request is read once the previous answer is written, so a client
that stops reading holds one answer and its own requests wait in HTTP/2
flow control, never in this process.
"""

from __future__ import annotations

from typing import Callable

from metastore.api.grpc import convert
from metastore.api.grpc.convert import HeaderStamp
from metastore.api.grpc.proto import rpc_pb2, rpc_pb2_grpc
from metastore.api.grpc.server import as_future
from metastore.api.grpc.status import answers_etcd_errors, status_of
from metastore.facade import Consistency
from metastore.kv.errors import LeaseNotFoundError
from metastore.kv.messages import ResponseHeader


class LeaseServicer(rpc_pb2_grpc.LeaseServicer):
    """``Lease`` over a member facade (module docstring)."""

    def __init__(self, member, reactor, stamp: Callable[[], HeaderStamp]) -> None:
        self._member = member
        self._reactor = reactor
        self._stamp = stamp

    def _header(self, revision: int) -> rpc_pb2.ResponseHeader:
        return convert.response_header(ResponseHeader(revision), self._stamp())

    async def _wait(self, d):
        return await as_future(d, self._reactor)

    @answers_etcd_errors
    async def LeaseGrant(self, request, context):
        """Grant a lease (``ID`` 0: this member picks one)."""
        granted = await self._wait(self._member.lease_grant(request.TTL, request.ID))
        return rpc_pb2.LeaseGrantResponse(header=self._header(granted.header.revision), ID=granted.id, TTL=granted.ttl)

    @answers_etcd_errors
    async def LeaseRevoke(self, request, context):
        """Revoke a lease and delete its keys."""
        revoked = await self._wait(self._member.lease_revoke(request.ID))
        return rpc_pb2.LeaseRevokeResponse(header=self._header(revoked.header.revision))

    @answers_etcd_errors
    async def LeaseTimeToLive(self, request, context):
        """A lease's remaining and granted TTL (and keys), after a
        linearizable read barrier; TTL -1 for an unknown lease."""
        await self._wait(self._member.read(Consistency.LINEARIZABLE))
        status = self._member.lease_time_to_live(request.ID, request.keys)
        return rpc_pb2.LeaseTimeToLiveResponse(
            header=self._header(self._member.revision), ID=request.ID, TTL=status.ttl,
            grantedTTL=status.granted_ttl, keys=list(status.keys),
        )  # fmt: skip

    @answers_etcd_errors
    async def LeaseLeases(self, request, context):
        """Every lease's id, after a linearizable read barrier."""
        await self._wait(self._member.read(Consistency.LINEARIZABLE))
        leases = [rpc_pb2.LeaseStatus(ID=lease.id) for lease in self._member.leases()]
        return rpc_pb2.LeaseLeasesResponse(header=self._header(self._member.revision), leases=leases)

    async def LeaseKeepAlive(self, request_iterator, context):
        """Renew each lease the client names, answering each in turn; a
        failure other than an unknown lease ends the stream with etcd's status."""
        async for request in request_iterator:
            try:
                renewed = await self._wait(self._member.lease_keepalive(request.ID))
                answer = rpc_pb2.LeaseKeepAliveResponse(
                    header=self._header(renewed.header.revision), ID=request.ID, TTL=renewed.ttl
                )
            except LeaseNotFoundError:
                answer = rpc_pb2.LeaseKeepAliveResponse(header=self._header(self._member.revision), ID=request.ID)
            except Exception as error:
                status = status_of(error)
                await context.abort(status.code, status.message)
            await context.write(answer)
