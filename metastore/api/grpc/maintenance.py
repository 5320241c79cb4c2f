"""etcd's ``Maintenance`` gRPC service over ``MaintenanceService`` (shared
with the JSON API): Alarm, Status, Defragment, Hash, HashKV, the Snapshot
stream and MoveLeader."""

from __future__ import annotations

import grpc

from metastore.api.grpc import convert
from metastore.api.grpc.member import ServedMember, admin_only, call_token, user_only
from metastore.api.grpc.proto import rpc_pb2, rpc_pb2_grpc
from metastore.api.grpc.status import abort_with, answers_etcd_errors
from metastore.api.v3.maintenance import AlarmAction, MaintenanceService, snapshot_chunks
from metastore.facade import AlarmType


class MaintenanceServicer(rpc_pb2_grpc.MaintenanceServicer):
    """etcd's Maintenance RPCs over a member."""

    def __init__(self, served: ServedMember) -> None:
        self._served = served
        self._maintenance = MaintenanceService(served.member)

    def _header_now(self):
        return convert.header(self._served.member.revision, self._served.stamp())

    @answers_etcd_errors
    @admin_only
    async def Alarm(self, request, context):
        """``Maintenance.Alarm``: list, raise or disarm."""
        action = AlarmAction(request.action)
        alarm = AlarmType(request.alarm)
        alarms = await self._served.call(self._maintenance.alarm(action, request.memberID, alarm))
        return rpc_pb2.AlarmResponse(header=self._header_now(), alarms=convert.alarm_members(alarms))

    @answers_etcd_errors
    @user_only
    async def Status(self, request, context):
        """``Maintenance.Status``: this member's view."""
        return convert.status_response(self._maintenance.status(), self._served.stamp())

    @answers_etcd_errors
    @admin_only
    async def Defragment(self, request, context):
        """``Maintenance.Defragment``: nothing to do."""
        self._maintenance.defragment()
        return rpc_pb2.DefragmentResponse(header=self._header_now())

    @answers_etcd_errors
    @admin_only
    async def Hash(self, request, context):
        """``Maintenance.Hash``."""
        answer = self._maintenance.hash()
        return rpc_pb2.HashResponse(header=convert.header(answer.revision, self._served.stamp()), hash=answer.hash)

    @answers_etcd_errors
    @admin_only
    async def HashKV(self, request, context):
        """``Maintenance.HashKV``."""
        answer = self._maintenance.hash_kv(request.revision)
        return rpc_pb2.HashKVResponse(
            header=convert.header(answer.revision, self._served.stamp()),
            hash=answer.hash,
            compact_revision=answer.compact_revision,
        )

    @answers_etcd_errors
    @admin_only
    async def MoveLeader(self, request, context):
        """``Maintenance.MoveLeader``: answers once the target leads."""
        await self._served.call(self._maintenance.move_leader(request.targetID))
        return rpc_pb2.MoveLeaderResponse(header=self._header_now())

    async def Snapshot(self, request, context):
        """``Maintenance.Snapshot``: a new snapshot of the whole store in
        MetaStore's format (``--restore-from`` reads it), streamed in
        blobs, ``remaining_bytes`` counting down to 0."""
        try:
            self._served.member.authorize_admin(call_token(context))
            path = await self._served.call(self._maintenance.snapshot())
        except Exception as error:
            await abort_with(context, error)
            return
        header = self._header_now()
        for blob, remaining in snapshot_chunks(path):
            yield rpc_pb2.SnapshotResponse(header=header, remaining_bytes=remaining, blob=blob)


def register(served: ServedMember, server: grpc.aio.Server) -> None:
    """Add the Maintenance service to ``server``."""
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(MaintenanceServicer(served), server)
