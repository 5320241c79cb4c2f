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
from typing import Callable, Coroutine, Sequence

import grpc
from twisted.application import service
from twisted.internet import defer

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


class GrpcService(service.Service):
    """Serves gRPC on ``host:port`` while running (port 0 picks a free one).
    A request larger than ``max_request_bytes`` (plus the envelope) is
    refused with RESOURCE_EXHAUSTED before any servicer sees it.

    ``listening`` fires with the bound port once the server accepts calls,
    or fails if it cannot bind.  Starting on a reactor other than the
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
        self.port: int | None = None
        self.listening: defer.Deferred = defer.Deferred()
        self._server: grpc.aio.Server | None = None

    def startService(self) -> None:
        """Build the server, bind it and start it on the reactor's loop."""
        asyncio_loop(self.reactor)
        super().startService()
        as_deferred(self._start(), self.reactor).addCallbacks(self._started, self.listening.errback)

    async def _start(self) -> int | None:
        if not self.running:
            return None  # stopped before the loop got to start it
        server = grpc.aio.server(options=list(self.options))
        for register in self.registrations:
            register(server)
        port = server.add_insecure_port(f"{self.host}:{self.requested_port}")
        self._server = server
        await server.start()
        return port

    def _started(self, port: int | None) -> None:
        if port is None:
            return
        self.port = port
        self.listening.callback(port)

    def stopService(self) -> defer.Deferred:
        """Stop accepting calls; the Deferred fires once the server is stopped."""
        super().stopService()
        server, self._server = self._server, None
        self.port = None
        if server is None:
            return defer.succeed(None)
        return as_deferred(server.stop(STOP_GRACE_SECONDS), self.reactor)
