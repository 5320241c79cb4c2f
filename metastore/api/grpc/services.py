"""Which servicers a member's gRPC port serves: one factory per etcd service.

``registrations(member, reactor, cluster_id, max_request_bytes)`` gives the
``GrpcService`` registrations for a member facade.  A new service is one
more entry in ``SERVICER_FACTORIES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from metastore.api.grpc.convert import HeaderStamp
from metastore.api.grpc.lease import LeaseServicer
from metastore.api.grpc.proto import rpc_pb2_grpc
from metastore.api.grpc.server import Registration
from metastore.api.grpc.watch import WatchServicer
from metastore.api.v3.lease import LeaseService
from metastore.api.v3.watch import WatchService


@dataclass(frozen=True, slots=True)
class ServicerContext:
    """What every servicer factory is given."""

    member: object
    """The member's ``MemberFacade``."""
    reactor: object
    stamp: Callable[[], HeaderStamp]
    """The response header's cluster id, member id and term, now."""
    max_request_bytes: int


SERVICER_FACTORIES: tuple[Callable[[ServicerContext], Registration], ...] = (
    lambda c: lambda server: rpc_pb2_grpc.add_WatchServicer_to_server(
        WatchServicer(WatchService(c.member, c.max_request_bytes), c.stamp), server
    ),
    lambda c: lambda server: rpc_pb2_grpc.add_LeaseServicer_to_server(
        LeaseServicer(LeaseService(c.member), c.reactor, c.stamp), server
    ),
)


def registrations(member, reactor, cluster_id: int, max_request_bytes: int) -> list[Registration]:
    """The registrations of every servicer in ``SERVICER_FACTORIES`` for ``member``."""

    def stamp() -> HeaderStamp:
        return HeaderStamp(cluster_id, member.member_id, member.term)

    context = ServicerContext(member, reactor, stamp, max_request_bytes)
    return [factory(context) for factory in SERVICER_FACTORIES]

