"""A ``grpc.aio`` server on the reactor's own asyncio loop, as a Twisted service.

One process, one event loop: Twisted runs on the asyncio reactor
(``twistd --reactor=asyncio``), and ``grpc.aio`` serves on the same loop,
so a servicer's coroutine may await the node's Deferreds
(``await as_future(d, reactor)``) and streams cost a coroutine each, not a
thread.

Servicers are added by *registrations*: callables that take the
``grpc.aio.Server`` and call the generated ``add_*Servicer_to_server``
(``rpc_pb2_grpc.add_KVServicer_to_server(KVServicer(facade), server)``).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Callable, Coroutine, Sequence

import grpc
from twisted.application import service
from twisted.internet import defer

from metastore.errors import StartupError

Registration = Callable[[grpc.aio.Server], None]
"""Adds one servicer to a ``grpc.aio.Server`` before it starts."""

GRPC_OVERHEAD_BYTES = 512 * 1024
"""Room for the envelope above the request limit, as etcd allows: the
largest message received is ``max_request_bytes`` plus this."""

KEEPALIVE_OPTIONS = (
    # etcd's --grpc-keepalive-min-time (5 s): clients may ping that often.
    # gRPC's own default (5 min) strikes etcdctl's 10 s pings and sends
    # GOAWAY after two strikes, which cut an idle ``etcdctl watch``.
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    # etcd's --grpc-keepalive-interval (2 h) and --grpc-keepalive-timeout
    # (20 s): the server's own pings to find dead clients.
    ("grpc.keepalive_time_ms", 2 * 3600 * 1000),
    ("grpc.keepalive_timeout_ms", 20_000),
)
"""Keepalive as etcd sets it, so clients tuned for etcd are not cut off."""

STOP_GRACE_SECONDS = 1.0
"""How long in-flight unary calls may finish when the service stops; open
streams are cancelled after it."""


class WrongReactor(RuntimeError):
    """gRPC was asked for while the reactor is not the asyncio reactor."""


def asyncio_loop(reactor) -> asyncio.AbstractEventLoop:
    """The asyncio loop that ``reactor`` runs on; ``WrongReactor`` with a
    message for the operator when it is not the asyncio reactor."""
    # AsyncioSelectorReactor keeps its loop here and offers no public
    # accessor; the attribute has been stable since the reactor exists.
    loop = getattr(reactor, "_asyncioEventloop", None)
    if loop is None:
        raise WrongReactor(
            f"gRPC needs the asyncio reactor (twistd --reactor=asyncio), but {type(reactor).__name__} is running"
        )
    return loop


def as_future(d: defer.Deferred, reactor) -> asyncio.Future:
    """``d`` as an asyncio future on the reactor's loop, for a servicer to
    await: the node's Deferreds reach ``grpc.aio`` through this."""
    return d.asFuture(asyncio_loop(reactor))


def as_deferred(coroutine: Coroutine, reactor) -> defer.Deferred:
    """Run ``coroutine`` as a task on the reactor's loop; a Deferred of its result."""
    return defer.Deferred.fromFuture(asyncio.ensure_future(coroutine, loop=asyncio_loop(reactor)))


def _check_free(host: str, port: int) -> None:
    """``StartupError`` with the OS's reason when ``host:port`` cannot be
    bound.  Asked first because gRPC itself would only log its reason to
    standard error, around the one line a member prints when it cannot
    start."""
    if port == 0:
        return
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            # As gRPC does: a port whose old connections linger is usable.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(sockaddr)
    except OSError as e:
        raise StartupError(f"cannot listen for gRPC on {host}:{port}: {e.strerror or e}") from None


class GrpcService(service.Service):
    """Serves gRPC on ``host:port`` while running (port 0 picks a free one).
    A request larger than ``max_request_bytes`` (plus the envelope) is
    refused with RESOURCE_EXHAUSTED before any servicer sees it.

    The port is bound by ``bind`` (twistd calls it through
    ``privilegedStartService``, before anything starts), which raises
    ``StartupError`` when the address cannot be used; ``listening`` fires
    with the bound port once the server accepts calls.  Any reactor but the
    asyncio reactor raises ``WrongReactor``.  Stopping lets unary calls
    finish for ``STOP_GRACE_SECONDS`` and cancels open streams."""

    def __init__(
        self,
        reactor,
        host: str,
        port: int,
        registrations: Sequence[Registration] = (),
        *,
        max_request_bytes: int = 1536 * 1024,
        options: Sequence[tuple[str, object]] = (),
        credentials: grpc.ServerCredentials | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self.reactor = reactor
        self.host = host
        self.requested_port = port
        self.registrations = tuple(registrations)
        self.options = (
            ("grpc.max_receive_message_length", max_request_bytes + GRPC_OVERHEAD_BYTES),
            # gRPC sets SO_REUSEPORT by default, so a second member on the
            # same port would bind silently and share its clients.
            ("grpc.so_reuseport", 0),
            *KEEPALIVE_OPTIONS,
            *options,
        )
        self.credentials = credentials
        self.interceptors = tuple(interceptors)
        """TLS credentials (``grpc.ssl_server_credentials``), or None for plaintext."""
        self.port: int | None = None
        """The bound port once ``bind`` has run, else None."""
        self.listening: defer.Deferred = defer.Deferred()
        self._server: grpc.aio.Server | None = None

    def privilegedStartService(self) -> None:
        """Bind now; raises ``StartupError`` when the address cannot be used."""
        super().privilegedStartService()
        self.bind()

    def bind(self) -> None:
        """Build the server with its servicers and bind its port (once);
        ``StartupError`` when the address cannot be used."""
        if self._server is not None:
            return
        asyncio_loop(self.reactor)
        server = grpc.aio.server(options=list(self.options), interceptors=self.interceptors or None)
        for register in self.registrations:
            register(server)
        address = f"{self.host}:{self.requested_port}"
        _check_free(self.host, self.requested_port)
        try:
            if self.credentials is None:
                self.port = server.add_insecure_port(address)
            else:
                self.port = server.add_secure_port(address, self.credentials)
        except RuntimeError as e:
            raise StartupError(f"cannot listen for gRPC on {address}: {e}") from None
        self._server = server

    def startService(self) -> None:
        """Bind (unless done) and start serving on the reactor's loop; a
        failure to bind fails ``listening``."""
        asyncio_loop(self.reactor)
        super().startService()
        try:
            self.bind()
        except StartupError as e:
            self.listening.errback(e)
            return
        as_deferred(self._start(self._server), self.reactor).addCallbacks(self._started, self.listening.errback)

    async def _start(self, server: grpc.aio.Server) -> bool:
        if self._server is not server:
            return False  # stopped before the loop got to start it
        await server.start()
        return True

    def _started(self, started: bool) -> None:
        if started:
            self.listening.callback(self.port)

    def stopService(self) -> defer.Deferred:
        """Stop accepting calls; the Deferred fires once the server is stopped."""
        super().stopService()
        server, self._server = self._server, None
        self.port = None
        if server is None:
            return defer.succeed(None)
        return as_deferred(server.stop(STOP_GRACE_SECONDS), self.reactor)
