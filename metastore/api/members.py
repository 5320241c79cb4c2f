"""Membership changes: ``POST /{id}`` and ``DELETE /{id}`` (the seed's
spelling), ``POST`` and ``DELETE /admin/members/{id}`` (the unambiguous one).

Every change is checked against the membership as applied here before it
is proposed, so raft is never asked for one it would refuse or ignore.
"""

from __future__ import annotations

from metastore.api import validation
from metastore.api.errors import HTTPError
from metastore.raft.types import ConfChange, ConfChangeType


class MembershipAPI:
    """Adds and removes members; answers once the change is applied here."""

    def __init__(self, node) -> None:
        self.node = node

    def _checked_addition(self, member_id: int, body: bytes) -> str:
        """The new member's peer URL, once the addition is known to be valid."""
        url = validation.peer_url(body)
        node = self.node
        if member_id in node.members:
            raise HTTPError(409, "member_exists", f"member {member_id} is already in the cluster")
        if node.was_removed(member_id):
            raise HTTPError(409, "member_removed", f"member {member_id} was removed; a removed id is never reused")
        validation.unique_peer_url(url, node.members.values())
        return url

    async def add(self, request, member_id: int) -> bytes:
        """``POST`` with the new member's peer URL as the body: 204 once applied."""
        url = self._checked_addition(member_id, request.content.read())
        await self.node.change_membership(ConfChange(ConfChangeType.ConfChangeAddNode, member_id, url.encode()))
        request.setResponseCode(204)
        return b""

    async def remove(self, request, member_id: int, hint: str = "") -> bytes:
        """``DELETE``: 204 once the member is removed, 404 if unknown, 409
        for the cluster's last voter."""
        node = self.node
        if member_id not in node.members:
            raise HTTPError(404, "no_such_member", f"member {member_id} is not in the cluster{hint}")
        if tuple(node.cluster_state().voters) == (member_id,):
            raise HTTPError(409, "last_member", f"member {member_id} is the cluster's only voter; it cannot be removed")
        await node.change_membership(ConfChange(ConfChangeType.ConfChangeRemoveNode, member_id))
        request.setResponseCode(204)
        return b""
