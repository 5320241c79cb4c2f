"""Membership changes through the seed API: ``POST /{id}``, ``DELETE /{id}``."""

from __future__ import annotations

from metastore.api.errors import HTTPError
from metastore.raft.types import ConfChange, ConfChangeType
from metastore.transport import parse_peer_url


class MembershipAPI:
    """Adds and removes members; answers once the change is applied here."""

    def __init__(self, node) -> None:
        self.node = node

    async def add(self, request, member_id: int) -> bytes:
        """``POST /{id}`` with the new member's peer URL as the body: 204."""
        raw = request.content.read().strip()
        try:
            url = raw.decode("utf-8")
            parse_peer_url(url)
        except (UnicodeDecodeError, ValueError) as e:
            raise HTTPError(400, "bad_peer_url", f"the body must be the new member's peer URL: {e}") from None
        if member_id in self.node.members:
            raise HTTPError(409, "member_exists", f"member {member_id} is already in the cluster")
        await self.node.change_membership(ConfChange(ConfChangeType.ConfChangeAddNode, member_id, url.encode()))
        request.setResponseCode(204)
        return b""

    async def remove(self, request, member_id: int) -> bytes:
        """``DELETE /{id}``: 204 once the member is removed, 404 if unknown."""
        if member_id not in self.node.members:
            raise HTTPError(404, "no_such_member", f"member {member_id} is not in the cluster")
        await self.node.change_membership(ConfChange(ConfChangeType.ConfChangeRemoveNode, member_id))
        request.setResponseCode(204)
        return b""
