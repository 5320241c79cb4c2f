"""A front's proxy to its core's HTTP site, over a real Unix socket."""

from __future__ import annotations

import json

import treq
from klein import Klein
from twisted.internet import defer, endpoints, protocol, reactor
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from metastore.api.site import MetaStoreSite
from metastore.workers.proxy import CoreProxy
from metastore.workers.supervisor import socket_address
from tests.process import wait_until


class _Core:
    """A stand-in core site: echoes what it received, streams a long answer."""

    app = Klein()

    @app.route("/echo", methods=["POST"])
    def echo(self, request):
        request.setHeader(b"X-Seen-Method", request.method)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"body": request.content.read().decode(), "query": request.uri.decode(),
                           "header": (request.getHeader(b"x-custom") or b"").decode()}).encode()

    @app.route("/endless")
    def endless(self, request):
        """One line, then nothing until the connection goes."""
        request.write(b"first\n")
        self.ended = defer.Deferred()
        request.notifyFinish().addBoth(self.ended.callback)
        return defer.Deferred(lambda d: None)  # never answers by itself

    @app.route("/stream")
    def stream(self, request):
        for i in range(100):
            request.write(b"%d\n" % i)
        request.finish()
        return None


class CoreProxyTests(TestCase):
    """What the front forwards whole, and a core that cannot be reached."""

    async def serve(self, core_address: str) -> str:
        """A front-like site whose every request goes to ``core_address``; its URL."""
        proxy = CoreProxy(reactor, core_address)
        port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(MetaStoreSite(proxy, 1024))
        self.addCleanup(port.stopListening)
        self.addCleanup(proxy.close)
        return f"http://127.0.0.1:{port.getHost().port}"

    async def start_core(self) -> str:
        address = socket_address(self.mktemp(), 1, "http")
        self.core = _Core()
        port = await endpoints.UNIXServerEndpoint(reactor, address).listen(MetaStoreSite(self.core.app.resource(), 1024))
        self.addCleanup(port.stopListening)
        return address

    async def test_method_path_query_headers_and_body_are_forwarded(self):
        """The core sees the request as the client sent it; the client gets
        the core's status, headers and body."""
        url = await self.serve(await self.start_core())
        response = await treq.post(url + "/echo?a=1", data=b"payload", headers={"X-Custom": "yes"}, persistent=False)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("X-Seen-Method"), ["POST"])
        self.assertEqual(await treq.json_content(response), {"body": "payload", "query": "/echo?a=1", "header": "yes"})

    async def test_a_streamed_answer_arrives_whole(self):
        """An answer written in pieces (a snapshot stream) comes through whole."""
        url = await self.serve(await self.start_core())
        response = await treq.get(url + "/stream", persistent=False)
        self.assertEqual(await treq.content(response), b"".join(b"%d\n" % i for i in range(100)))

    async def test_a_client_leaving_a_stream_ends_it_in_the_core(self):
        """The client closes a streamed answer (a watch): the core's request
        ends too, so nothing is left open there."""
        url = await self.serve(await self.start_core())
        host, port = url.rsplit("/", 1)[1].split(":")
        client = _Lines()
        await endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, host, int(port)), client)
        client.transport.write(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        await wait_until(lambda: b"first" in client.data, timeout=10, what="the first line")
        client.transport.loseConnection()
        await wait_until(lambda: self.core.ended.called, timeout=10, what="the core's request to end")
        self.assertIsInstance(self.core.ended.result, Failure)  # the connection went, not a normal end
        self.core.ended.addErrback(lambda _: None)

    async def test_unreachable_core_is_503_with_json(self):
        """No core listening: 503, JSON body, Retry-After."""
        url = await self.serve(socket_address(self.mktemp(), 1, "http"))
        response = await treq.get(url + "/admin/status", persistent=False)
        self.assertEqual(response.code, 503)
        self.assertTrue(response.headers.getRawHeaders("Retry-After"))
        self.assertEqual((await treq.json_content(response))["error"], "core_unavailable")
        self.flushLoggedErrors()


class _Lines(protocol.Protocol):
    """Keeps what the server sent."""

    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data
