"""The v3 Lease service: grant, revoke, keepalive, time-to-live and the
list of leases, as etcd answers them, on etcd-shaped dataclasses.

Nothing here knows JSON or protobuf: the JSON API (``lease_codec``) and the
gRPC servicers turn their wire messages into these requests and the
responses back.  Grants, revokes and keepalives are replicated through the
facade; time-to-live and the list are read from this member's applied state
after a linearizable read barrier.
"""

from __future__ import annotations

from dataclasses import dataclass

from metastore.auth.messages import AuthInfo
from metastore.facade import Consistency, MemberFacade
from metastore.kv.errors import LeaseNotFoundError
from metastore.kv.messages import (
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseKeepAliveRequest,
    LeaseKeepAliveResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    ResponseHeader,
)

__all__ = [
    "LeaseGrantRequest",
    "LeaseGrantResponse",
    "LeaseKeepAliveRequest",
    "LeaseKeepAliveResponse",
    "LeaseLeasesRequest",
    "LeaseLeasesResponse",
    "LeaseRevokeRequest",
    "LeaseRevokeResponse",
    "LeaseService",
    "LeaseTimeToLiveRequest",
    "LeaseTimeToLiveResponse",
]


@dataclass(frozen=True, slots=True)
class LeaseTimeToLiveRequest:
    """``LeaseTimeToLiveRequest``: lease ``id``, with its keys if ``keys``."""

    id: int
    keys: bool = False


@dataclass(frozen=True, slots=True)
class LeaseTimeToLiveResponse:
    """``LeaseTimeToLiveResponse``: ``ttl`` the seconds left (-1: no such
    lease), ``granted_ttl`` the TTL granted, ``keys`` the attached keys
    when asked for."""

    header: ResponseHeader
    id: int
    ttl: int
    granted_ttl: int = 0
    keys: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class LeaseLeasesRequest:
    """``LeaseLeasesRequest``: no fields."""


@dataclass(frozen=True, slots=True)
class LeaseLeasesResponse:
    """``LeaseLeasesResponse``: the ids of every lease, ascending."""

    header: ResponseHeader
    ids: tuple[int, ...] = ()


class LeaseService:
    """etcd's ``Lease`` service over a member's facade."""

    def __init__(self, member: MemberFacade) -> None:
        self._member = member

    def _header(self) -> ResponseHeader:
        return ResponseHeader(self._member.revision)

    async def grant(self, request: LeaseGrantRequest, auth: AuthInfo | None = None) -> LeaseGrantResponse:
        """Grant a lease (``id`` 0: this member picks one; a TTL below the
        minimum is raised to it).  Raises ``LeaseExistsError`` /
        ``LeaseTTLTooLargeError``; ``auth``: the facade's ``authorize``
        answer, proposed with it."""
        return await self._member.lease_grant(request.ttl, request.id, auth)

    async def revoke(self, request: LeaseRevokeRequest, auth: AuthInfo | None = None) -> LeaseRevokeResponse:
        """Revoke a lease and delete its keys in one revision.  Raises
        ``LeaseNotFoundError``; ``auth`` as for ``grant``."""
        return await self._member.lease_revoke(request.id, auth)

    async def keepalive(self, request: LeaseKeepAliveRequest) -> LeaseKeepAliveResponse:
        """Renew a lease; its ``ttl`` is the whole TTL again.  An unknown or
        expired lease answers ``ttl`` 0 rather than an error, as etcd's
        keepalive stream does."""
        try:
            return await self._member.lease_keepalive(request.id)
        except LeaseNotFoundError:
            return LeaseKeepAliveResponse(self._header(), request.id, 0)

    async def time_to_live(self, request: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        """A lease's remaining and granted TTL (and keys); an unknown lease
        answers ``ttl`` -1, as etcd does."""
        await self._member.read(Consistency.LINEARIZABLE)
        status = self._member.lease_time_to_live(request.id, request.keys)
        return LeaseTimeToLiveResponse(self._header(), request.id, status.ttl, status.granted_ttl, status.keys)

    async def leases(self, request: LeaseLeasesRequest) -> LeaseLeasesResponse:
        """Every lease's id."""
        await self._member.read(Consistency.LINEARIZABLE)
        return LeaseLeasesResponse(self._header(), tuple(lease.id for lease in self._member.leases()))
