"""``--client-request-rate`` on gRPC: a token bucket per client address.

A server interceptor wraps every method's handler: a call (a unary call,
or the opening of a stream) from a client over its rate ends at once with
RESOURCE_EXHAUSTED and etcd's "etcdserver: too many requests"; clientv3
shows that text.  Messages inside an open stream are not counted.
"""

from __future__ import annotations

import inspect

import grpc

from metastore.api.v3.errors import TOO_MANY_REQUESTS


def client_address(context) -> str:
    """The client's address without its port (``ipv4:1.2.3.4:5`` -> ``1.2.3.4``)."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rpartition(":")[0]
        return host.strip("[]") or rest
    return peer


class RateLimitInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls of clients over their rate (module docstring)."""

    def __init__(self, buckets) -> None:
        """``buckets``: a ``metastore.security.limits.TokenBuckets`` (``take(address)``)."""
        self.buckets = buckets

    async def intercept_service(self, continuation, handler_call_details):
        """The method's handler, behind the client's token bucket."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _limited(handler, self.buckets)


def _limited(handler: grpc.RpcMethodHandler, buckets) -> grpc.RpcMethodHandler:
    async def admit(context) -> None:
        if buckets.take(client_address(context)):
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, TOO_MANY_REQUESTS)

    def unary(behaviour):
        async def call(request_or_iterator, context):
            await admit(context)
            return await behaviour(request_or_iterator, context)
        return call

    def streaming(behaviour):
        async def call(request_or_iterator, context):
            await admit(context)
            async for response in behaviour(request_or_iterator, context):
                yield response
        return call

    kinds = {
        "unary_unary": grpc.unary_unary_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "unary_stream": grpc.unary_stream_rpc_method_handler,
        "stream_stream": grpc.stream_stream_rpc_method_handler,
    }
    for attribute, make in kinds.items():
        behaviour = getattr(handler, attribute)
        if behaviour is not None:
            # A streaming method is an async generator or a coroutine that writes.
            wrap = streaming if inspect.isasyncgenfunction(behaviour) else unary
            return make(wrap(behaviour), request_deserializer=handler.request_deserializer,
                        response_serializer=handler.response_serializer)
    return handler
