"""The HTTP ``Site`` every MetaStore API is served from.

Two departures from ``twisted.web.server.Site``, both for the key API:

- Keys are binary-safe, but Klein refuses paths that do not percent-decode
  to UTF-8.  The site therefore routes on the still-encoded path segments
  (always ASCII); handlers decode ``request.path`` to bytes themselves.
- A body over the size limit is discarded as it arrives instead of being
  buffered, and the request is marked so the handler answers 413.
"""

from __future__ import annotations

import io

from twisted.web import server

IDLE_TIMEOUT_SECONDS = 60
"""Connections idle this long are closed (slow or abandoned clients)."""


class _DiscardedBody(io.BytesIO):
    """A stand-in for the request body once it has grown over the limit:
    it accepts writes and keeps nothing."""

    def write(self, data) -> int:
        return len(data)


class MetaStoreRequest(server.Request):
    """A request whose body may not exceed ``site.max_request_bytes``."""

    body_too_large = False
    _body_bytes = 0

    def gotLength(self, length: int | None) -> None:
        """Refuse to buffer a body whose declared length is over the limit."""
        if length is not None and length > self.channel.site.max_request_bytes:
            self.body_too_large = True
            self.content = _DiscardedBody()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Buffer the body until it passes the limit, then drop it."""
        if self.body_too_large:
            return
        self._body_bytes += len(data)
        if self._body_bytes > self.channel.site.max_request_bytes:
            self.body_too_large = True
            self.content.close()
            self.content = _DiscardedBody()
            return
        super().handleContentChunk(data)


class MetaStoreSite(server.Site):
    """A ``Site`` with MetaStore's request limits and binary-safe routing.

    A connection that sends nothing for ``idle_timeout`` seconds (by
    default ``IDLE_TIMEOUT_SECONDS``), including one stuck in the middle of
    a request's headers or body, is closed.
    """

    requestFactory = MetaStoreRequest

    def __init__(self, resource, max_request_bytes: int, reactor=None,
                 idle_timeout: float = IDLE_TIMEOUT_SECONDS) -> None:
        super().__init__(resource, timeout=idle_timeout, reactor=reactor)
        self.max_request_bytes = max_request_bytes
        self.displayTracebacks = False
        self.noisy = False

    def getResourceFor(self, request):
        """Route on the percent-encoded segments (see the module docstring)."""
        request.postpath = request.path[1:].split(b"/")
        return super().getResourceFor(request)

    def log(self, request) -> None:
        """No access log: one line per request costs more than it tells."""
