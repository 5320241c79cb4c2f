"""etcd's Auth service, protocol-neutral: enable, disable, authenticate,
users and roles, on plain values; and its JSON form for the v3 JSON API.

Management calls need the root role once auth is enabled (before, anyone
may prepare users and roles, as in etcd).  Passwords are hashed here, at
the API edge and off the reactor thread; only the hash is proposed, so no
password reaches the raft log.  Reads (get, list) answer from this
member's applied state after a linearizable read barrier.
"""

from __future__ import annotations

import base64
from typing import Awaitable, Callable

from twisted.internet.threads import deferToThread

from metastore.api.v3.errors import INVALID_ARGUMENT, V3Error
from metastore.api.v3.header import Headers
from metastore.api.v3.json_fields import bool_field, bytes_field, object_field, raw_field
from metastore.auth.errors import RoleNotFound, UserEmpty, UserNotFound
from metastore.auth.messages import (
    AuthDisable,
    AuthEnable,
    Permission,
    PermissionType,
    RoleAdd,
    RoleDelete,
    RoleGrantPermission,
    RoleRevokePermission,
    UserAdd,
    UserChangePassword,
    UserDelete,
    UserGrantRole,
    UserRevokeRole,
)
from metastore.auth.passwords import hash_password
from metastore.facade import Consistency, MemberFacade


class AuthService:
    """etcd's ``Auth`` service over a member's facade; every method takes
    the caller's ``token`` (None when it sent none)."""

    def __init__(self, member: MemberFacade, hash_off_thread: Callable[[str], Awaitable[bytes]] | None = None) -> None:
        self._member = member
        self._hash = hash_off_thread or (lambda password: deferToThread(hash_password, password))

    async def _change(self, token: str | None, command) -> None:
        await self._member.propose(command, self._member.authorize_admin(token))

    async def _read(self, token: str | None):
        self._member.authorize_admin(token)
        await self._member.read(Consistency.LINEARIZABLE)
        return self._member.auth_state()

    async def enable(self, token: str | None) -> None:
        """``AuthEnable``: root must exist and hold the root role."""
        await self._change(token, AuthEnable())

    async def disable(self, token: str | None) -> None:
        """``AuthDisable``."""
        await self._change(token, AuthDisable())

    async def authenticate(self, name: str, password: str) -> str:
        """``Authenticate``: a token for ``name``."""
        return await self._member.authenticate(name, password)

    async def user_add(self, token: str | None, name: str, password: str, no_password: bool = False) -> None:
        """``UserAdd`` (the password hashed here, off the reactor thread)."""
        self._member.authorize_admin(token)
        if not name:
            raise UserEmpty()
        hashed = b"" if no_password else await self._hash(password)
        await self._change(token, UserAdd(name, hashed, no_password))

    async def user_change_password(self, token: str | None, name: str, password: str) -> None:
        """``UserChangePassword``."""
        self._member.authorize_admin(token)
        await self._change(token, UserChangePassword(name, await self._hash(password)))

    async def user_delete(self, token: str | None, name: str) -> None:
        """``UserDelete``."""
        await self._change(token, UserDelete(name))

    async def user_grant_role(self, token: str | None, user: str, role: str) -> None:
        """``UserGrantRole``."""
        await self._change(token, UserGrantRole(user, role))

    async def user_revoke_role(self, token: str | None, name: str, role: str) -> None:
        """``UserRevokeRole``."""
        await self._change(token, UserRevokeRole(name, role))

    async def user_get(self, token: str | None, name: str) -> tuple[str, ...]:
        """``UserGet``: the user's roles."""
        state = await self._read(token)
        if name not in state.users:
            raise UserNotFound()
        return state.users[name].roles

    async def user_list(self, token: str | None) -> tuple[str, ...]:
        """``UserList``: every user's name, sorted."""
        return tuple(sorted((await self._read(token)).users))

    async def role_add(self, token: str | None, name: str) -> None:
        """``RoleAdd``."""
        await self._change(token, RoleAdd(name))

    async def role_delete(self, token: str | None, role: str) -> None:
        """``RoleDelete``."""
        await self._change(token, RoleDelete(role))

    async def role_grant_permission(self, token: str | None, name: str, perm: Permission) -> None:
        """``RoleGrantPermission``."""
        await self._change(token, RoleGrantPermission(name, perm))

    async def role_revoke_permission(self, token: str | None, role: str, key: bytes, range_end: bytes) -> None:
        """``RoleRevokePermission``."""
        await self._change(token, RoleRevokePermission(role, key, range_end))

    async def role_get(self, token: str | None, role: str) -> tuple[Permission, ...]:
        """``RoleGet``: the role's permissions, by key."""
        state = await self._read(token)
        if role not in state.roles:
            raise RoleNotFound()
        return state.roles[role].permissions

    async def role_list(self, token: str | None) -> tuple[str, ...]:
        """``RoleList``: every role's name, sorted."""
        return tuple(sorted((await self._read(token)).roles))


