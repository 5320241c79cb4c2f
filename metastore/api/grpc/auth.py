"""etcd's ``Auth`` gRPC service: protobuf to the v3 ``AuthService`` (shared
with the JSON API) and back; the caller's token comes from the call's
``token`` metadata, as clientv3 sends it."""

from __future__ import annotations

import grpc

from metastore.api.grpc import convert
from metastore.api.grpc.member import ServedMember, call_token
from metastore.api.grpc.proto import auth_pb2, rpc_pb2, rpc_pb2_grpc
from metastore.api.grpc.status import answers_etcd_errors
from metastore.api.v3.auth import AuthService
from metastore.auth.messages import Permission, PermissionType


class AuthServicer(rpc_pb2_grpc.AuthServicer):
    """Every ``Auth`` RPC over the v3 ``AuthService``."""

    def __init__(self, served: ServedMember) -> None:
        self._served = served
        self._auth = AuthService(served.member)

    def _header(self):
        return convert.header(self._served.member.revision, self._served.stamp())

    async def _call(self, coroutine):
        return await self._served.call(coroutine)

    @answers_etcd_errors
    async def AuthEnable(self, request, context):
        """Enable auth (root must exist with the root role)."""
        await self._call(self._auth.enable(call_token(context)))
        return rpc_pb2.AuthEnableResponse(header=self._header())

    @answers_etcd_errors
    async def AuthDisable(self, request, context):
        """Disable auth."""
        await self._call(self._auth.disable(call_token(context)))
        return rpc_pb2.AuthDisableResponse(header=self._header())

    @answers_etcd_errors
    async def Authenticate(self, request, context):
        """A token for a user name and password."""
        token = await self._call(self._auth.authenticate(request.name, request.password))
        return rpc_pb2.AuthenticateResponse(header=self._header(), token=token)

    @answers_etcd_errors
    async def UserAdd(self, request, context):
        """Add a user."""
        no_password = request.HasField("options") and request.options.no_password
        await self._call(self._auth.user_add(call_token(context), request.name, request.password, no_password))
        return rpc_pb2.AuthUserAddResponse(header=self._header())

    @answers_etcd_errors
    async def UserGet(self, request, context):
        """A user's roles."""
        roles = await self._call(self._auth.user_get(call_token(context), request.name))
        return rpc_pb2.AuthUserGetResponse(header=self._header(), roles=list(roles))

    @answers_etcd_errors
    async def UserList(self, request, context):
        """Every user."""
        users = await self._call(self._auth.user_list(call_token(context)))
        return rpc_pb2.AuthUserListResponse(header=self._header(), users=list(users))

    @answers_etcd_errors
    async def UserDelete(self, request, context):
        """Delete a user."""
        await self._call(self._auth.user_delete(call_token(context), request.name))
        return rpc_pb2.AuthUserDeleteResponse(header=self._header())

    @answers_etcd_errors
    async def UserChangePassword(self, request, context):
        """Change a user's password."""
        await self._call(self._auth.user_change_password(call_token(context), request.name, request.password))
        return rpc_pb2.AuthUserChangePasswordResponse(header=self._header())

    @answers_etcd_errors
    async def UserGrantRole(self, request, context):
        """Grant a role to a user."""
        await self._call(self._auth.user_grant_role(call_token(context), request.user, request.role))
        return rpc_pb2.AuthUserGrantRoleResponse(header=self._header())

    @answers_etcd_errors
    async def UserRevokeRole(self, request, context):
        """Revoke a role from a user."""
        await self._call(self._auth.user_revoke_role(call_token(context), request.name, request.role))
        return rpc_pb2.AuthUserRevokeRoleResponse(header=self._header())

    @answers_etcd_errors
    async def RoleAdd(self, request, context):
        """Add a role."""
        await self._call(self._auth.role_add(call_token(context), request.name))
        return rpc_pb2.AuthRoleAddResponse(header=self._header())

    @answers_etcd_errors
    async def RoleGet(self, request, context):
        """A role's permissions."""
        perms = await self._call(self._auth.role_get(call_token(context), request.role))
        found = [auth_pb2.Permission(permType=int(p.perm_type), key=p.key, range_end=p.range_end) for p in perms]
        return rpc_pb2.AuthRoleGetResponse(header=self._header(), perm=found)

    @answers_etcd_errors
    async def RoleList(self, request, context):
        """Every role."""
        roles = await self._call(self._auth.role_list(call_token(context)))
        return rpc_pb2.AuthRoleListResponse(header=self._header(), roles=list(roles))

    @answers_etcd_errors
    async def RoleDelete(self, request, context):
        """Delete a role."""
        await self._call(self._auth.role_delete(call_token(context), request.role))
        return rpc_pb2.AuthRoleDeleteResponse(header=self._header())

    @answers_etcd_errors
    async def RoleGrantPermission(self, request, context):
        """Grant a key-range permission to a role."""
        perm = Permission(PermissionType(request.perm.permType), request.perm.key, request.perm.range_end)
        await self._call(self._auth.role_grant_permission(call_token(context), request.name, perm))
        return rpc_pb2.AuthRoleGrantPermissionResponse(header=self._header())

    @answers_etcd_errors
    async def RoleRevokePermission(self, request, context):
        """Revoke a role's permission on exactly ``key``/``range_end``."""
        await self._call(self._auth.role_revoke_permission(call_token(context), request.role, request.key,
                                                           request.range_end))
        return rpc_pb2.AuthRoleRevokePermissionResponse(header=self._header())


def register(served: ServedMember, server: grpc.aio.Server) -> None:
    """Add the Auth service to ``server``."""
    rpc_pb2_grpc.add_AuthServicer_to_server(AuthServicer(served), server)
