"""Forwarding whole HTTP requests from a front to its core.

The routes a front does not serve itself (``/admin/...``, ``/health``,
``/readyz``, ``/version``, the v3 cluster and maintenance services, the
snapshot stream) are rare and read the member's live state, so the front
passes them to the core's own HTTP site, listening on a Unix socket,
unchanged: method, path and query, headers, body; the answer comes back
streamed.  When the core cannot be reached the answer is a JSON 503.
"""

from __future__ import annotations

import io

from twisted.internet import endpoints, protocol
from twisted.logger import Logger
from twisted.web import server
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from zope.interface import implementer
from twisted.web.iweb import IAgentEndpointFactory

from metastore.api.errors import RETRY_AFTER_SECONDS, write_error

log = Logger()

HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade",
              b"proxy-connection", b"content-length"}
"""Headers that describe one connection, not the request: never forwarded
(twisted.web frames the body itself on each side)."""


@implementer(IAgentEndpointFactory)
class _UnixEndpoints:
    def __init__(self, reactor, address: str) -> None:
        self._reactor = reactor
        self._address = address

    def endpointForURI(self, uri):
        return endpoints.UNIXClientEndpoint(self._reactor, self._address, timeout=5)


class _Relay(protocol.Protocol):
    """Writes the core's answer body into the front's request as it
    arrives; when the client goes away first (a watch stream it closed),
    drops the connection to the core, which then ends its side."""

    def __init__(self, request) -> None:
        self._request = request
        request.notifyFinish().addErrback(self._client_gone)

    def connectionMade(self) -> None:
        """The client's pace is the core's: when the client reads slowly,
        the front stops reading from the core (which then buffers, and
        cancels a watch whose reader is too slow, as it would directly)."""
        if not self._request.finished and not getattr(self._request, "_disconnected", False):
            self._request.registerProducer(self.transport, True)

    def _client_gone(self, _) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    _partial = b""

    def dataReceived(self, data: bytes) -> None:
        """Pass on whole lines only: each line of a stream (a watch's
        response, a keep-alive's) then reaches the client as one write, so
        one HTTP chunk, as the core wrote it."""
        if self._request.finished or getattr(self._request, "_disconnected", False):
            return
        head, newline, self._partial = (self._partial + data).rpartition(b"\n")
        if newline:
            self._request.write(head + newline)

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        if not self._request.finished and not getattr(self._request, "_disconnected", False):
            if self._partial:
                self._request.write(self._partial)
            self._request.unregisterProducer()
            self._request.finish()


class CoreProxy(Resource):
    """Serves every request by asking the core's HTTP site at the Unix
    socket ``address`` (see the module docstring)."""

    isLeaf = True

    def __init__(self, reactor, address: str) -> None:
        super().__init__()
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.retryAutomatically = False
        self._agent = Agent.usingEndpointFactory(reactor, _UnixEndpoints(reactor, address), pool=self._pool)

    def close(self):
        """Close the idle connections to the core; fires once closed."""
        return self._pool.closeCachedConnections()

    def render(self, request):
        """Forward ``request`` and stream the core's answer back."""
        if getattr(request, "body_too_large", False):
            limit = request.channel.site.max_request_bytes
            return write_error(request, 413, "body_too_large", f"the body is over the limit of {limit} bytes")
        headers = Headers()
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.lower() not in HOP_BY_HOP:
                headers.setRawHeaders(name, values)
        request.content.seek(0)
        body = request.content.read()
        producer = FileBodyProducer(io.BytesIO(body)) if body or request.method in (b"POST", b"PUT") else None
        d = self._agent.request(request.method, b"http://core" + request.uri, headers, producer)
        request.notifyFinish().addErrback(lambda _: d.cancel())
        d.addCallbacks(lambda response: self._relay(request, response), lambda failure: self._unreachable(request, failure))
        return server.NOT_DONE_YET

    @staticmethod
    def _relay(request, response) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.setResponseCode(response.code, response.phrase)
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() not in HOP_BY_HOP:
                request.responseHeaders.setRawHeaders(name, values)
        response.deliverBody(_Relay(request))

    @staticmethod
    def _unreachable(request, failure) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        log.warn("cannot reach the member's core process: {e}", e=failure.value)
        body = write_error(request, 503, "core_unavailable", "this member's core process cannot be reached",
                           {b"Retry-After": RETRY_AFTER_SECONDS})
        request.setHeader(b"Content-Length", b"%d" % len(body))
        request.write(body)
        request.finish()

