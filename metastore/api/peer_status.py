"""Asking another member for its status over HTTP (for ``/admin/members``)."""

from __future__ import annotations

from dataclasses import dataclass

import treq
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool

PEER_STATUS_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class PeerStatus:
    """The part of a member's ``/admin/status`` that ``/admin/members`` repeats."""

    applied_index: int
    term: int
    role: str
    healthy: bool

log = Logger()


class PeerStatusClient:
    """Fetches other members' ``/admin/status``; never fails, answers None
    for a member that is unreachable, slow or confused."""

    def __init__(self, reactor, timeout: float = PEER_STATUS_TIMEOUT_SECONDS) -> None:
        self._reactor = reactor
        self._timeout = timeout
        self._http = treq.client.HTTPClient(
            Agent(reactor, connectTimeout=timeout, pool=HTTPConnectionPool(reactor, persistent=False))
        )

    async def status(self, client_url: str) -> PeerStatus | None:
        """What the member at ``client_url`` reports of itself, or None."""
        try:
            d = self._http.get(client_url + "/admin/status")
            d.addTimeout(self._timeout, self._reactor)
            response = await d
            body = await treq.json_content(response)
            return PeerStatus(
                applied_index=int(body["applied_index"]),
                term=int(body["term"]),
                role=str(body["role"]),
                healthy=bool(body["healthy"]),
            )
        except Exception as e:  # unreachable, slow or confused: reported as unknown
            log.debug("no status from {url}: {e}", url=client_url, e=e)
            return None
