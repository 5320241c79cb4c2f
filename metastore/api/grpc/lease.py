"""etcd's ``Lease`` service over gRPC: protobuf to the v3 ``LeaseService`` and back.

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

import grpc

from metastore.api.grpc import convert
from metastore.api.grpc.proto import rpc_pb2, rpc_pb2_grpc
from metastore.api.grpc.member import call_token
from metastore.api.grpc.status import abort_with, answers_etcd_errors
from metastore.api.v3 import lease as v3


class LeaseServicer(rpc_pb2_grpc.LeaseServicer):
    """``Lease`` over the v3 ``LeaseService`` (module docstring)."""

    def __init__(self, served) -> None:
        self._served = served
        self._leases = v3.LeaseService(served.member)

    def _header(self, header) -> rpc_pb2.ResponseHeader:
        return convert.response_header(header, self._served.stamp())

    @answers_etcd_errors
    async def LeaseGrant(self, request, context):
        """Grant a lease (``ID`` 0: this member picks one)."""
        asked = v3.LeaseGrantRequest(request.TTL, request.ID)
        auth = self._served.member.authorize(call_token(context), asked)
        granted = await self._served.call(self._leases.grant(asked, auth))
        return rpc_pb2.LeaseGrantResponse(header=self._header(granted.header), ID=granted.id, TTL=granted.ttl)

    @answers_etcd_errors
    async def LeaseRevoke(self, request, context):
        """Revoke a lease and delete its keys."""
        asked = v3.LeaseRevokeRequest(request.ID)
        auth = self._served.member.authorize(call_token(context), asked)
        revoked = await self._served.call(self._leases.revoke(asked, auth))
        return rpc_pb2.LeaseRevokeResponse(header=self._header(revoked.header))

    @answers_etcd_errors
    async def LeaseTimeToLive(self, request, context):
        """A lease's remaining and granted TTL (and keys); TTL -1 for an unknown lease."""
        asked = v3.LeaseTimeToLiveRequest(request.ID, request.keys)
        self._served.member.authorize_user(call_token(context))
        status = await self._served.call(self._leases.time_to_live(asked))
        return rpc_pb2.LeaseTimeToLiveResponse(
            header=self._header(status.header), ID=status.id, TTL=status.ttl,
            grantedTTL=status.granted_ttl, keys=list(status.keys),
        )  # fmt: skip

    @answers_etcd_errors
    async def LeaseLeases(self, request, context):
        """Every lease's id."""
        self._served.member.authorize_user(call_token(context))
        listed = await self._served.call(self._leases.leases(v3.LeaseLeasesRequest()))
        leases = [rpc_pb2.LeaseStatus(ID=lease_id) for lease_id in listed.ids]
        return rpc_pb2.LeaseLeasesResponse(header=self._header(listed.header), leases=leases)

    async def LeaseKeepAlive(self, request_iterator, context):
        """Renew each lease the client names, answering each in turn; a
        failure ends the stream with etcd's status."""
        async for request in request_iterator:
            try:
                self._served.member.authorize_user(call_token(context))
                renewed = await self._served.call(self._leases.keepalive(v3.LeaseKeepAliveRequest(request.ID)))
            except Exception as error:
                await abort_with(context, error)
            await context.write(
                rpc_pb2.LeaseKeepAliveResponse(header=self._header(renewed.header), ID=request.ID, TTL=renewed.ttl)
            )


def register(served, server: grpc.aio.Server) -> None:
    """Add the Lease service for ``served`` (a ``ServedMember``) to ``server``."""
    rpc_pb2_grpc.add_LeaseServicer_to_server(LeaseServicer(served), server)
