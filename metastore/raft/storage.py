"""The storage interface Raft reads its stable log from, and an in-memory one.

Raft only ever *reads* storage.  The driver writes to it: after it has made a
``Ready``'s hard state, entries and snapshot durable it appends them here, and
only then calls ``RawNode.advance``.

This is raft's *log* storage; ``metastore.storage`` is the member's disk
(WAL, engines).  The node calls an instance of this ``raft_storage``.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from metastore.raft.errors import (
    CompactedError,
    SnapshotOutOfDateError,
    UnavailableError,
)
from metastore.raft.types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata

ENTRY_OVERHEAD = 16
"""Bytes counted for an entry besides its data when sizing a batch."""


def limit_size(entries: list[Entry], max_size: int | None) -> list[Entry]:
    """Return the longest prefix of ``entries`` within ``max_size`` bytes.

    The first entry is always kept, however large, so progress is possible.
    """
    if max_size is None or len(entries) <= 1:
        return entries
    total = 0
    for position, entry in enumerate(entries):
        total += len(entry.data) + ENTRY_OVERHEAD
        if total > max_size and position > 0:
            return entries[:position]
    return entries


class Storage(Protocol):
    """What Raft needs from stable storage.

    Indexes: ``first_index()`` is the first entry still available,
    ``last_index()`` the last one; ``term(first_index() - 1)`` must still
    answer (it is the snapshot's term).
    """

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the membership as of the snapshot."""

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``, at least one if any, at most ``max_size`` bytes.

        Raises ``CompactedError`` when ``lo`` was compacted away and
        ``UnavailableError`` when the range is not stored.
        """

    def term(self, index: int) -> int:
        """The term of the entry at ``index`` (``first_index() - 1`` included).

        Raises ``CompactedError`` or ``UnavailableError``.
        """

    def first_index(self) -> int:
        """The index of the first entry that may still be read."""

    def last_index(self) -> int:
        """The index of the last stored entry."""

    def snapshot(self) -> Snapshot:
        """The latest snapshot (``SnapshotTemporarilyUnavailable`` if not ready)."""


class MemoryStorage:
    """A ``Storage`` held in memory, also usable as the driver's raft view.

    The log is kept as three lists side by side (each entry's term, type
    and data), not as ``Entry`` objects: ``entries`` makes the ``Entry``
    objects it returns.  A stored ``Entry`` would be an object the
    garbage collector tracks, one per proposal, alive until the log is
    compacted after a snapshot (up to ``--snapshot-count`` of them): every
    collector pass, young or old, would walk them while the driver's
    thread waits.  Ints, bytes and lists of them add nothing to walk.

    Invariant: position 0 of the lists is a placeholder carrying the
    snapshot's index (``_offset``) and term, so ``term(first_index() - 1)``
    always answers; position ``p`` holds the entry at index ``_offset + p``.
    """

    __slots__ = ("hard_state", "_snapshot", "_offset", "_terms", "_types", "_data")

    def __init__(self) -> None:
        self.hard_state = HardState()
        self._snapshot = Snapshot()
        self._reset(0, 0)

    def _reset(self, index: int, term: int) -> None:
        """Hold only the placeholder for ``index`` and ``term``."""
        self._offset = index
        self._terms: list[int] = [term]
        self._types: list[EntryType] = [EntryType.EntryNormal]
        self._data: list[bytes] = [b""]

    def initial_state(self) -> tuple[HardState, ConfState]:
        """Return the hard state and the snapshot's membership."""
        return self.hard_state, self._snapshot.metadata.conf_state

    def set_hard_state(self, hard_state: HardState) -> None:
        """Record the hard state (the driver calls this after persisting it)."""
        self.hard_state = hard_state

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Return entries ``[lo, hi)`` limited to ``max_size`` bytes (as
        ``limit_size`` limits them)."""
        offset, terms, types, data = self._offset, self._terms, self._types, self._data
        if lo <= offset:
            raise CompactedError(f"index {lo} is compacted (first is {offset + 1})")
        if hi > offset + len(terms):
            raise UnavailableError(f"entries up to {hi - 1} are not stored")
        start, end = lo - offset, hi - offset
        if max_size is not None and end - start > 1:
            total = 0
            for position in range(start, end):
                total += len(data[position]) + ENTRY_OVERHEAD
                if total > max_size and position > start:
                    end = position
                    break
        return [Entry(terms[p], offset + p, types[p], data[p]) for p in range(start, end)]

    def term(self, index: int) -> int:
        """Return the term of the entry at ``index``."""
        offset = self._offset
        if index < offset:
            raise CompactedError(f"index {index} is compacted")
        if index - offset >= len(self._terms):
            raise UnavailableError(f"index {index} is not stored")
        return self._terms[index - offset]

    def first_index(self) -> int:
        """Return the first readable index."""
        return self._offset + 1

    def last_index(self) -> int:
        """Return the last stored index."""
        return self._offset + len(self._terms) - 1

    def snapshot(self) -> Snapshot:
        """Return the latest snapshot."""
        return self._snapshot

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole content by ``snapshot`` (a follower installing one).

        A snapshot at index 0 is accepted on an empty storage: it is how a
        driver may seed a membership without log entries.
        """
        index = snapshot.metadata.index
        current = self._snapshot.metadata.index
        if index < current or (index == current and index != 0):
            raise SnapshotOutOfDateError(f"snapshot {index} is not newer than {current}")
        self._snapshot = snapshot
        self._reset(index, snapshot.metadata.term)

    def create_snapshot(
        self, index: int, conf_state: ConfState, data: bytes
    ) -> Snapshot:
        """Record a snapshot of the applied state at ``index`` and return it.

        ``index`` must be stored and not older than the current snapshot; the
        log is not compacted (call ``compact`` for that).
        """
        if index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError(f"snapshot at {index} is not newer")
        if index > self.last_index():
            raise ValueError(f"snapshot index {index} is beyond last index {self.last_index()}")
        metadata = SnapshotMetadata(index=index, term=self.term(index), conf_state=conf_state)
        self._snapshot = Snapshot(metadata=metadata, data=data)
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Discard entries before ``compact_index`` (it becomes the placeholder)."""
        offset = self._offset
        if compact_index <= offset:
            raise CompactedError(f"index {compact_index} is already compacted")
        if compact_index > self.last_index():
            raise ValueError(f"compact index {compact_index} is beyond the last index")
        dropped = compact_index - offset
        del self._terms[:dropped], self._types[:dropped], self._data[:dropped]
        self._types[0], self._data[0] = EntryType.EntryNormal, b""
        self._offset = compact_index

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries, overwriting any stored entries they conflict with.

        Entries already compacted are skipped; a gap after the last index is
        a driver bug and raises.
        """
        if not entries:
            return
        first = self._offset + 1
        last_new = entries[-1].index
        if last_new < first:
            return
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        start = entries[0].index - self._offset
        terms, types, data = self._terms, self._types, self._data
        if start <= len(terms):
            del terms[start:], types[start:], data[start:]
            for entry in entries:
                terms.append(entry.term)
                types.append(entry.type)
                data.append(entry.data)
        else:
            raise ValueError(
                f"missing log entry: last index {self.last_index()}, appending at {entries[0].index}"
            )
