"""A hot request the channel took off the wire itself.

``MetaStoreChannel`` (``metastore.api.site``) parses the plainest hot
requests itself (``metastore.api.hotwire``) instead of building a
``twisted.web`` ``Request`` for each; ``HotRequest`` is what it hands to
``HotRoutes`` instead: the few attributes and methods of a ``Request``
that the hot routes, the error answers and the request observer use.
"""

from __future__ import annotations

import io
import time

from twisted.web.http import RESPONSES

from metastore.api.hotwire import answer_bytes, prepared_answer_bytes


class HotRequest:
    """One request taken by ``channel``, answered once: ``write_whole``
    or ``write_prepared`` hands the answer's bytes to the channel, which
    writes them in order.  Once the connection is lost (``lost``) or the
    answer is written, further answers are dropped."""

    __slots__ = ("channel", "method", "uri", "path", "content", "received_at", "code", "code_message", "_headers")

    body_too_large = False
    """A body over the limit never reaches here (``hotwire`` leaves it to Twisted)."""

    def __init__(self, channel, method: bytes, uri: bytes, path: bytes, body: bytes) -> None:
        self.channel = channel
        self.method = method
        self.uri = uri
        self.path = path
        self.content = io.BytesIO(body)
        self.received_at = time.perf_counter()
        self.code = 200
        self.code_message = b"OK"
        self._headers: dict[bytes, bytes] | None = None

    def setResponseCode(self, code: int) -> None:
        """The status of an error answer (``write_prepared``)."""
        self.code = code
        self.code_message = RESPONSES.get(code, b"Unknown Status")

    def setHeader(self, name: bytes, value: bytes) -> None:
        """A header of an error answer (``write_prepared``), replacing one of the same name."""
        if self._headers is None:
            self._headers = {}
        self._headers[name] = value

    def write_whole(self, code: int, headers: bytes, body: bytes | None) -> None:
        """Answer ``code`` (200, 204 or 404) with the header lines
        ``headers`` and ``body`` (None: none)."""
        channel = self.channel
        if channel is not None:
            self.channel = None
            self.code = code
            channel.hot_answered(self, answer_bytes(code, headers, body))

    def write_prepared(self, body: bytes) -> None:
        """Answer with the status and headers set on this request (an error
        answer) and ``body``."""
        channel = self.channel
        if channel is not None:
            self.channel = None
            headers = self._headers.items() if self._headers else ()
            channel.hot_answered(self, prepared_answer_bytes(self.code, self.code_message, headers, body))

    def lost(self) -> None:
        """The connection is gone: the answer, when it comes, is dropped."""
        self.channel = None
