"""etcd's ``Watch`` service: one bidirectional stream, many watches.

The stream's bookkeeping (ids, creates, cancels, progress, fragments) is
``metastore.api.v3.watch.WatchStream``, shared with the JSON API; this
servicer reads the client's requests into it and writes its responses
through an ``Outbox``.
No thread per stream: the stream is two coroutines on the reactor's loop
(this handler reading, the outbox writing).

Flow control: when the client stops reading, gRPC stops taking writes,
the outbox fills past its bound, the stream pauses its watches and stops
reading the client's requests; each paused watch keeps at most the hub's
bound of events and is then cancelled with a reason ("watcher too slow"),
which the client reads when it reads again.  As etcd does, a client that
half-closes keeps its watches until it goes away.

A member that stops ends every stream with UNAVAILABLE rather than
cancelling each watch: clientv3 takes a ``canceled`` answer as final
("watch is canceled by the server") but retries an UNAVAILABLE stream at
another endpoint, from the revision after the last event it got.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import grpc

from metastore.api.grpc import convert
from metastore.api.grpc.convert import HeaderStamp
from metastore.api.grpc.member import call_token
from metastore.api.grpc.outbox import HIGH_WATER_BYTES, LOW_WATER_BYTES, Outbox
from metastore.api.grpc.proto import rpc_pb2_grpc
from metastore.api.grpc.status import abort_with
from metastore.api.v3.watch import WatchService, WatchStream
from metastore.errors import Stopping


class WatchServicer(rpc_pb2_grpc.WatchServicer):
    """``Watch.Watch`` over the v3 ``WatchService`` (module docstring)."""

    def __init__(
        self,
        watches: WatchService,
        stamp: Callable[[], HeaderStamp],
        *,
        high_water_bytes: int = HIGH_WATER_BYTES,
        low_water_bytes: int = LOW_WATER_BYTES,
    ) -> None:
        self._watches = watches
        self._stamp = stamp
        self._high, self._low = high_water_bytes, low_water_bytes

    async def Watch(self, request_iterator, context):
        """Serve one client's watch stream until the client goes away, or
        end it with UNAVAILABLE "etcdserver: server stopped" when the member
        stops (clients then resume their watches at another member)."""
        stopping = asyncio.Event()
        outbox = Outbox(context.write, high_bytes=self._high, low_bytes=self._low)
        stream = self._watches.open(lambda response: outbox.put(convert.watch_response(response, self._stamp())),
                                    on_stopping=stopping.set, token=call_token(context))
        outbox.on_full, outbox.on_room = stream.pause, stream.resume
        writer = asyncio.ensure_future(outbox.run())
        reader = asyncio.ensure_future(_read(request_iterator, stream, outbox))
        stopped = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({writer, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if stopped.done():
                await abort_with(context, Stopping("the member is shutting down"))
            writer.result()  # the write that failed: the client went away
        finally:
            stream.close()
            for task in (reader, writer, stopped):
                task.cancel()
            if reader.done() and not reader.cancelled():
                reader.exception()  # retrieved: the call's end already says it


async def _read(request_iterator, stream: WatchStream, outbox: Outbox) -> None:
    """Feed the client's requests to the stream, pausing while the outbox
    is full.  When the client half-closes, its watches go on, as in etcd."""
    async for request in request_iterator:
        _apply(stream, request)
        if outbox.full:
            await outbox.room()


def _apply(stream: WatchStream, request) -> None:
    """Hand one ``WatchRequest`` to the stream (an empty one is ignored, as etcd does)."""
    which = request.WhichOneof("request_union")
    if which == "create_request":
        stream.create(convert.watch_create(request.create_request))
    elif which == "cancel_request":
        stream.cancel(request.cancel_request.watch_id)
    elif which == "progress_request":
        stream.request_progress()


def register(served, server: grpc.aio.Server) -> None:
    """Add the Watch service for ``served`` (a ``ServedMember``) to ``server``."""
    watches = WatchService(served.member, served.max_request_bytes, served.max_watchers_per_stream)
    rpc_pb2_grpc.add_WatchServicer_to_server(WatchServicer(watches, served.stamp), server)
