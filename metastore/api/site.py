"""The HTTP ``Site`` every MetaStore API is served from.

Departures from ``twisted.web.server.Site``:

- Every answer the site writes itself has a JSON body: an oversized head
  (431), a head that takes too long (408), an unexpected exception (500,
  logged with an error id the body repeats).
- A request's line and headers must arrive within ``header_timeout``
  seconds in total (a client trickling one byte at a time is cut off
  then), besides the idle timeout that restarts on every byte.

- Keys are binary-safe, but Klein refuses paths that do not percent-decode
  to UTF-8.  The site therefore routes on the still-encoded path segments
  (made ASCII: a raw byte over 0x7F is routed as its ``%XX`` escape);
  handlers decode ``request.path`` to bytes themselves.
- A body over the size limit is discarded as it arrives instead of being
  buffered, and the request is marked so the handler answers 413.
- With hot routes (``metastore.api.fastpath``), the channel takes the
  plainly framed hot requests off the wire itself, without a
  ``twisted.web`` request (``MetaStoreChannel``); their answers are
  written straight to the socket when nothing is queued before them.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
import time

from twisted.internet import tcp
from twisted.web import http, server

from metastore.api.errors import internal_error, write_error
from metastore.api.hotrequest import HotRequest
from metastore.api.hotwire import answer_bytes, parse_hot_request, prepared_answer_bytes

IDLE_TIMEOUT_SECONDS = 60
"""Connections idle this long are closed (slow or abandoned clients)."""
HEADER_TIMEOUT_SECONDS = 10.0
"""The longest a request's line and headers may take to arrive, in total."""


_NOT_ASCII = re.compile(rb"[\x80-\xff]")


def _ascii(path: bytes) -> bytes:
    """``path`` with every byte over 0x7F percent-escaped."""
    return _NOT_ASCII.sub(lambda m: b"%%%02X" % m.group()[0], path)


class _DiscardedBody(io.BytesIO):
    """A stand-in for the request body once it has grown over the limit:
    it accepts writes and keeps nothing."""

    def write(self, data) -> int:
        return len(data)


class MetaStoreRequest(server.Request):
    """A request whose body may not exceed ``site.max_request_bytes``."""

    body_too_large = False
    _body_bytes = 0
    received_at: float | None = None
    """``time.perf_counter()`` when the request's head had arrived."""

    def gotLength(self, length: int | None) -> None:
        """Refuse to buffer a body whose declared length is over the limit."""
        self.received_at = time.perf_counter()
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

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """Hand the request to the site's hot routes when they take it
        (``metastore.api.fastpath``), else to the resource tree."""
        hot_routes = self.channel.site.hot_routes
        if hot_routes is None or not hot_routes.answer(self, command, path, version):
            super().requestReceived(command, path, version)

    def write_whole(self, code: int, headers: bytes, body: bytes | None) -> None:
        """Answer ``code`` (200, 204 or 404) with the header lines
        ``headers`` and ``body`` (None: none) in one write, then finish.
        Nothing is written to a connection that was lost meanwhile."""
        if self._disconnected:
            return
        close = self.responseHeaders.hasHeader(b"connection")
        self.code = code
        self.startedWriting = True
        self.channel.write_answer(answer_bytes(code, headers, body, close))
        self.finish()

    def write_prepared(self, body: bytes) -> None:
        """Answer with the status and headers already set (an error answer)
        and ``body``, in one write, then finish."""
        if self._disconnected or self.startedWriting:
            return  # a failure after the answer went out was logged
        headers = [(name, value) for name, values in self.responseHeaders.getAllRawHeaders() for value in values]
        self.startedWriting = True
        self.channel.write_answer(prepared_answer_bytes(self.code, self.code_message, headers, body))
        self.finish()

    def __repr__(self) -> str:
        """Method and target, whatever bytes they hold (Twisted's own repr
        raises on a target that is not ASCII)."""
        method = self.method.decode("ascii", "backslashreplace")
        uri = self.uri[:200].decode("ascii", "backslashreplace")
        return f"<{type(self).__name__} at 0x{id(self):x} method={method} uri={uri}>"

    def _handleStar(self) -> None:
        """``*`` as the request target: ``OPTIONS *`` is an empty 200 (as
        Twisted answers it); any other method a JSON 405."""
        if self.method == b"OPTIONS":
            super()._handleStar()
            return
        body = write_error(self, 405, "method_not_allowed", "only OPTIONS applies to *", {b"Allow": b"OPTIONS"})
        self.setHeader(b"Content-Length", b"%d" % len(body))
        self.write(body)
        self.finish()

    def processingFailed(self, reason):
        """An exception nothing else answered: 500 with a JSON body and an
        error id, the traceback logged once under that id."""
        body = internal_error(self, reason)
        if not self.startedWriting:
            self.setHeader(b"Content-Length", b"%d" % len(body))
            self.write(body)
        if not self.finished:
            self.finish()
        return reason


