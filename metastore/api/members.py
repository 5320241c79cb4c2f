"""Membership changes through the seed API: ``POST /{id}``, ``DELETE /{id}``."""

from __future__ import annotations

from metastore.api.errors import HTTPError
from metastore.facade import MemberFacade, MembershipError

_STATUS = {"bad_peer_url": 400, "member_exists": 409, "no_such_member": 404}


class MembershipAPI:
    """Adds and removes members; answers once the change is applied here."""

    def __init__(self, member: MemberFacade) -> None:
        self.member = member

    async def add(self, request, member_id: int) -> bytes:
        """``POST /{id}`` with the new member's peer URL as the body: 204."""
        raw = request.content.read().strip()
        try:
            url = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise HTTPError(400, "bad_peer_url", f"the body must be the new member's peer URL: {e}") from None
        await self._change(lambda: self.member.add_member(member_id, url))
        request.setResponseCode(204)
        return b""

    async def remove(self, request, member_id: int) -> bytes:
        """``DELETE /{id}``: 204 once the member is removed, 404 if unknown."""
        await self._change(lambda: self.member.remove_member(member_id))
        request.setResponseCode(204)
        return b""

    @staticmethod
    async def _change(operation) -> None:
        try:
            d = operation()
        except MembershipError as e:
            raise HTTPError(_STATUS.get(e.code, 400), e.code, str(e)) from None
        await d
