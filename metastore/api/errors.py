"""Errors as HTTP answers: one JSON shape, one place for status codes."""

from __future__ import annotations

import json

from metastore.errors import ChangeRefused, MetaStoreError, NoLeader, RequestTimedOut, StorageFailed, Stopping

RETRY_AFTER_SECONDS = b"1"


class HTTPError(Exception):
    """A request answered with ``status`` and a JSON body naming ``error``."""

    def __init__(self, status: int, error: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}


def write_error(request, status: int, error: str, message: str, headers: dict | None = None) -> bytes:
    """Set ``status`` and headers on ``request`` and return the JSON body."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    return json.dumps({"error": error, "message": message}).encode() + b"\n"


_UNAVAILABLE = {
    NoLeader: "no_leader",
    ChangeRefused: "change_refused",
    RequestTimedOut: "timeout",
    StorageFailed: "storage_failed",
    Stopping: "stopping",
}


def unavailable_error(error: MetaStoreError) -> HTTPError:
    """The 503 answer for an ``Unavailable`` failure, with Retry-After."""
    code = next((c for t, c in _UNAVAILABLE.items() if isinstance(error, t)), "unavailable")
    return HTTPError(503, code, str(error), {b"Retry-After": RETRY_AFTER_SECONDS})