HEAD_TOO_LARGE = (b"431 Request Header Fields Too Large", json.dumps({
    "error": "request_head_too_large",
    "message": "the request line and headers exceed 16384 bytes; keys are limited to 1536 bytes",
}).encode())
MALFORMED_REQUEST = (b"400 Bad Request", json.dumps({
    "error": "bad_request",
    "message": "the request line or a header is malformed (or the body's framing is)",
}).encode())
SPOOL_BODY_BYTES = 100_000
"""Bodies this long or longer (or of unknown length) are buffered in a file."""
LINGER_SECONDS = 5
"""How long a refused connection may go on sending before it is cut."""


def _head_too_slow(seconds: float) -> tuple[bytes, bytes]:
    return b"408 Request Timeout", json.dumps({
        "error": "request_head_timeout",
        "message": f"the request line and headers did not arrive within {seconds:g} seconds",
    }).encode()


HELD_BYTES = 0x4000
"""How much a connection may send past a hot request whose answer is
pending before the channel stops reading it (Twisted's own bound for
bytes sent past a request in progress)."""


class MetaStoreChannel(http.HTTPChannel):
    """An HTTP channel that takes the plainest hot requests off the wire
    itself, and refuses a malformed, oversized or too slow request head
    politely.

    Between requests, when the site has hot routes, the channel takes the
    complete, plainly framed requests at the front of what it received
    (``metastore.api.hotwire``) and hands the hot ones to ``HotRoutes`` as
    ``HotRequest``s: no ``twisted.web`` request, no parse line by line.
    Their answers go out in order, each written straight to the socket
    when nothing is queued before it.  Bytes that arrive while an answer
    is pending wait for it (past ``HELD_BYTES`` the channel stops reading,
    as Twisted does), and the idle timeout does not close a connection
    whose answer is pending.  From the first request that is not such a
    request on (a partial one, a non-hot one), the bytes go through
    Twisted's parser exactly as without hot routes, and the channel goes
    back to taking requests itself once that request is answered.

    Twisted answers a bare 400 and closes at once; with the client still
    sending, the kernel then resets the connection and the client never
    sees an answer.  This channel answers 400 (malformed), 431 (too large)
    or 408 (not all there within ``site.header_timeout`` seconds) with a
    JSON reason, stops writing, reads and drops whatever else arrives
    (unparsed), and cuts the connection after ``LINGER_SECONDS``.
    """

    _refused = False
    _host = None
    _linger = None
    _head_deadline = None
    _reading_head = True
    _hot_routes = None
    _socket = None
    """The TCP socket, when the transport is plain TCP (answers may be written to it directly)."""
    _hot: HotRequest | None = None
    """The request taken off the wire whose answer is pending."""
    _held: list[bytes] | None = None
    """Bytes received while ``_hot`` is pending."""
    _held_bytes = 0
    _held_paused = False
    _taking = False
    """Whether ``_take_hot`` is running (it goes on with the bytes itself)."""

    def connectionMade(self) -> None:
        """Note the site's hot routes, and the socket of a plain TCP transport."""
        super().connectionMade()
        self._hot_routes = self.site.hot_routes
        transport = self.transport
        if isinstance(transport, tcp.Connection) and not transport.TLS:
            self._socket = transport.socket

    def getHost(self):
        """This end's address, asked of the socket once per connection
        (every request asks for it)."""
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def _respondToBadRequestAndDisconnect(self) -> None:
        self._refuse(*MALFORMED_REQUEST)

    def _refuse(self, status: bytes, body: bytes) -> None:
        if self._refused:
            return
        self._refused = True
        self._cancel_head_deadline()
        self.transport.write(
            b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, len(body), body)
        )
        self.setTimeout(None)
        self._linger = self.callLater(LINGER_SECONDS, self.transport.abortConnection)
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is not None:
            half_close()
        else:
            self.transport.loseConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        """A request or header line over 16 KiB: 431."""
        self._refuse(*HEAD_TOO_LARGE)

    def connectionLost(self, reason) -> None:
        """Forget the timers, a pending answer and held bytes along with the connection."""
        if self._hot is not None:
            self._hot.lost()
            self._hot = None
        self._held = None
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._cancel_head_deadline()
        super().connectionLost(reason)

    def lineReceived(self, line: bytes) -> None:
        """Parse a line of a request head, unless the request was refused
        (further lines of the same packet are dropped, not parsed); a head
        over Twisted's total size is 431."""
        if self._refused:
            return
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._refuse(*HEAD_TOO_LARGE)
            return
        super().lineReceived(line)

    def rawDataReceived(self, data: bytes) -> None:
        """Take body bytes, unless the request was refused."""
        if not self._refused:
            super().rawDataReceived(data)

    def dataReceived(self, data: bytes) -> None:
        """Take the hot requests at the front of ``data`` when between
        requests and parse the rest as Twisted does, or drop everything
        once a request was refused.  The first byte of a request's head
        that Twisted parses starts its deadline."""
        if self._refused:
            return
        if self._hot is not None:
            self._hold(data)
            return
        if self._hot_routes is not None and self._between_requests():
            data = self._take_hot(data)
            if not data:
                return
        if self._reading_head and self._head_deadline is None and data:
            timeout = self.site.header_timeout
            self._head_deadline = self.callLater(timeout, self._head_timed_out, timeout)
        super().dataReceived(data)

    def _between_requests(self) -> bool:
        """Whether Twisted's parser holds nothing of a request: none in
        progress or queued, no bytes buffered, the connection persistent,
        and no blank line eaten before a request line (Twisted eats one;
        after it, its parser reads the request)."""
        return (not self.requests and not self._buffer and self.line_mode and not self._busyReceiving
                and self.persistent and self._HTTPChannel__first_line == 1)

    def _take_hot(self, data: bytes) -> bytes:
        """Answer the complete hot requests at the front of ``data``; the
        bytes from the first other request on (none when every request was
        taken, or when the rest waits for a pending answer)."""
        self.resetTimeout()
        routes = self._hot_routes
        max_body = self.site.max_request_bytes
        start = 0
        self._taking = True
        try:
            while True:
                parsed = parse_hot_request(data, start, max_body)
                if parsed is None:
                    break
                method, target, body, end = parsed
                plan = routes.plan(method, target)
                if plan is None:
                    break
                request = self._hot = HotRequest(self, method, target, plan[1], body)
                routes.start(plan, request)
                start = end
                if self._hot is not None:
                    if start < len(data):
                        self._hold(data[start:])
                    return b""
                if start == len(data):
                    return b""
        finally:
            self._taking = False
        return data[start:] if start else data

    def hot_answered(self, request: HotRequest, answer: bytes) -> None:
        """Write ``answer`` to ``request`` (the pending one), report it to
        the site, and go on with the bytes that arrived meanwhile."""
        self._hot = None
        self.write_answer(answer)
        self.site.log(request)
        if self._taking:
            return
        self.resetTimeout()  # the idle clock restarts with the answer, as after Twisted's requests
        held = self._held
        if held is not None:
            self._held, self._held_bytes = None, 0
            if self._held_paused:
                self._held_paused = False
                if not self._waitingForTransport:
                    self._networkProducer.resumeProducing()
            self.dataReceived(b"".join(held))

    def _hold(self, data: bytes) -> None:
        if self._held is None:
            self._held = [data]
        else:
            self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes > HELD_BYTES and not self._held_paused and not self._waitingForTransport:
            self._held_paused = True
            self._networkProducer.pauseProducing()

    def write_answer(self, answer: bytes) -> None:
        """Write a whole answer: straight to the socket when the transport
        has nothing queued (no write event for the reactor to run), what
        the socket does not take through the transport."""
        sock = self._socket
        transport = self.transport
        if (sock is not None and not transport.dataBuffer and not transport._tempDataBuffer
                and transport.connected and not transport.disconnecting):
            try:
                sent = sock.send(answer)
            except OSError:  # EAGAIN, or an error the transport's write then reports
                sent = 0
            if sent == len(answer):
                return
            answer = answer[sent:]
        transport.write(answer)

    def timeoutConnection(self) -> None:
        """Close the idle connection, unless an answer is pending (Twisted
        stops the idle clock while it answers a request)."""
        if self._hot is not None:
            self.setTimeout(self.timeOut)
            return
        super().timeoutConnection()

    def _head_timed_out(self, timeout: float) -> None:
        self._refuse(*_head_too_slow(timeout))  # the body is made only when needed: not per request

    def allHeadersReceived(self) -> None:
        """The head arrived in time: its deadline no longer applies."""
        self._reading_head = False
        self._cancel_head_deadline()
        super().allHeadersReceived()

    def requestDone(self, request) -> None:
        """The next bytes on this connection start a new request head."""
        self._reading_head = True
        super().requestDone(request)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            if self._head_deadline.active():
                self._head_deadline.cancel()
            self._head_deadline = None


