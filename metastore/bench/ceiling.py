"""A trivial HTTP server to measure the load generator's own ceiling.

``python -m metastore.bench.ceiling [--port N]`` answers every request,
whatever its method, path or body, with an empty ``200 OK`` on a keep-alive
connection (pipelined requests in order), and does nothing else: asyncio
and httptools, one process, no routing.  Whatever ``metastore-bench``
reaches against it is the most it can measure on this machine; see
``docs/benchmark.md``.
"""

from __future__ import annotations

import argparse
import asyncio

import httptools

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
CLOSING_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class AnswerEverything(asyncio.Protocol):
    """Parses requests with httptools and answers each one with 200."""

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        """Keep the transport to answer on."""
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        """Parse; a malformed request closes the connection."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._transport.close()

    def on_message_complete(self) -> None:
        """Answer the request just parsed (closing if the client asked to)."""
        if self._parser.should_keep_alive():
            self._transport.write(RESPONSE)
        else:
            self._transport.write(CLOSING_RESPONSE)
            self._transport.close()


async def serve(host: str, port: int) -> None:
    """Listen on ``host:port`` (0 picks a free port, printed) until killed."""
    server = await asyncio.get_running_loop().create_server(AnswerEverything, host, port)
    print(f"listening on http://{host}:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Parse the options and serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args()
    try:
        asyncio.run(serve(arguments.host, arguments.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
