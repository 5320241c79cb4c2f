"""etcd's ``Cluster`` gRPC service over ``ClusterService`` (shared with
the JSON API).  Headers carry no revision, as etcd's do here; members list
their gRPC URL as ``clientURLs`` (``convert.member``)."""

from __future__ import annotations

import grpc

from metastore.api.grpc import convert
from metastore.api.grpc.member import ServedMember, admin_only, user_only
from metastore.api.grpc.proto import rpc_pb2, rpc_pb2_grpc
from metastore.api.grpc.status import answers_etcd_errors
from metastore.api.v3.cluster import ClusterService


class ClusterServicer(rpc_pb2_grpc.ClusterServicer):
    """MemberAdd, MemberRemove, MemberUpdate, MemberList, MemberPromote."""

    def __init__(self, served: ServedMember) -> None:
        self._served = served
        self._cluster = ClusterService(served.member)

    def _header(self):
        return convert.header(0, self._served.stamp())

    @answers_etcd_errors
    @user_only
    async def MemberList(self, request, context):
        """``Cluster.MemberList``."""
        listing = self._cluster.list()
        return rpc_pb2.MemberListResponse(header=self._header(), members=convert.members(listing))

    @answers_etcd_errors
    @admin_only
    async def MemberAdd(self, request, context):
        """``Cluster.MemberAdd``."""
        listing = await self._served.call(self._cluster.add(list(request.peerURLs), request.isLearner))
        return rpc_pb2.MemberAddResponse(
            header=self._header(), member=convert.member(listing.added), members=convert.members(listing)
        )

    @answers_etcd_errors
    @admin_only
    async def MemberRemove(self, request, context):
        """``Cluster.MemberRemove``."""
        listing = await self._served.call(self._cluster.remove(request.ID))
        return rpc_pb2.MemberRemoveResponse(header=self._header(), members=convert.members(listing))

    @answers_etcd_errors
    @admin_only
    async def MemberUpdate(self, request, context):
        """``Cluster.MemberUpdate``."""
        listing = await self._served.call(self._cluster.update(request.ID, list(request.peerURLs)))
        return rpc_pb2.MemberUpdateResponse(header=self._header(), members=convert.members(listing))

    @answers_etcd_errors
    @admin_only
    async def MemberPromote(self, request, context):
        """``Cluster.MemberPromote``."""
        listing = await self._served.call(self._cluster.promote(request.ID))
        return rpc_pb2.MemberPromoteResponse(header=self._header(), members=convert.members(listing))


def register(served: ServedMember, server: grpc.aio.Server) -> None:
    """Add the Cluster service to ``server``."""
    rpc_pb2_grpc.add_ClusterServicer_to_server(ClusterServicer(served), server)
