"""etcd's ``KV`` gRPC service: protobuf in, ``KVService`` (shared with the
JSON API), protobuf out."""

from __future__ import annotations

import grpc

from metastore.api.grpc import convert
from metastore.api.grpc.member import ServedMember, call_token
from metastore.api.grpc.proto import rpc_pb2_grpc
from metastore.api.grpc.status import answers_etcd_errors
from metastore.api.v3.kv import KVService


class KVServicer(rpc_pb2_grpc.KVServicer):
    """Range, Put, DeleteRange, Txn and Compact over a member."""

    def __init__(self, served: ServedMember) -> None:
        self._served = served
        self._kv = KVService(served.member, served.wait_physical)

    def _authorized(self, context, request) -> tuple:
        """``(request, auth)`` once the call's user may make it (else etcd's
        auth error): the arguments of the ``KVService`` method."""
        return request, self._served.member.authorize(call_token(context), request)

    @answers_etcd_errors
    async def Range(self, request, context):
        """``KV.Range``."""
        response = await self._served.call(self._kv.range(*self._authorized(context, convert.range_request(request))))
        return convert.range_response(response, self._served.stamp())

    @answers_etcd_errors
    async def Put(self, request, context):
        """``KV.Put``."""
        response = await self._served.call(self._kv.put(*self._authorized(context, convert.put_request(request))))
        return convert.put_response(response, self._served.stamp())

    @answers_etcd_errors
    async def DeleteRange(self, request, context):
        """``KV.DeleteRange``."""
        response = await self._served.call(self._kv.delete_range(*self._authorized(context, convert.delete_range_request(request))))
        return convert.delete_range_response(response, self._served.stamp())

    @answers_etcd_errors
    async def Txn(self, request, context):
        """``KV.Txn``."""
        response = await self._served.call(self._kv.txn(*self._authorized(context, convert.txn_request(request))))
        return convert.txn_response(response, self._served.stamp())

    @answers_etcd_errors
    async def Compact(self, request, context):
        """``KV.Compact``."""
        response = await self._served.call(self._kv.compact(*self._authorized(context, convert.compaction_request(request))))
        return convert.compaction_response(response, self._served.stamp())


def register(served: ServedMember, server: grpc.aio.Server) -> None:
    """Add the KV service to ``server``."""
    rpc_pb2_grpc.add_KVServicer_to_server(KVServicer(served), server)
