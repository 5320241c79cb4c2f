"""The gRPC services a member serves: one factory per service.

A factory takes the ``ServedMember`` and the ``grpc.aio.Server`` and adds
its servicer; to serve another service, add its ``register`` here.
"""

from __future__ import annotations

import functools
from typing import Callable

import grpc

from metastore.api.grpc import auth, cluster, kv, lease, maintenance, watch
from metastore.api.grpc.member import ServedMember
from metastore.api.grpc.server import Registration

SERVICE_FACTORIES: tuple[Callable[[ServedMember, grpc.aio.Server], None], ...] = (
    kv.register,
    cluster.register,
    maintenance.register,
    watch.register,
    lease.register,
    auth.register,
)
"""Every service served, in no particular order."""


def registrations(served: ServedMember) -> list[Registration]:
    """The ``GrpcService`` registrations of every service for ``served``."""
    return [functools.partial(factory, served) for factory in SERVICE_FACTORIES]
