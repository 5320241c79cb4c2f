"""A front's proxy to its core's HTTP site, over a real Unix socket."""

from __future__ import annotations

import json

import treq
from klein import Klein
from twisted.internet import endpoints, reactor
from twisted.trial.unittest import TestCase

from metastore.api.site import MetaStoreSite
from metastore.workers.proxy import CoreProxy
from metastore.workers.supervisor import socket_address


class _Core:
    """A stand-in core site: echoes what it received, streams a long answer."""

    app = Klein()

    @app.route("/echo", methods=["POST"])
    def echo(self, request):
        request.setHeader(b"X-Seen-Method", request.method)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"body": request.content.read().decode(), "query": request.uri.decode(),
                           "header": (request.getHeader(b"x-custom") or b"").decode()}).encode()

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
        port = await endpoints.UNIXServerEndpoint(reactor, address).listen(MetaStoreSite(_Core().app.resource(), 1024))
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

    async def test_unreachable_core_is_503_with_json(self):
        """No core listening: 503, JSON body, Retry-After."""
        url = await self.serve(socket_address(self.mktemp(), 1, "http"))
        response = await treq.get(url + "/admin/status", persistent=False)
        self.assertEqual(response.code, 503)
        self.assertTrue(response.headers.getRawHeaders("Retry-After"))
        self.assertEqual((await treq.json_content(response))["error"], "core_unavailable")
        self.flushLoggedErrors()
