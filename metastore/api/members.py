"""Membership changes: ``POST /{id}`` and ``DELETE /{id}`` (the seed's
spelling), ``POST`` and ``DELETE /admin/members/{id}`` (the unambiguous one).

Every change is checked against the membership as applied here before it
is proposed, so raft is never asked for one it would refuse or ignore.
"""

from __future__ import annotations

from metastore.api import validation
from metastore.api.errors import HTTPError
from metastore.facade import MemberFacade, MembershipError

_STATUS = {
    "bad_peer_url": 400,
    "member_exists": 409,
    "member_removed": 409,
    "peer_url_exists": 409,
    "last_member": 409,
    "no_such_member": 404,
}
"""The HTTP status of each ``MembershipError`` code."""


class MembershipAPI:
    """Adds and removes members; answers once the change is applied here."""

    def __init__(self, member: MemberFacade) -> None:
        self.member = member

    async def add(self, request, member_id: int) -> bytes:
        """``POST`` with the new member's peer URL as the body: 204 once applied."""
        url = validation.peer_url(request.content.read())
        await self._change(lambda: self.member.add_member(member_id, url))
        request.setResponseCode(204)
        return b""

    async def remove(self, request, member_id: int, hint: str = "") -> bytes:
        """``DELETE``: 204 once the member is removed, 404 if unknown (the
        message ends with ``hint``), 409 for the cluster's last voter."""
        await self._change(lambda: self.member.remove_member(member_id), hint)
        request.setResponseCode(204)
        return b""

    @staticmethod
    async def _change(operation, hint: str = "") -> None:
        # The error comes raised, or (from a front's remote facade) as the failure.
        try:
            await operation()
        except MembershipError as e:
            message = str(e) + (hint if e.code == "no_such_member" else "")
            raise HTTPError(_STATUS.get(e.code, 400), e.code, message) from None