class MetaStoreSite(server.Site):
    """A ``Site`` with MetaStore's request limits and binary-safe routing;
    the requests ``hot_routes`` takes (``metastore.api.fastpath.HotRoutes``)
    bypass the resource tree.

    A connection that sends nothing for ``idle_timeout`` seconds (by
    default ``IDLE_TIMEOUT_SECONDS``), including one stuck in the middle of
    a request's headers or body, is closed; a request whose line and
    headers take over ``header_timeout`` seconds in total (by default
    ``HEADER_TIMEOUT_SECONDS``) is answered 408 and its connection closed.
    """

    requestFactory = MetaStoreRequest
    protocol = MetaStoreChannel
    request_observer = None
    """Called with each finished request (``metastore.metrics.http.RequestDurations``), if set."""

    def __init__(self, resource, max_request_bytes: int, reactor=None,
                 idle_timeout: float = IDLE_TIMEOUT_SECONDS,
                 header_timeout: float = HEADER_TIMEOUT_SECONDS, hot_routes=None) -> None:
        super().__init__(resource, timeout=idle_timeout, reactor=reactor)
        self.hot_routes = hot_routes
        self.max_request_bytes = max_request_bytes
        self.header_timeout = header_timeout
        self.displayTracebacks = False
        self.noisy = False

    @staticmethod
    def getContentFile(length: int | None):
        """Where a request's body is buffered: memory for a small body of
        known length, a temporary file otherwise (as Twisted does; defined
        here because Twisted looks this method up on every request, and a
        missing one costs an exception each time)."""
        if length is not None and length < SPOOL_BODY_BYTES:
            return io.BytesIO()
        return tempfile.TemporaryFile()

    def getResourceFor(self, request):
        """Route on the percent-encoded segments (see the module docstring)."""
        request.postpath = _ascii(request.path[1:]).split(b"/")
        return super().getResourceFor(request)

    def log(self, request) -> None:
        """No access log (one line per request costs more than it tells):
        the finished request goes to ``request_observer`` instead."""
        if self.request_observer is not None:
            self.request_observer(request)
