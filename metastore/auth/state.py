"""The replicated auth state (etcd's auth store): whether auth is enabled,
the users and roles, and the auth revision, which grows by one with every
change applied, on every member alike.

``AuthState.apply`` is deterministic (no clock, no randomness, no I/O): the
applier calls it with each committed auth command; a refused command
changes nothing and raises etcd's ``AuthError``.  ``encode``/``decode`` are
the stored form the engines and snapshots carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import msgpack

from metastore.auth import errors
from metastore.auth.ranges import covers
from metastore.auth.messages import (
    AuthCommand,
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

ROOT = "root"
"""The root user's and the root role's name: the root role may do anything."""


@dataclass(frozen=True, slots=True)
class User:
    """A user: its password hash (empty: it cannot authenticate) and its roles, sorted."""

    name: str
    password_hash: bytes
    roles: tuple[str, ...] = ()
    no_password: bool = False


@dataclass(frozen=True, slots=True)
class Role:
    """A role and its permissions, sorted by key."""

    name: str
    permissions: tuple[Permission, ...] = ()


@dataclass
class AuthState:
    """Users, roles, the enabled flag and the auth revision as applied here."""

    enabled: bool = False
    revision: int = 1
    users: dict[str, User] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    _encoded: bytes | None = field(default=None, compare=False, repr=False)
    """``encode``'s answer until the next change (the applier stores the
    record with every batch, so this is on the write path)."""

    # -- questions -----------------------------------------------------------

    def is_root(self, user_name: str) -> bool:
        """Whether ``user_name`` holds the root role."""
        user = self.users.get(user_name)
        return user is not None and ROOT in user.roles

    def is_old(self, revision: int) -> bool:
        """Whether a request checked at auth ``revision`` must be checked
        again: auth is enabled and its state changed since (etcd's
        ``ErrAuthOldRevision``)."""
        return self.enabled and revision < self.revision

    def may_write(self, user_name: str, keys: list[bytes]) -> bool:
        """Whether ``user_name`` may write every one of ``keys`` (the keys
        attached to a lease it revokes or attaches a key to)."""
        if self.is_root(user_name):
            return True
        permissions = self.permissions_of(user_name)
        return all(covers(permissions, PermissionType.WRITE, key, b"") for key in keys)

    def permissions_of(self, user_name: str) -> list[Permission]:
        """Every permission the user's roles grant."""
        user = self.users.get(user_name)
        if user is None:
            return []
        return [p for r in user.roles if r in self.roles for p in self.roles[r].permissions]

    # -- changes ---------------------------------------------------------------

    def apply(self, command: AuthCommand) -> None:
        """Apply a committed auth command: change the state and bump the
        revision, or raise etcd's ``AuthError`` and change nothing."""
        _APPLY[type(command)](self, command)
        self.revision += 1
        self._encoded = None

    def _enable(self, command: AuthEnable) -> None:
        if self.enabled:
            return
        if ROOT not in self.users:
            raise errors.RootUserMissing()
        if ROOT not in self.users[ROOT].roles:
            raise errors.RootRoleMissing()
        self.enabled = True

    def _disable(self, command: AuthDisable) -> None:
        self.enabled = False

    def _user_add(self, command: UserAdd) -> None:
        if not command.name:
            raise errors.UserEmpty()
        if command.name in self.users:
            raise errors.UserExists()
        self.users[command.name] = User(command.name, command.password_hash, (), command.no_password)

    def _user(self, name: str) -> User:
        if name not in self.users:
            raise errors.UserNotFound()
        return self.users[name]

    def _user_delete(self, command: UserDelete) -> None:
        if self.enabled and command.name == ROOT:
            raise errors.InvalidAuthManagement()
        self._user(command.name)
        del self.users[command.name]

    def _change_password(self, command: UserChangePassword) -> None:
        user = self._user(command.name)
        self.users[command.name] = replace(user, password_hash=command.password_hash)

    def _grant_role(self, command: UserGrantRole) -> None:
        user = self._user(command.user)
        if command.role != ROOT and command.role not in self.roles:
            raise errors.RoleNotFound()
        if command.role not in user.roles:
            self.users[command.user] = replace(user, roles=tuple(sorted((*user.roles, command.role))))

    def _revoke_role(self, command: UserRevokeRole) -> None:
        if self.enabled and command.name == ROOT and command.role == ROOT:
            raise errors.InvalidAuthManagement()
        user = self._user(command.name)
        if command.role not in user.roles:
            raise errors.RoleNotGranted()
        self.users[command.name] = replace(user, roles=tuple(r for r in user.roles if r != command.role))

    def _role_add(self, command: RoleAdd) -> None:
        if not command.name:
            raise errors.RoleEmpty()
        if command.name in self.roles:
            raise errors.RoleExists()
        self.roles[command.name] = Role(command.name)

    def _role(self, name: str) -> Role:
        if name not in self.roles:
            raise errors.RoleNotFound()
        return self.roles[name]

    def _role_delete(self, command: RoleDelete) -> None:
        if self.enabled and command.role == ROOT:
            raise errors.InvalidAuthManagement()
        self._role(command.role)
        del self.roles[command.role]
        for name, user in self.users.items():
            if command.role in user.roles:
                self.users[name] = replace(user, roles=tuple(r for r in user.roles if r != command.role))

    def _grant_permission(self, command: RoleGrantPermission) -> None:
        role = self._role(command.name)
        perm = command.perm
        kept = [p for p in role.permissions if (p.key, p.range_end) != (perm.key, perm.range_end)]
        self.roles[command.name] = replace(role, permissions=tuple(sorted((*kept, perm), key=_perm_order)))

    def _revoke_permission(self, command: RoleRevokePermission) -> None:
        role = self._role(command.role)
        kept = tuple(p for p in role.permissions if (p.key, p.range_end) != (command.key, command.range_end))
        if len(kept) == len(role.permissions):
            raise errors.PermissionNotGranted()
        self.roles[command.role] = replace(role, permissions=kept)

    # -- stored form -----------------------------------------------------------

    def encode(self) -> bytes:
        """The stored (msgpack) form, the same bytes on every member for the same state."""
        if self._encoded is None:
            self._encoded = self._pack()
        return self._encoded

    def _pack(self) -> bytes:
        return msgpack.packb([
            1, self.enabled, self.revision,
            [[u.name, u.password_hash, list(u.roles), u.no_password] for u in sorted(self.users.values(), key=_name)],
            [[r.name, [[int(p.perm_type), p.key, p.range_end] for p in r.permissions]]
             for r in sorted(self.roles.values(), key=_name)],
        ])  # fmt: skip

    @classmethod
    def decode(cls, stored: bytes) -> "AuthState":
        """The state from ``encode``'s bytes (empty bytes: the initial state)."""
        if not stored:
            return cls()
        version, enabled, revision, users, roles = msgpack.unpackb(stored)
        if version != 1:
            raise ValueError(f"auth state format {version!r} is not supported")
        return cls(
            bool(enabled),
            int(revision),
            {n: User(n, bytes(h), tuple(r), bool(np)) for n, h, r, np in users},
            {n: Role(n, tuple(Permission(PermissionType(t), bytes(k), bytes(e)) for t, k, e in perms))
             for n, perms in roles},
        )  # fmt: skip


def _name(item: User | Role) -> str:
    return item.name


def _perm_order(perm: Permission) -> tuple[bytes, bytes]:
    return (perm.key, perm.range_end)


_APPLY = {
    AuthEnable: AuthState._enable,
    AuthDisable: AuthState._disable,
    UserAdd: AuthState._user_add,
    UserDelete: AuthState._user_delete,
    UserChangePassword: AuthState._change_password,
    UserGrantRole: AuthState._grant_role,
    UserRevokeRole: AuthState._revoke_role,
    RoleAdd: AuthState._role_add,
    RoleDelete: AuthState._role_delete,
    RoleGrantPermission: AuthState._grant_permission,
    RoleRevokePermission: AuthState._revoke_permission,
}
