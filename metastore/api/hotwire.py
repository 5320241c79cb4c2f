"""The bytes of a hot request and of its answer, without I/O.

``parse_hot_request`` takes one complete request off the front of a
buffer when it is framed in the plainest way HTTP/1.1 allows: a request
line ``GET|PUT|DELETE|POST /target HTTP/1.1``, header lines of token
characters and printable ASCII, a body framed by one ``Content-Length``
within the size limit (or none), all of it already received.  Anything
else (a partial request, chunked or ``Expect``, ``Connection`` other
than ``keep-alive``, ``If-Match``, a body over the limit, HTTP/1.0, a
byte that is not printable ASCII, a blank line before the request) is
None: the caller hands those bytes to ``twisted.web``'s parser, whose
rules (400, 413, 431, 408...) then apply unchanged.  Every request this
accepts, ``twisted.web`` parses to the same method, target and body.

``answer_bytes`` and ``prepared_answer_bytes`` write an answer's status
line, headers and body as one string.
"""

from __future__ import annotations

import re
import time

from twisted.web.http import RESPONSES, datetimeToString
from twisted.web.server import version as SERVER_VERSION

MAX_HEAD_BYTES = 8192
"""The longest head taken here (Twisted's own limit is 16384)."""
MAX_HEADER_LINES = 64
"""The most header lines taken here (Twisted's own limit is 500)."""

_HEAD = re.compile(
    rb"(GET|PUT|DELETE|POST) (/[!-~]*) HTTP/1\.1\r\n"
    rb"((?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t -~]*\r\n)*)"
    rb"\r\n"
)
"""A whole head: the request line and header lines, each header a token
name and a value of tabs and printable ASCII (what Twisted accepts, less
the bytes over 0x7F and the other control characters)."""

_LEFT_TO_TWISTED = frozenset((b"transfer-encoding", b"expect", b"if-match", b"if-none-match"))
"""Headers whose requests the plain path leaves to ``twisted.web`` and
the resource tree (chunked bodies, 100-continue, compare-and-swap)."""


def parse_hot_request(data: bytes, start: int, max_body: int) -> tuple[bytes, bytes, bytes, int] | None:
    """The request at ``data[start:]`` as ``(method, target, body, end)``,
    ``end`` the offset just past it, when it is complete and plainly
    framed (see the module docstring); None otherwise."""
    head_end = data.find(b"\r\n\r\n", start, start + MAX_HEAD_BYTES)
    if head_end < 0:
        return None
    head_end += 4
    match = _HEAD.fullmatch(data, start, head_end)
    if match is None:
        return None
    method, target, lines = match.groups()
    length = None
    if lines:
        lines = lines.split(b"\r\n")
        if len(lines) > MAX_HEADER_LINES:
            return None
        for line in lines:
            name, _, value = line.partition(b":")
            name = name.lower()
            if name == b"content-length":
                value = value.strip(b" \t")
                if length is not None or not value.isdigit() or len(value) > 12:
                    return None
                length = int(value)
                if length > max_body:
                    return None
            elif name == b"connection":
                if value.strip(b" \t").lower() != b"keep-alive":
                    return None
            elif name in _LEFT_TO_TWISTED:
                return None
    if not length:
        return method, target, b"", head_end
    end = head_end + length
    if end > len(data):
        return None
    return method, target, data[head_end:end], end


class _Date:
    """The ``Date`` header's value, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, datetimeToString(now)
        return self._value


_date = _Date()
_STATUS = {code: b"HTTP/1.1 %d %s\r\n" % (code, RESPONSES[code]) for code in (200, 204, 404)}
_CLOSE = b"Connection: close\r\n"


def answer_bytes(code: int, headers: bytes, body: bytes | None, close: bool = False) -> bytes:
    """A whole answer: ``code`` (200, 204 or 404), the header lines
    ``headers`` (each ending in CRLF), ``Connection: close`` when
    ``close``, and ``body`` framed by its length (None: no body, for 204)."""
    length = b"" if body is None else b"Content-Length: %d\r\n" % len(body)
    return b"%sServer: %s\r\nDate: %s\r\n%s%s%s\r\n%s" % (
        _STATUS[code], SERVER_VERSION, _date(), headers, _CLOSE if close else b"", length, body or b"")


def prepared_answer_bytes(code: int, message: bytes, headers, body: bytes) -> bytes:
    """A whole answer with any status: ``code`` and its ``message``, the
    ``(name, value)`` pairs ``headers`` and ``body`` framed by its length."""
    lines = [b"HTTP/1.1 %d %s\r\nServer: %s\r\nDate: %s\r\n" % (code, message, SERVER_VERSION, _date())]
    lines.extend(b"%s: %s\r\n" % pair for pair in headers)
    lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
    lines.append(body)
    return b"".join(lines)
