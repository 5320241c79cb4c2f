"""etcd's errors, one table for both client APIs: each failure's gRPC
code and etcd's message (``etcdserver: ...``).

``v3_error`` turns anything a service raised (a ``KVError`` of the state
machine, an ``Unavailable`` or ``Refused`` of the node, a
``MembershipError``, a ``BadBody``, a routing outcome) into a ``V3Error``:
the gRPC API answers with its code and message
(``metastore.api.grpc.status``); the JSON API writes ``{"error", "code",
"message"}`` with the HTTP status derived from the code as etcd's
grpc-gateway derives it.

The state machine's errors (``metastore.kv.errors``) and auth's
(``metastore.auth.errors``) carry their code and message, since they are
decided below the APIs; checked against etcd 3.4.23, among them:

=============================================  ==================  ====
etcd's message                                 gRPC code           HTTP
=============================================  ==================  ====
``etcdserver: permission denied``              PermissionDenied 7  403
``etcdserver: user name is empty``             InvalidArgument 3   400
``etcdserver: invalid auth token``             Unauthenticated 16  401
``etcdserver: revision of auth store is old``  InvalidArgument 3   400
=============================================  ==================  ====

The last is a request checked at an auth revision the auth state has
since moved past (refused at apply, or before answering a read); etcd's
clients re-authenticate and retry it.
"""

from __future__ import annotations

import json

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from metastore.api.v3.json_fields import BadBody
from metastore.errors import ChangeRefused, NoLeader, Refused, RequestTimedOut, Stopping, Unavailable, UnhealthyCluster
from metastore.facade import MembershipError
from metastore.kv.errors import KVError

# gRPC status codes (google.golang.org/grpc/codes).
CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 1, 2, 3, 4, 5
ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION = 6, 7, 8, 9
ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS, UNAUTHENTICATED = 10, 11, 12, 13, 14, 15, 16

HTTP_STATUS = {
    0: 200,
    CANCELLED: 408,
    UNKNOWN: 500,
    INVALID_ARGUMENT: 400,
    DEADLINE_EXCEEDED: 504,
    NOT_FOUND: 404,
    ALREADY_EXISTS: 409,
    PERMISSION_DENIED: 403,
    RESOURCE_EXHAUSTED: 429,
    FAILED_PRECONDITION: 412,
    ABORTED: 409,
    OUT_OF_RANGE: 400,
    UNIMPLEMENTED: 501,
    INTERNAL: 500,
    UNAVAILABLE: 503,
    DATA_LOSS: 500,
    UNAUTHENTICATED: 401,
}
"""grpc-gateway's ``HTTPStatusFromCode`` (the version etcd 3.4 vendors)."""

REQUEST_TOO_LARGE = "etcdserver: request is too large"
TOO_MANY_REQUESTS = "etcdserver: too many requests"
"""etcd's ErrTooManyRequests (RESOURCE_EXHAUSTED): here, a client over ``--client-request-rate``."""


class V3Error(Exception):
    """An answer etcd gives as an error: its gRPC code and message."""

    def __init__(self, code: int, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self._http_status = http_status

    @property
    def http_status(self) -> int:
        """The HTTP status the gateway sends for ``code`` (or the one given:
        the gateway's own 405 for a method other than POST)."""
        return self._http_status or HTTP_STATUS.get(self.code, 500)

    def body(self) -> bytes:
        """The JSON body etcd's gateway writes."""
        return json.dumps({"error": self.message, "code": self.code, "message": self.message}).encode()


_UNAVAILABLE_MESSAGES = (
    (NoLeader, "etcdserver: no leader"),
    (RequestTimedOut, "etcdserver: request timed out"),
    (Stopping, "etcdserver: server stopped"),
    (ChangeRefused, "etcdserver: unhealthy cluster"),
)
"""etcd's message for each way MetaStore can be unavailable (all gRPC
Unavailable, HTTP 503); others keep MetaStore's own words."""

MEMBERSHIP_ERRORS = {
    "no_such_member": (NOT_FOUND, "etcdserver: member not found"),
    "member_exists": (FAILED_PRECONDITION, "etcdserver: member ID already exist"),
    "peer_url_exists": (FAILED_PRECONDITION, "etcdserver: Peer URLs already exists"),
    "member_removed": (FAILED_PRECONDITION, "etcdserver: ID removed"),
    "last_member": (FAILED_PRECONDITION, "etcdserver: re-configuration failed due to not enough started members"),
    "not_learner": (FAILED_PRECONDITION, "etcdserver: can only promote a learner member"),
    "learner_not_ready": (FAILED_PRECONDITION, "etcdserver: can only promote a learner member which is in sync with leader"),
    "not_leader": (FAILED_PRECONDITION, "etcdserver: not leader"),
    "bad_transferee": (FAILED_PRECONDITION, "etcdserver: bad leader transferee"),
    "bad_peer_url": (INVALID_ARGUMENT, "etcdserver: given member URLs are invalid"),
}
"""etcd's error for each ``MembershipError`` code (others: InvalidArgument
with MetaStore's message)."""

NOT_ENOUGH_STARTED = MEMBERSHIP_ERRORS["last_member"]
"""etcd's answer when a membership change would leave too few started
members for a quorum (its strict reconfiguration check, MetaStore's
``UnhealthyCluster``)."""


def v3_error(e: BaseException) -> V3Error | None:
    """The etcd answer for ``e``, or None for a bug (answered 500)."""
    if isinstance(e, V3Error):
        return e
    if isinstance(e, KVError):
        return V3Error(e.grpc_code, e.message)
    if isinstance(e, BadBody):
        return V3Error(INVALID_ARGUMENT, str(e))
    if isinstance(e, MembershipError):
        code, message = MEMBERSHIP_ERRORS.get(e.code, (INVALID_ARGUMENT, str(e)))
        return V3Error(code, message)
    if isinstance(e, UnhealthyCluster):
        return V3Error(*NOT_ENOUGH_STARTED)
    if isinstance(e, Refused):
        return V3Error(FAILED_PRECONDITION, f"etcdserver: {e}")
    if isinstance(e, Unavailable):
        message = next((m for kind, m in _UNAVAILABLE_MESSAGES if isinstance(e, kind)), f"etcdserver: {e}")
        return V3Error(UNAVAILABLE, message)
    if isinstance(e, MethodNotAllowed):
        return V3Error(UNIMPLEMENTED, "Method Not Allowed: v3 RPCs are POST", 405)
    if isinstance(e, NotFound):
        return V3Error(NOT_FOUND, "Not Found")
    if isinstance(e, HTTPException):
        return V3Error(UNKNOWN, e.description or "error")
    return None
