"""The core's supervisor of its fronts, without front processes: it serves
the client port itself until the first front listens."""

from __future__ import annotations

import socket

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from metastore.ports import free_port
from metastore.workers.front import FrontSettings
from metastore.workers.supervisor import FrontSupervisor
from tests.process import wait_until


def _settings(port: int) -> FrontSettings:
    return FrontSettings(link="\0unused", core_http="\0unused", host="127.0.0.1", port=port, cluster_id=1,
                         max_request_bytes=1024, header_timeout=5.0, call_timeout=5.0)


class InterimServingTests(TestCase):
    """``FrontSupervisor`` with an interim site and no fronts to start."""

    async def get(self, port: int) -> int:
        d = treq.get(f"http://127.0.0.1:{port}/", persistent=False)
        d.addTimeout(5, reactor)
        response = await d
        await treq.content(response)
        return response.code

    def start_core_serving(self) -> tuple[FrontSupervisor, int]:
        """A started supervisor whose core's site answers ``core`` at ``/``; and its port."""
        root = Resource()
        root.putChild(b"", Data(b"core", "text/plain"))
        port = free_port()
        supervisor = FrontSupervisor(reactor, 0, _settings(port), interim_site=Site(root))
        supervisor.startService()
        self.addCleanup(supervisor.stopService)
        return supervisor, port

    async def test_the_core_serves_until_a_front_listens(self):
        """From start the core's site answers on the client port; once a
        front says it listens the core stops listening, and so it stays."""
        supervisor, port = self.start_core_serving()
        self.assertEqual(await self.get(port), 200)
        await supervisor.front_listening()
        with self.assertRaises(Exception):
            await self.get(port)
        supervisor.front_listening()  # a second front: nothing more to stop

    async def test_stopping_stops_serving(self):
        """Stopped before any front listened: the port is closed."""
        port = free_port()
        supervisor = FrontSupervisor(reactor, 0, _settings(port), interim_site=Site(Resource()))
        supervisor.startService()
        await supervisor.stopService()
        with self.assertRaises(Exception):
            await self.get(port)

    async def test_a_connection_queued_when_a_front_listens_is_served(self):
        """A connection the kernel queued on the core's socket but the core
        had not accepted when the first front listens is accepted and
        answered by the core, not reset by the close."""
        supervisor, port = self.start_core_serving()
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.addCleanup(client.close)
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await supervisor.front_listening()  # the reactor has not run: the connection is still queued
        client.setblocking(False)
        answer = bytearray()

        def read() -> bool:
            try:
                chunk = client.recv(65536)
            except BlockingIOError:
                return False
            answer.extend(chunk)
            return not chunk

        await wait_until(read, timeout=10, what="the core's answer and close")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), bytes(answer))
        self.assertTrue(answer.endswith(b"core"), bytes(answer))
