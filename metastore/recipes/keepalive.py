"""Keeping a leased key alive from a client process."""

from __future__ import annotations

from typing import Callable

from twisted.internet import defer
from twisted.logger import Logger

from metastore.periodic import start_periodic, stop_periodic
from metastore.recipes.client import RestClient, RestError

log = Logger()


class KeepAlive:
    """Refreshes ``key``'s lease every third of ``ttl`` until ``stop``;
    calls ``on_lost`` once if the key or its lease is gone (404)."""

    def __init__(self, client: RestClient, key: str, ttl: int, clock, on_lost: Callable[[], None] | None = None) -> None:
        self.key = key
        self.lost = False
        self._client, self._on_lost = client, on_lost
        self._busy = False
        self._loop = start_periodic(self._refresh, max(ttl / 3, 0.2), clock)

    def _refresh(self) -> None:
        if self._busy:
            return
        self._busy = True
        d = defer.ensureDeferred(self._client.refresh(self.key))
        d.addErrback(self._failed)
        d.addBoth(self._done)

    def _done(self, _) -> None:
        self._busy = False

    def _failed(self, failure) -> None:
        if failure.check(RestError) and failure.value.status == 404:
            self.lost = True
            self.stop()
            if self._on_lost is not None:
                self._on_lost()
        else:  # no member answered this time: the next round tries again
            log.info("keepalive of {key} failed: {e}", key=self.key, e=failure.value)

    def stop(self) -> None:
        """Stop refreshing (the lease then expires after its TTL)."""
        stop_periodic(self._loop)
