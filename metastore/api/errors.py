"""Errors as HTTP answers: one JSON shape, one place for status codes.

Every answer that is not a success has the body
``{"error": "<code>", "message": "<why>"}``, whatever raised it: an
``HTTPError`` from a handler, an ``Unavailable`` from the node, a routing
outcome of Klein's (404, 405, a redirect), or a bug (500, logged once with
its traceback under an error id that the body repeats).
"""

from __future__ import annotations

import json
import os

from twisted.logger import Logger
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import RequestRedirect

from metastore.auth.errors import AuthFailed, InvalidAuthToken, PermissionDenied, UserEmpty
from metastore.errors import (
    ChangeRefused, MetaStoreError, NoLeader, Refused, RequestTimedOut, StorageFailed, Stopping, Unavailable,
)
from metastore.kv.errors import CompactedError, FutureRevisionError, KVError, LeaseNotFoundError

RETRY_AFTER_SECONDS = b"1"

log = Logger()


class HTTPError(Exception):
    """A request answered with ``status`` and a JSON body naming ``error``."""

    def __init__(self, status: int, error: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}


def json_body(error: str, message: str, **extra) -> bytes:
    """The JSON body of an error answer."""
    return json.dumps({"error": error, "message": message, **extra}).encode() + b"\n"


def write_error(request, status: int, error: str, message: str, headers: dict | None = None, **extra) -> bytes:
    """Set ``status`` and headers on ``request`` and return the JSON body."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    return json_body(error, message, **extra)


_UNAVAILABLE = {
    NoLeader: "no_leader",
    ChangeRefused: "change_refused",
    RequestTimedOut: "timeout",
    StorageFailed: "storage_failed",
    Stopping: "stopping",
}


_KV_ERRORS = {
    CompactedError: "compacted", FutureRevisionError: "future_revision", LeaseNotFoundError: "lease_not_found",
    PermissionDenied: "permission_denied", InvalidAuthToken: "invalid_token", UserEmpty: "unauthenticated",
    AuthFailed: "authentication_failed",
}  # fmt: skip
"""The ``error`` code of the key-value errors that have their own (etcd's
text is the message either way)."""


def unavailable_error(error: MetaStoreError) -> HTTPError:
    """The 503 answer for an ``Unavailable`` failure, with Retry-After."""
    code = next((c for t, c in _UNAVAILABLE.items() if isinstance(error, t)), "unavailable")
    return HTTPError(503, code, str(error), {b"Retry-After": RETRY_AFTER_SECONDS})


def new_error_id() -> str:
    """A short random id that ties a 500 answer to its log entry."""
    return os.urandom(6).hex()


def internal_error(request, failure) -> bytes:
    """Answer an unexpected exception: log its traceback once under a fresh
    error id and return a 500 JSON body that repeats the id."""
    error_id = new_error_id()
    log.failure(
        "unexpected error {error_id} answering {method} {path}",
        failure,
        error_id=error_id,
        method=request.method.decode("ascii", "replace"),
        path=request.path[:200].decode("ascii", "replace"),
    )
    return write_error(
        request, 500, "internal",
        f"unexpected error {error_id}; the member's log has the details", error_id=error_id,
    )


def _routing_error(request, e: HTTPException) -> bytes:
    if isinstance(e, RequestRedirect):
        location = e.new_url.encode("utf-8")
        return write_error(request, e.code, "redirect", f"this resource is at {e.new_url}",
                           {b"Location": location}, location=e.new_url)
    if isinstance(e, MethodNotAllowed):
        allow = ", ".join(sorted(e.valid_methods or ())).encode("ascii")
        return write_error(request, 405, "method_not_allowed",
                           f"{request.method.decode('ascii', 'replace')} is not allowed here", {b"Allow": allow})
    code = (e.name or "error").lower().replace(" ", "_")
    return write_error(request, e.code or 500, code, e.description or code)


def answer_failure(request, failure) -> bytes:
    """The JSON answer for whatever a Klein route raised (register it with
    ``app.handle_errors(Exception)``)."""
    e = failure.value
    if isinstance(e, HTTPError):
        return write_error(request, e.status, e.error, e.message, e.headers)
    if isinstance(e, KVError):
        error = _KV_ERRORS.get(type(e), "invalid_request")
        return write_error(request, e.http_status, error, e.message)
    if isinstance(e, Refused):
        return write_error(request, e.status, e.code, str(e))
    if isinstance(e, Unavailable):
        u = unavailable_error(e)
        return write_error(request, u.status, u.error, u.message, u.headers)
    if isinstance(e, HTTPException):
        return _routing_error(request, e)
    return internal_error(request, failure)
