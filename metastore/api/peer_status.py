"""Asking another member for its status over HTTP (for ``/admin/members``)."""

from __future__ import annotations

import treq
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool

PEER_STATUS_TIMEOUT_SECONDS = 1.0

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

    async def applied_index(self, client_url: str) -> int | None:
        """The applied index the member at ``client_url`` reports, or None."""
        try:
            d = self._http.get(client_url + "/admin/status")
            d.addTimeout(self._timeout, self._reactor)
            response = await d
            body = await treq.json_content(response)
            return int(body["applied_index"])
        except Exception as e:  # unreachable, slow or confused: reported as unknown
            log.debug("no status from {url}: {e}", url=client_url, e=e)
            return None