def _text(body: dict, name: str) -> str:
    value = raw_field(body, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise V3Error(INVALID_ARGUMENT, f"{name} must be a string")
    return value


def _perm_type(value) -> PermissionType:
    if value is None:
        return PermissionType.READ
    try:
        return PermissionType[value] if isinstance(value, str) else PermissionType(value)
    except (KeyError, ValueError, TypeError):
        raise V3Error(INVALID_ARGUMENT, f"permType: unknown permission type {value!r}") from None


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def permission_json(perm: Permission) -> dict:
    """A permission as the gateway writes it (READ, the zero value, left out)."""
    fields = {"permType": perm.perm_type.name} if perm.perm_type else {}
    if perm.key:
        fields["key"] = _b64(perm.key)
    if perm.range_end:
        fields["range_end"] = _b64(perm.range_end)
    return fields


class AuthJSON:
    """The Auth service's JSON RPCs: ``rpcs`` maps each path after
    ``/v3/`` to a coroutine of (body, token) answering the JSON response."""

    def __init__(self, service: AuthService, headers: Headers) -> None:
        self._service = service
        self._headers = headers
        s = service
        self.rpcs: dict[str, Callable[[dict, str | None], Awaitable[dict]]] = {
            "auth/enable": self._done(lambda b, t: s.enable(t)),
            "auth/disable": self._done(lambda b, t: s.disable(t)),
            "auth/authenticate": self._authenticate,
            "auth/user/add": self._done(lambda b, t: s.user_add(
                t, _text(b, "name"), _text(b, "password"), bool_field(object_field(b, "options") or {}, "no_password"))),
            "auth/user/delete": self._done(lambda b, t: s.user_delete(t, _text(b, "name"))),
            "auth/user/changepw": self._done(lambda b, t: s.user_change_password(t, _text(b, "name"), _text(b, "password"))),
            "auth/user/grant": self._done(lambda b, t: s.user_grant_role(t, _text(b, "user"), _text(b, "role"))),
            "auth/user/revoke": self._done(lambda b, t: s.user_revoke_role(t, _text(b, "name"), _text(b, "role"))),
            "auth/user/get": self._listing("roles", lambda b, t: s.user_get(t, _text(b, "name"))),
            "auth/user/list": self._listing("users", lambda b, t: s.user_list(t)),
            "auth/role/add": self._done(lambda b, t: s.role_add(t, _text(b, "name"))),
            "auth/role/delete": self._done(lambda b, t: s.role_delete(t, _text(b, "role"))),
            "auth/role/grant": self._done(self._grant),
            "auth/role/revoke": self._done(lambda b, t: s.role_revoke_permission(
                t, _text(b, "role"), bytes_field(b, "key"), bytes_field(b, "range_end"))),
            "auth/role/get": self._role_get,
            "auth/role/list": self._listing("roles", lambda b, t: s.role_list(t)),
        }  # fmt: skip

    def _done(self, call) -> Callable[[dict, str | None], Awaitable[dict]]:
        async def rpc(body: dict, token: str | None) -> dict:
            await call(body, token)
            return {"header": self._headers.now()}

        return rpc

    def _listing(self, name: str, call) -> Callable[[dict, str | None], Awaitable[dict]]:
        async def rpc(body: dict, token: str | None) -> dict:
            names = await call(body, token)
            return {"header": self._headers.now(), **({name: list(names)} if names else {})}

        return rpc

    async def _authenticate(self, body: dict, token: str | None) -> dict:
        issued = await self._service.authenticate(_text(body, "name"), _text(body, "password"))
        return {"header": self._headers.now(), "token": issued}

    def _grant(self, body: dict, token: str | None):
        perm = object_field(body, "perm") or {}
        permission = Permission(_perm_type(raw_field(perm, "perm_type")), bytes_field(perm, "key"),
                                bytes_field(perm, "range_end"))
        return self._service.role_grant_permission(token, _text(body, "name"), permission)

    async def _role_get(self, body: dict, token: str | None) -> dict:
        perms = await self._service.role_get(token, _text(body, "role"))
        return {"header": self._headers.now(), **({"perm": [permission_json(p) for p in perms]} if perms else {})}
