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
import json

from twisted.web import http, server

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


HEAD_TOO_LARGE_BODY = json.dumps({
    "error": "request_head_too_large",
    "message": "the request line and headers exceed 16384 bytes; keys are limited to 1536 bytes",
}).encode()
LINGER_SECONDS = 5
"""How long a refused connection may go on sending before it is cut."""


class MetaStoreChannel(http.HTTPChannel):
    """An HTTP channel that refuses an oversized request head politely.

    Twisted answers a bare 400 and closes at once; with the client still
    sending, the kernel then resets the connection and the client never
    sees an answer.  This channel answers 431 with a JSON reason, stops
    writing, reads and drops whatever else arrives, and cuts the connection
    after ``LINGER_SECONDS``.
    """

    _refused = False
    _linger = None

    def _respondToBadRequestAndDisconnect(self) -> None:
        if self._refused:
            return
        self._refused = True
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(HEAD_TOO_LARGE_BODY), HEAD_TOO_LARGE_BODY)
        )
        self.setTimeout(None)
        self._linger = self.callLater(LINGER_SECONDS, self.transport.abortConnection)
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is not None:
            half_close()
        else:
            self.transport.loseConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        """A request or header line over 16 KiB: refuse it the same way."""
        self._respondToBadRequestAndDisconnect()

    def connectionLost(self, reason) -> None:
        """Forget the linger timer along with the connection."""
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        super().connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:
        """Parse requests, or drop everything once a request was refused."""
        if not self._refused:
            super().dataReceived(data)


class MetaStoreSite(server.Site):
    """A ``Site`` with MetaStore's request limits and binary-safe routing.

    A connection that sends nothing for ``idle_timeout`` seconds (by
    default ``IDLE_TIMEOUT_SECONDS``), including one stuck in the middle of
    a request's headers or body, is closed.
    """

    requestFactory = MetaStoreRequest
    protocol = MetaStoreChannel

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
