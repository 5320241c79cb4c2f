"""Counts of the applied keyspace kept up to date from the store's changes:
live keys, and leases granted, revoked and renewed."""

from __future__ import annotations

from metastore.kv.messages import RangeRequest
from metastore.kv.store import AppliedChanges, KeyValueStore

_EVERY_KEY = RangeRequest(key=b"\0", range_end=b"\0", count_only=True)


class KeyspaceCounts:
    """A store listener.  ``keys()`` is the number of live keys: counted
    once (at the first call; a RocksDB count scans), then followed from
    each apply's events (a put of version 1 creates a key, a delete
    removes one); recounted after a snapshot replaced the state.  The lease
    totals count the lease commands applied here since start (etcd counts
    them the same way)."""

    def __init__(self, store: KeyValueStore) -> None:
        self._store = store
        self._keys: int | None = None
        self._revision = store.revision
        self.leases_granted = 0
        self.leases_revoked = 0
        self.leases_renewed = 0
        store.listeners.append(self.applied)

    def keys(self) -> int:
        """Live keys in the applied state now."""
        if self._keys is None or self._revision != self._store.revision:
            self._keys = self._store.range(_EVERY_KEY).count
            self._revision = self._store.revision
        return self._keys

    def applied(self, changes: AppliedChanges) -> None:
        """Follow one apply's changes (called by the store)."""
        if self._keys is not None:
            if changes.previous_revision != self._revision:
                self._keys = None  # a snapshot was installed in between: recount
            else:
                delta = 0
                for event in changes.events:
                    if event.deleted:
                        delta -= 1
                    elif event.kv.version == 1:
                        delta += 1
                self._keys += delta
        self._revision = changes.revision
        for event in changes.lease_events:
            if event.kind == "grant":
                self.leases_granted += 1
            elif event.kind == "revoke":
                self.leases_revoked += 1
            elif event.kind == "keepalive":
                self.leases_renewed += 1
