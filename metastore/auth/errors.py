"""etcd's auth errors (``rpctypes``), with etcd's messages and gRPC codes.

They are ``KVError``s, so the v3 error table and the gRPC status already
answer them as etcd does."""

from __future__ import annotations

from metastore.kv.errors import FAILED_PRECONDITION, INVALID_ARGUMENT, KVError

PERMISSION_DENIED = 7
UNAUTHENTICATED = 16


class AuthError(KVError):
    """An auth request etcd would refuse, or a request refused by auth."""


def _error(name: str, code: int, message: str, status: int) -> type[AuthError]:
    return type(name, (AuthError,), {"message": message, "grpc_code": code, "http_status": status,
                                     "__doc__": f"etcd's ``{message}``."})


PermissionDenied = _error("PermissionDenied", PERMISSION_DENIED, "etcdserver: permission denied", 403)
InvalidAuthToken = _error("InvalidAuthToken", UNAUTHENTICATED, "etcdserver: invalid auth token", 401)
AuthFailed = _error(
    "AuthFailed", INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or password", 400
)
AuthNotEnabled = _error("AuthNotEnabled", FAILED_PRECONDITION, "etcdserver: authentication is not enabled", 412)
UserEmpty = _error("UserEmpty", INVALID_ARGUMENT, "etcdserver: user name is empty", 400)
UserExists = _error("UserExists", FAILED_PRECONDITION, "etcdserver: user name already exists", 412)
UserNotFound = _error("UserNotFound", FAILED_PRECONDITION, "etcdserver: user name not found", 412)
RoleEmpty = _error("RoleEmpty", INVALID_ARGUMENT, "etcdserver: role name is empty", 400)
RoleExists = _error("RoleExists", FAILED_PRECONDITION, "etcdserver: role name already exists", 412)
RoleNotFound = _error("RoleNotFound", FAILED_PRECONDITION, "etcdserver: role name not found", 412)
RoleNotGranted = _error("RoleNotGranted", FAILED_PRECONDITION, "etcdserver: role is not granted to the user", 412)
PermissionNotGranted = _error(
    "PermissionNotGranted", FAILED_PRECONDITION, "etcdserver: permission is not granted to the role", 412
)
RootUserMissing = _error("RootUserMissing", FAILED_PRECONDITION, "etcdserver: root user does not exist", 412)
RootRoleMissing = _error(
    "RootRoleMissing", FAILED_PRECONDITION, "etcdserver: root user does not have root role", 412
)
InvalidAuthManagement = _error("InvalidAuthManagement", INVALID_ARGUMENT, "etcdserver: invalid auth management", 400)
AuthOldRevision = _error("AuthOldRevision", INVALID_ARGUMENT, "etcdserver: revision of auth store is old", 400)
"""A request checked at an auth revision the auth state has since moved past
(etcd 3.4.23 answers it with gRPC InvalidArgument, HTTP 400): the client
re-authenticates or retries, and it is checked again."""
