"""A userspace TCP proxy for one directed peer link, switchable at run time.

Peer connections are one-way (the dialer writes, the acceptor reads), so a
proxy on the address member A dials for member B carries exactly the
messages A sends to B.  Cutting it cuts A→B and leaves B→A alone: that is
how one-way partitions are made.

Modes:

- ``pass``: bytes flow both ways.
- ``drop``: every connection is aborted and new ones are accepted and
  aborted at once (the dialer sees a reset, reports the peer unreachable and
  backs off).
- ``blackhole``: connections stay open and everything sent is read and
  discarded, so the dialer sees no error at all.  A connection that was
  ever blackholed is never forwarded again (the receiver would see a frame
  cut in the middle); healing aborts it, and the dialer reconnects.
"""

from __future__ import annotations

from twisted.internet import protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.logger import Logger

PASS = "pass"
DROP = "drop"
BLACKHOLE = "blackhole"
MODES = (PASS, DROP, BLACKHOLE)

_log = Logger()


class _UpstreamProtocol(protocol.Protocol):
    """The proxy's connection to the real listener; relays its bytes back."""

    def __init__(self, downstream: "_DownstreamProtocol") -> None:
        self.downstream = downstream

    def connectionMade(self) -> None:
        self.downstream.upstream_ready(self)

    def dataReceived(self, data: bytes) -> None:
        if self.downstream.forwarding:
            self.downstream.transport.write(data)

    def connectionLost(self, reason=None) -> None:
        self.downstream.upstream_lost()


class _DownstreamProtocol(protocol.Protocol):
    """A connection accepted from the dialing member."""

    def __init__(self, proxy: "LinkProxy") -> None:
        self.proxy = proxy
        self.upstream: _UpstreamProtocol | None = None
        self.pending: list[bytes] = []
        self.forwarding = proxy.mode == PASS
        self.closed = False

    def connectionMade(self) -> None:
        self.proxy.connections.add(self)
        if self.proxy.mode == DROP:
            self.transport.abortConnection()
            return
        if not self.forwarding:
            return
        endpoint = TCP4ClientEndpoint(self.proxy.reactor, self.proxy.target_host, self.proxy.target_port, timeout=5)
        d = endpoint.connect(_UpstreamFactory(self))
        d.addErrback(lambda _: self.abort())

    def upstream_ready(self, upstream: _UpstreamProtocol) -> None:
        if self.closed or not self.forwarding:
            upstream.transport.abortConnection()
            return
        self.upstream = upstream
        for data in self.pending:
            upstream.transport.write(data)
        self.pending = []

    def upstream_lost(self) -> None:
        if self.forwarding:
            self.abort()

    def dataReceived(self, data: bytes) -> None:
        if not self.forwarding:
            return
        if self.upstream is None:
            self.pending.append(data)
        else:
            self.upstream.transport.write(data)

    def blackhole(self) -> None:
        """Stop forwarding for good; keep reading and discarding."""
        self.forwarding = False
        self.pending = []
        if self.upstream is not None:
            self.upstream.transport.abortConnection()
            self.upstream = None

    def abort(self) -> None:
        """Close both sides at once."""
        self.forwarding = False
        if self.upstream is not None:
            self.upstream.transport.abortConnection()
            self.upstream = None
        if not self.closed:
            self.transport.abortConnection()

    def connectionLost(self, reason=None) -> None:
        self.closed = True
        self.proxy.connections.discard(self)
        if self.upstream is not None:
            self.upstream.transport.abortConnection()
            self.upstream = None


class _UpstreamFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, downstream: _DownstreamProtocol) -> None:
        self.downstream = downstream

    def buildProtocol(self, addr):
        return _UpstreamProtocol(self.downstream)


class _DownstreamFactory(protocol.Factory):
    noisy = False

    def __init__(self, proxy: "LinkProxy") -> None:
        self.proxy = proxy

    def buildProtocol(self, addr):
        return _DownstreamProtocol(self.proxy)


class LinkProxy:
    """Listens on ``listen_port`` and relays to ``target_port``, in ``mode``.

    ``source`` and ``target`` are the member ids of the link, for reports.
    """

    def __init__(self, reactor, source: int, target: int, listen_port: int, target_port: int,
                 target_host: str = "127.0.0.1", listen_host: str = "127.0.0.1") -> None:
        self.reactor = reactor
        self.source = source
        self.target = target
        self.listen_port = listen_port
        self.listen_host = listen_host
        self.target_port = target_port
        self.target_host = target_host
        self.mode = PASS
        self.connections: set[_DownstreamProtocol] = set()
        self._listening = None

    async def start(self) -> None:
        """Start listening."""
        endpoint = TCP4ServerEndpoint(self.reactor, self.listen_port, interface=self.listen_host)
        self._listening = await endpoint.listen(_DownstreamFactory(self))

    async def stop(self) -> None:
        """Stop listening and abort every connection."""
        for connection in list(self.connections):
            connection.abort()
        if self._listening is not None:
            listening, self._listening = self._listening, None
            await listening.stopListening()

    def set_mode(self, mode: str) -> None:
        """Switch the link to ``mode`` (see the module docstring)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        previous, self.mode = self.mode, mode
        if mode == previous:
            return
        for connection in list(self.connections):
            if mode == DROP:
                connection.abort()
            elif mode == BLACKHOLE:
                connection.blackhole()
            elif not connection.forwarding:
                # Healing: a blackholed stream cannot resume mid-frame.
                connection.abort()
