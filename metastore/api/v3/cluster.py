"""The v3 Cluster service: member list, add, remove, update and promote.

Member ids are MetaStore's (small integers) written as etcd writes ids, as
decimal strings.  MetaStore members have one peer URL and one client URL
each, and no names of their own: ``name`` is ``member-<id>``.
"""

from __future__ import annotations

from metastore.api.v3.errors import INVALID_ARGUMENT, V3Error
from metastore.api.v3.header import Headers
from metastore.api.v3.json_fields import bool_field, list_field, uint_field
from metastore.facade import MemberFacade, MemberRecord


def member_json(member: MemberRecord) -> dict:
    """etcd's ``Member`` message."""
    document = {"ID": str(member.member_id), "name": f"member-{member.member_id}", "peerURLs": [member.peer_url]}
    if member.client_url:
        document["clientURLs"] = [member.client_url]
    if member.is_learner:
        document["isLearner"] = True
    return document


def _one_peer_url(body: dict) -> str:
    urls = list_field(body, "peerURLs")
    if len(urls) != 1 or not isinstance(urls[0], str):
        raise V3Error(INVALID_ARGUMENT, "etcdserver: given member URLs are invalid (MetaStore takes exactly one peer URL)")
    return urls[0]


class ClusterService:
    """etcd's ``Cluster`` service over a member's facade."""

    def __init__(self, member: MemberFacade, headers: Headers) -> None:
        self._member = member
        self._headers = headers

    def _answer(self, **fields) -> dict:
        return {"header": self._headers.at(None), **fields,
                "members": [member_json(m) for m in self._member.members()]}

    async def list(self, body: dict) -> dict:
        """``/cluster/member/list``: every member as applied here."""
        return self._answer()

    async def add(self, body: dict) -> dict:
        """``/cluster/member/add``: a new member (voter or learner) with an
        id MetaStore picks; answers with it and the new member list."""
        url = _one_peer_url(body)
        learner = bool_field(body, "isLearner")
        member_id = self._member.next_member_id()
        await self._member.add_member(member_id, url, learner)
        added = MemberRecord(member_id, url, "", learner)
        return self._answer(member=member_json(added))

    async def remove(self, body: dict) -> dict:
        """``/cluster/member/remove``."""
        await self._member.remove_member(uint_field(body, "ID"))
        return self._answer()

    async def update(self, body: dict) -> dict:
        """``/cluster/member/update``: a member's new peer URL."""
        await self._member.update_member(uint_field(body, "ID"), _one_peer_url(body))
        return self._answer()

    async def promote(self, body: dict) -> dict:
        """``/cluster/member/promote``: a learner that caught up becomes a voter."""
        await self._member.promote_member(uint_field(body, "ID"))
        return self._answer()
