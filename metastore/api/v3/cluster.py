"""etcd's Cluster service, protocol-neutral: member list, add, remove,
update and promote, answered as a ``MemberListing``; and the member's JSON
form for the v3 JSON API.

Member ids are MetaStore's (small integers).  MetaStore members have one
peer URL each and no names of their own: ``name`` is ``member-<id>``.
Each API lists, as a member's ``clientURLs``, the URL where a client of
*that* API reaches it: the JSON API the member's HTTP URL, the gRPC API its
gRPC URL (``--grpc-port``), so clients that discover members from the list
(``etcdctl --cluster``, clientv3's endpoint sync) dial a port that speaks
their protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from metastore.api.v3.errors import INVALID_ARGUMENT, V3Error
from metastore.api.v3.json_fields import bool_field, list_field, uint_field
from metastore.facade import MemberFacade, MemberRecord

BAD_PEER_URLS = "etcdserver: given member URLs are invalid (MetaStore takes exactly one peer URL)"


def member_name(member: MemberRecord) -> str:
    """The ``name`` etcd clients see for ``member``."""
    return f"member-{member.member_id}"


@dataclass(frozen=True, slots=True)
class MemberListing:
    """What every Cluster RPC answers: the members as applied here, and the
    member an add created."""

    members: list[MemberRecord]
    added: MemberRecord | None = None


def one_peer_url(urls: Sequence[object]) -> str:
    """The single peer URL of a request; etcd's "given member URLs are
    invalid" otherwise."""
    if len(urls) != 1 or not isinstance(urls[0], str):
        raise V3Error(INVALID_ARGUMENT, BAD_PEER_URLS)
    return urls[0]


class ClusterService:
    """etcd's ``Cluster`` service over a member's facade; raises etcd's
    errors (``MembershipError``, ``V3Error``, the node's ``Unavailable``)."""

    def __init__(self, member: MemberFacade) -> None:
        self._member = member

    def list(self) -> MemberListing:
        """``Cluster.MemberList``: every member as applied here."""
        return MemberListing(self._member.members())

    async def add(self, peer_urls: Sequence[str], is_learner: bool) -> MemberListing:
        """``Cluster.MemberAdd``: a new member (voter or learner) with an
        id MetaStore picks."""
        url = one_peer_url(peer_urls)
        member_id = self._member.next_member_id()
        await self._member.add_member(member_id, url, is_learner)
        return MemberListing(self._member.members(), MemberRecord(member_id, url, "", is_learner))

    async def remove(self, member_id: int) -> MemberListing:
        """``Cluster.MemberRemove``."""
        await self._member.remove_member(member_id)
        return self.list()

    async def update(self, member_id: int, peer_urls: Sequence[str]) -> MemberListing:
        """``Cluster.MemberUpdate``: a member's new peer URL."""
        await self._member.update_member(member_id, one_peer_url(peer_urls))
        return self.list()

    async def promote(self, member_id: int) -> MemberListing:
        """``Cluster.MemberPromote``: a learner that caught up becomes a voter."""
        await self._member.promote_member(member_id)
        return self.list()


# -- the JSON API's form -----------------------------------------------------


def member_json(member: MemberRecord) -> dict:
    """etcd's ``Member`` message as the gateway writes it (ids as strings)."""
    document = {"ID": str(member.member_id), "name": member_name(member), "peerURLs": [member.peer_url]}
    if member.client_url:
        document["clientURLs"] = [member.client_url]
    if member.is_learner:
        document["isLearner"] = True
    return document


def listing_json(listing: MemberListing, header: dict) -> dict:
    """A Cluster RPC's answer with ``header``."""
    document = {"header": header, "members": [member_json(m) for m in listing.members]}
    if listing.added is not None:
        document["member"] = member_json(listing.added)
    return document


class ClusterJSON:
    """The JSON routes' side of ``ClusterService``: bodies in, answers out."""

    def __init__(self, service: ClusterService, header) -> None:
        self._service = service
        self._header = header

    def _answer(self, listing: MemberListing) -> dict:
        return listing_json(listing, self._header(None))

    async def list(self, body: dict) -> dict:
        """``/cluster/member/list``."""
        return self._answer(self._service.list())

    async def add(self, body: dict) -> dict:
        """``/cluster/member/add``."""
        return self._answer(await self._service.add(list_field(body, "peerURLs"), bool_field(body, "isLearner")))

    async def remove(self, body: dict) -> dict:
        """``/cluster/member/remove``."""
        return self._answer(await self._service.remove(uint_field(body, "ID")))

    async def update(self, body: dict) -> dict:
        """``/cluster/member/update``."""
        return self._answer(await self._service.update(uint_field(body, "ID"), list_field(body, "peerURLs")))

    async def promote(self, body: dict) -> dict:
        """``/cluster/member/promote``."""
        return self._answer(await self._service.promote(uint_field(body, "ID")))
