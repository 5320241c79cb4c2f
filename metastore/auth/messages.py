"""etcd's auth requests as replicated commands (the password already
hashed: a password never enters the raft log), and the permission types."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union


class PermissionType(enum.IntEnum):
    """etcd's ``Permission.Type``."""

    READ = 0
    WRITE = 1
    READWRITE = 2

    def allows(self, needed: "PermissionType") -> bool:
        """Whether holding this type grants ``needed`` (READ or WRITE)."""
        return self is PermissionType.READWRITE or self is needed


@dataclass(frozen=True, slots=True)
class Permission:
    """``perm_type`` on ``key`` (``range_end`` empty), ``[key, range_end)``,
    or every key from ``key`` (``range_end`` ``b"\\0"``)."""

    perm_type: PermissionType
    key: bytes
    range_end: bytes = b""


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """Who a client request was checked for and at which auth revision
    (etcd's ``AuthInfo``): a write proposal carries it, and every member
    refuses the write at apply when the auth state moved past ``revision``."""

    user: str
    revision: int


@dataclass(frozen=True, slots=True)
class AuthEnable:
    """``Auth.AuthEnable``: refused unless ``root`` exists with the root role."""


@dataclass(frozen=True, slots=True)
class AuthDisable:
    """``Auth.AuthDisable``."""


@dataclass(frozen=True, slots=True)
class UserAdd:
    """``Auth.UserAdd`` with the password's hash (empty with ``no_password``)."""

    name: str
    password_hash: bytes
    no_password: bool = False


@dataclass(frozen=True, slots=True)
class UserDelete:
    """``Auth.UserDelete``."""

    name: str


@dataclass(frozen=True, slots=True)
class UserChangePassword:
    """``Auth.UserChangePassword`` with the new password's hash."""

    name: str
    password_hash: bytes


@dataclass(frozen=True, slots=True)
class UserGrantRole:
    """``Auth.UserGrantRole``."""

    user: str
    role: str


@dataclass(frozen=True, slots=True)
class UserRevokeRole:
    """``Auth.UserRevokeRole``."""

    name: str
    role: str


@dataclass(frozen=True, slots=True)
class RoleAdd:
    """``Auth.RoleAdd``."""

    name: str


@dataclass(frozen=True, slots=True)
class RoleDelete:
    """``Auth.RoleDelete``."""

    role: str


@dataclass(frozen=True, slots=True)
class RoleGrantPermission:
    """``Auth.RoleGrantPermission``."""

    name: str
    perm: Permission


@dataclass(frozen=True, slots=True)
class RoleRevokePermission:
    """``Auth.RoleRevokePermission``: the permission on exactly ``key``, ``range_end``."""

    role: str
    key: bytes
    range_end: bytes = b""


AuthCommand = Union[
    AuthEnable, AuthDisable, UserAdd, UserDelete, UserChangePassword, UserGrantRole, UserRevokeRole,
    RoleAdd, RoleDelete, RoleGrantPermission, RoleRevokePermission,
]  # fmt: skip

AUTH_COMMANDS: tuple[type, ...] = (
    AuthEnable, AuthDisable, UserAdd, UserDelete, UserChangePassword, UserGrantRole, UserRevokeRole,
    RoleAdd, RoleDelete, RoleGrantPermission, RoleRevokePermission,
)  # fmt: skip
"""Every auth command, by its wire number (its position): never reorder."""
