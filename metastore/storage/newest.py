"""A bounded cache of each key's newest version, for an engine whose
newest state lives on disk (the RocksDB engine).

Every put reads its key's newest version first (for the new version's
``version`` and ``create_revision``, and the ``prev_kv`` that watchers and
clients get); keeping the versions the engine last wrote or read saves that
point lookup and its decoding.  The cache is only as right as the engine
keeps it, so the engine promises three things: it records every commit's
events after the write succeeded (``record``), it remembers only what it
just read from its newest state (``remember``), and it forgets everything
whenever its database changes under it otherwise (``clear``: close,
restore).  Physical compaction never changes a key's newest version, so it
leaves the cache alone.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable

from metastore.storage.engine import Event, KeyValue

MISSING = object()
"""``lookup``'s answer for a key the cache knows nothing about (None means
the key is known to be absent)."""

ENTRY_OVERHEAD = 240
"""Bytes an entry costs beyond its key and value: the ``KeyValue``, the
bytes objects' headers and the ordered dict's node (measured on CPython
3.11, rounded up)."""


class NewestVersions:
    """The newest version (or absence) of recently written or read keys, in
    at most about ``budget_bytes`` of memory.

    The entries written or read in the longest ago go first when the
    budget is passed; a version whose value alone takes more than a
    sixty-fourth of the budget is not kept (its key is forgotten instead),
    so a few large values cannot flush the cache; a budget of 0 keeps
    nothing.  Only ``bytes`` keys and values are kept: what ``lookup``
    returns can be handed out as RocksDB's own answer would be.  One
    thread only."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._largest_value = budget_bytes // 64
        self._entries: OrderedDict[bytes, KeyValue | None] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes_used(self) -> int:
        """What the entries cost, by ``ENTRY_OVERHEAD`` plus key and value sizes."""
        return self._bytes

    def lookup(self, key: bytes) -> KeyValue | None | object:
        """``key``'s newest version, None when it is known to be absent, or
        ``MISSING`` when the cache does not know."""
        return self._entries.get(key, MISSING)

    def remember(self, key: bytes, kv: KeyValue | None) -> None:
        """Keep what a read of the newest state just found for ``key``."""
        self._set(key, kv)
        if self._bytes > self.budget_bytes:
            self._evict()

    def record(self, events: Iterable[Event]) -> None:
        """Keep the newest version each of ``events`` leaves (in order: the
        last event of a key wins), once their commit has succeeded."""
        if not self.budget_bytes:
            return
        put = self._set
        for event in events:
            put(event.kv.key, None if event.deleted else event.kv)
        if self._bytes > self.budget_bytes:
            self._evict()

    def clear(self) -> None:
        """Forget everything (the database changed by other means)."""
        self._entries.clear()
        self._bytes = 0

    def _set(self, key: bytes, kv: KeyValue | None) -> None:
        """Keep ``kv`` for ``key`` as the newest entry (or forget ``key``
        when ``kv`` may not be kept); the budget is the caller's to enforce."""
        entries = self._entries
        old = entries.get(key, MISSING)
        size = ENTRY_OVERHEAD + len(key)
        if kv is not None:
            value = kv.value
            if type(value) is not bytes or len(value) > self._largest_value:
                size = -1
            else:
                size += len(value)
        if type(key) is not bytes or size > self.budget_bytes:
            size = -1
        if old is MISSING:
            if size < 0:
                return
            entries[key] = kv
            self._bytes += size
            return
        self._bytes -= ENTRY_OVERHEAD + len(key) + (0 if old is None else len(old.value))
        if size < 0:
            del entries[key]
            return
        entries[key] = kv
        entries.move_to_end(key)
        self._bytes += size

    def _evict(self) -> None:
        entries = self._entries
        while self._bytes > self.budget_bytes:
            key, kv = entries.popitem(last=False)
            self._bytes -= ENTRY_OVERHEAD + len(key) + (0 if kv is None else len(kv.value))


