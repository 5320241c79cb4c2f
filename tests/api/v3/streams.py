"""A test client for the gateway's streaming answers (``/v3/watch``,
``/v3/lease/keepalive``): one POST over a plain TCP connection, the
chunked response read chunk by chunk, so a test sees exactly what etcd3gw
sees (each chunk must hold one whole JSON object)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from twisted.internet import endpoints, protocol

from tests.process import wait_until


class ChunkedResponse(protocol.Protocol):
    """Sends one request, then parses the response's status, headers and
    chunks; ``messages`` holds each chunk parsed as JSON, ``chunks`` the raw
    chunk bodies, ``ended`` whether the last (empty) chunk came."""

    def __init__(self, request: bytes) -> None:
        self._request = request
        self._buffer = b""
        self.status: int | None = None
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.messages: list[dict] = []
        self.ended = False
        self.closed = False
        self.body = b""
        """The whole body of a response that is not chunked."""

    def connectionMade(self) -> None:
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        if self.status is None:
            head, found, rest = self._buffer.partition(b"\r\n\r\n")
            if not found:
                return
            lines = head.split(b"\r\n")
            self.status = int(lines[0].split()[1])
            self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
            self._buffer = rest
        if self.headers.get(b"transfer-encoding") != b"chunked":
            self.body += self._buffer
            self._buffer = b""
            return
        while not self.ended:
            size_line, found, rest = self._buffer.partition(b"\r\n")
            if not found:
                return
            size = int(size_line, 16)
            if len(rest) < size + 2:
                return
            chunk, self._buffer = rest[:size], rest[size + 2:]
            if size == 0:
                self.ended = True
                return
            self.chunks.append(chunk)
            if chunk.strip():  # etcd sends a large message's newline as a chunk of its own
                self.messages.append(json.loads(chunk))

    def connectionLost(self, reason) -> None:
        self.closed = True

    @property
    def results(self) -> list[dict]:
        """The ``result`` of each message."""
        return [m["result"] for m in self.messages]

    async def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        """Wait until ``count`` messages came (bounded); their results."""
        await wait_until(lambda: len(self.messages) >= count, timeout=timeout, what=f"{count} stream messages")
        return self.results

    def close(self) -> None:
        """Go away without a word, as etcd3gw's ``cancel()`` does."""
        self.transport.abortConnection()


async def post_stream(reactor, url: str, path: str, body: dict, headers: dict[str, str] | None = None) -> ChunkedResponse:
    """POST ``body`` as JSON to ``url + path`` (with ``headers``); the
    connected reader, once the response's head arrived (bounded)."""
    parts = urlsplit(url)
    data = json.dumps(body).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items()) + "\r\n"
    ).encode() + data
    reader = ChunkedResponse(request)
    endpoint = endpoints.TCP4ClientEndpoint(reactor, parts.hostname, parts.port)
    await endpoints.connectProtocol(endpoint, reader)
    await wait_until(lambda: reader.status is not None or reader.closed, timeout=10, what="the response head")
    return reader

