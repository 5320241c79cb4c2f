"""HTTP/1.1 response framing for the load generator, on ``httptools``.

Bytes in, complete responses out, no I/O: :class:`ResponseParser` turns a
keep-alive connection's byte stream into :class:`ParsedResponse` values, and
:class:`StreamingResponseParser` hands a long-lived (chunked) response's body
to a callback as it arrives, for watch streams.  The HTTP grammar itself is
llhttp's, through httptools; this module only adds the limits and the
bookkeeping a benchmark needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import httptools


class MalformedResponse(Exception):
    """The server sent bytes that are not a valid HTTP/1.x response."""


@dataclass(frozen=True, slots=True)
class ParsedResponse:
    """One complete HTTP response.

    ``keep_alive`` is False when the server asked to close the connection
    (``Connection: close``, HTTP/1.0, or a body delimited by the close).
    """

    status: int
    body: bytes
    keep_alive: bool


class _ResponseEvents:
    """The httptools callbacks for one connection: collects the current
    response and appends finished ones to ``completed``."""

    __slots__ = ("completed", "parser", "in_head", "in_body", "framed", "status", "keep_alive", "body_parts")

    def __init__(self) -> None:
        self.completed: list[ParsedResponse] = []
        self.parser = httptools.HttpResponseParser(self)
        self.in_head = False
        self.in_body = False
        self.framed = False
        self.status = 0
        self.keep_alive = True
        self.body_parts: list[bytes] = []

    def on_message_begin(self) -> None:
        self.in_head = True
        self.framed = False
        self.body_parts = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.in_body = True
        parser = self.parser
        self.status = parser.get_status_code()
        self.keep_alive = parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        self.in_body = False
        if self.status >= 200:  # a 1xx is interim: the real response follows
            self.completed.append(ParsedResponse(self.status, b"".join(self.body_parts), self.keep_alive))
        self.body_parts = []


class ResponseParser:
    """Incremental HTTP/1.1 response parser for a keep-alive connection.

    Feed it bytes as they arrive, split anywhere; it returns each response
    once its last byte is in.  Content-Length, chunked and close-delimited
    bodies are understood (by llhttp) and 1xx responses skipped.  Raises
    :class:`MalformedResponse` on anything else, or on a response head over
    ``max_head_bytes``; after that the parser must be discarded along with
    its connection.
    """

    def __init__(self, max_head_bytes: int = 65536) -> None:
        self._max_head_bytes = max_head_bytes
        self._head_bytes = 0
        self._events = _ResponseEvents()

    def feed(self, data: bytes) -> list[ParsedResponse]:
        """Consume ``data``; return the responses it completed, in order."""
        events = self._events
        try:
            events.parser.feed_data(data)
        except httptools.HttpParserError as e:
            raise MalformedResponse(str(e)) from None
        if events.in_head:
            # An unfinished head piles up across feeds (over-counting the
            # tail of a previous response at worst, which errs on the safe side).
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head_bytes:
                raise MalformedResponse("response head too long")
        else:
            self._head_bytes = 0
        completed, events.completed = events.completed, []
        return completed

    def connection_lost(self) -> ParsedResponse | None:
        """Report the end of the stream; returns a close-delimited response
        that it completes, or None.  An interrupted response is dropped."""
        events = self._events
        if events.in_body and not events.framed and events.status >= 200:
            events.in_body = False
            return ParsedResponse(events.status, b"".join(events.body_parts), False)
        return None


class StreamingResponseParser:
    """Parses one long-lived response and passes on its body as it comes.

    ``on_head(status)`` is called once the head is in; ``on_body(bytes)``
    for every piece of body (chunk boundaries are not preserved: a watch
    stream is framed by its newlines); ``on_end()`` when the response ends.
    Raises :class:`MalformedResponse` on bytes that are not HTTP.
    """

    def __init__(
        self,
        on_head: Callable[[int], None],
        on_body: Callable[[bytes], None],
        on_end: Callable[[], None],
    ) -> None:
        self._on_head = on_head
        self.on_body = on_body
        self._on_end = on_end
        self._parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self._on_head(self._parser.get_status_code())

    def on_message_complete(self) -> None:
        self._on_end()

    def feed(self, data: bytes) -> None:
        """Consume ``data``, calling back as parts of the response complete."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            raise MalformedResponse(str(e)) from None
