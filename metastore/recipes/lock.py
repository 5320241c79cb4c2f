"""A distributed lock with a lease, as etcd's ``concurrency.Mutex``.

Each contender creates its own key ``<name>/<random id>`` with a lease
(``PUT ?ttl``, create-only) and keeps it alive.  Keys are served in the
order they were created (their ``create_revision``): the contender whose
key is oldest holds the lock; every other waits, with a blocking read, for
the key just before its own to go (released, or expired with its holder's
lease), then looks again.  Waiting on the predecessor only (not on the
whole prefix) wakes one contender per release.
"""

from __future__ import annotations

import uuid

from metastore.client.concurrency import first_in_line, predecessor
from metastore.recipes.client import RestClient
from metastore.recipes.keepalive import KeepAlive

WAIT_SECONDS = 30.0


class LockLost(Exception):
    """The lock's key or lease disappeared while waiting for it."""


class Lock:
    """``await lock.acquire()`` ... ``await lock.release()``; ``ttl`` bounds
    how long the lock outlives a holder that died."""

    def __init__(self, client: RestClient, name: str, clock, ttl: int = 10, value: str = "") -> None:
        self.client, self.name, self.ttl, self.value = client, name.rstrip("/") + "/", ttl, value
        self._clock = clock
        self.key: str | None = None
        self.revision = 0
        """The create revision of this contender's key (0 before ``acquire``)."""
        self._keepalive: KeepAlive | None = None

    async def acquire(self) -> None:
        """Wait until this contender holds the lock."""
        self.key = self.name + uuid.uuid4().hex
        answer = await self.client.put(self.key, self.value, ttl=self.ttl, create_only=True)
        self.revision = answer["revision"]
        self._keepalive = KeepAlive(self.client, self.key, self.ttl, self._clock)
        while True:
            entries, index = await self.client.list(self.name)
            if not any(e.key == self.key for e in entries):
                self._stop()
                raise LockLost(f"{self.key} is gone (its lease expired?)")
            ahead = predecessor(entries, self.revision)
            if ahead is None:
                return
            await self.client.get(ahead.key, index=index, wait=WAIT_SECONDS)

    async def release(self) -> None:
        """Give the lock up (or stop waiting for it)."""
        self._stop()
        if self.key is not None:
            await self.client.delete(self.key)
            self.key = None

    def abandon(self) -> None:
        """Stop keeping the key alive without deleting it, as a process that
        died would: the lock frees itself when the lease expires."""
        self._stop()

    async def holder(self) -> str | None:
        """The key of the current holder, or None when nobody holds it."""
        entries, _ = await self.client.list(self.name)
        holder = first_in_line(entries)
        return None if holder is None else holder.key

    def _stop(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()
            self._keepalive = None
