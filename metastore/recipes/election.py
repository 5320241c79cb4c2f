"""Leader election, as etcd's ``concurrency.Election``.

A candidate ``campaign``s with a value: it queues a leased key under the
election's name exactly as ``Lock`` does and wins when its key is the
oldest; the leader's value is that oldest key's value.  ``resign`` deletes
the key, handing leadership to the next in line; a leader that dies loses
it when its lease expires.  ``observe`` reports every change of leader.
"""

from __future__ import annotations

from typing import Callable

from metastore.client.concurrency import first_in_line
from metastore.recipes.client import RestClient
from metastore.recipes.lock import Lock

class Election:
    """One election named ``name``, seen through ``client``."""

    def __init__(self, client: RestClient, name: str, clock, ttl: int = 10) -> None:
        self.client, self.name, self.ttl = client, name.rstrip("/") + "/", ttl
        self._clock = clock
        self._candidacy: Lock | None = None

    async def campaign(self, value: str) -> None:
        """Wait until this candidate leads, with ``value``."""
        self._candidacy = Lock(self.client, self.name, self._clock, self.ttl, value)
        await self._candidacy.acquire()

    async def resign(self) -> None:
        """Stop leading (or stop campaigning)."""
        if self._candidacy is not None:
            await self._candidacy.release()
            self._candidacy = None

    async def leader(self) -> str | None:
        """The current leader's value, or None when nobody leads."""
        entries, _ = await self.client.list(self.name)
        return _leader(entries)

    def observe(self, on_leader: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``on_leader`` with the leader's value now and after every
        change of leader, until the returned function is called."""
        last: list = []

        def entries_changed(entries) -> None:
            current = _leader(entries)
            if last != [current]:
                last[:] = [current]
                on_leader(current)

        return self.client.follow(self.name, entries_changed)


def _leader(entries) -> str | None:
    leader = first_in_line(entries)
    return None if leader is None else leader.value
