"""The link proxy on loopback: pass, drop, blackhole and healing."""

from __future__ import annotations

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.trial.unittest import TestCase

from metastore.chaos.cluster import free_port
from metastore.chaos.proxy import BLACKHOLE, DROP, PASS, LinkProxy
from tests.process import wait_until


class _Sink(protocol.Protocol):
    """Collects what arrives at the target."""

    def connectionMade(self):
        self.factory.connections.append(self)
        self.received = b""

    def dataReceived(self, data):
        self.received += data
        self.factory.total += data


class _SinkFactory(protocol.Factory):
    protocol = _Sink

    def __init__(self):
        self.connections = []
        self.total = b""


class _Client(protocol.Protocol):
    """Remembers when its connection is lost."""

    def connectionMade(self):
        self.lost = defer.Deferred()

    def connectionLost(self, reason=None):
        self.lost.callback(None)


class ProxyTests(TestCase):
    """One ``LinkProxy`` between a client and a sink server."""

    timeout = 30

    async def setUp(self):
        self.sink = _SinkFactory()
        self.listening = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self.sink)
        self.addCleanup(self.listening.stopListening)
        self.proxy = LinkProxy(reactor, 1, 2, free_port(), self.listening.getHost().port)
        await self.proxy.start()
        self.addCleanup(self.proxy.stop)

    async def connect(self) -> _Client:
        """A client connected to the proxy."""
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxy.listen_port)
        client = await endpoint.connect(protocol.Factory.forProtocol(_Client))
        self.addCleanup(client.transport.abortConnection)
        return client

    async def test_pass_forwards(self):
        """In ``pass`` mode bytes arrive at the target."""
        client = await self.connect()
        client.transport.write(b"hello")
        await wait_until(lambda: self.sink.total == b"hello", timeout=10, what="bytes at the sink")

    async def test_drop_aborts_and_refuses(self):
        """``drop`` aborts open connections and aborts new ones at once."""
        client = await self.connect()
        client.transport.write(b"x")
        await wait_until(lambda: self.sink.total == b"x", timeout=10, what="first byte")
        self.proxy.set_mode(DROP)
        await client.lost
        again = await self.connect()
        await again.lost
        self.assertEqual(self.sink.total, b"x")

    async def test_blackhole_discards_then_heal_reconnects(self):
        """``blackhole`` keeps the connection but nothing arrives; healing aborts it
        so the dialer starts a fresh stream, which passes."""
        client = await self.connect()
        self.proxy.set_mode(BLACKHOLE)
        client.transport.write(b"lost")
        await wait_until(lambda: self.proxy.connections, timeout=10, what="connection registered")
        self.assertFalse(client.lost.called)
        self.proxy.set_mode(PASS)
        await client.lost
        fresh = await self.connect()
        fresh.transport.write(b"ok")
        await wait_until(lambda: self.sink.total.endswith(b"ok"), timeout=10, what="fresh stream")
        self.assertNotIn(b"lost", self.sink.total)

    def test_unknown_mode_refused(self):
        """Only the three modes exist."""
        self.assertRaises(ValueError, self.proxy.set_mode, "slow")
