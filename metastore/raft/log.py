"""Raft's view of its log: stable entries in ``Storage`` plus an unstable tail.

The unstable part holds what the driver has not yet confirmed durable: a
snapshot received from the leader and/or entries appended in memory.
"""

from __future__ import annotations

from metastore.raft.errors import CompactedError
from metastore.raft.storage import Storage, limit_size
from metastore.raft.types import Entry, Snapshot


class Unstable:
    """Entries (and maybe a snapshot) not yet persisted.

    Invariant: ``entries[i].index == offset + i``; with a snapshot,
    ``offset == snapshot.metadata.index + 1``.
    """

    __slots__ = ("offset", "entries", "snapshot")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.entries: list[Entry] = []
        self.snapshot: Snapshot | None = None

    def maybe_first_index(self) -> int | None:
        """The first index when a pending snapshot decides it, else None."""
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        """The last index when the unstable part decides it, else None."""
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, index: int) -> int | None:
        """The term at ``index`` if the unstable part knows it, else None."""
        if index < self.offset:
            snapshot = self.snapshot
            if snapshot is not None and snapshot.metadata.index == index:
                return snapshot.metadata.term
            return None
        position = index - self.offset
        if position >= len(self.entries):
            return None
        return self.entries[position].term

    def stable_to(self, index: int, term: int) -> None:
        """Forget entries up to ``index`` once they are durable.

        Ignored when the entry at ``index`` has since been replaced (its term
        differs): the replacement still has to be persisted.
        """
        current = self.maybe_term(index)
        if current is None or current != term or index < self.offset:
            return
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1

    def stable_snap_to(self, index: int) -> None:
        """Forget the pending snapshot once it is durable."""
        if self.snapshot is not None and self.snapshot.metadata.index == index:
            self.snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        """Replace everything by an incoming snapshot."""
        self.offset = snapshot.metadata.index + 1
        self.entries = []
        self.snapshot = snapshot

    def truncate_and_append(self, entries: list[Entry]) -> None:
        """Append ``entries``, dropping any unstable entries from their start."""
        first = entries[0].index
        if first == self.offset + len(self.entries):
            self.entries.extend(entries)
        elif first <= self.offset:
            # Also hides any stale stable entries at or after ``first``.
            self.offset = first
            self.entries = list(entries)
        else:
            del self.entries[first - self.offset :]
            self.entries.extend(entries)


class RaftLog:
    """The log: ``storage`` (durable) followed by ``unstable``.

    Invariant: ``applied <= committed <= last_index()``.
    """

    __slots__ = ("storage", "unstable", "committed", "applied")

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed = first - 1
        self.applied = first - 1

    def first_index(self) -> int:
        """The first index still readable."""
        snapshot = self.unstable.snapshot
        if snapshot is not None:
            return snapshot.metadata.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        """The index of the last entry."""
        unstable = self.unstable
        if unstable.entries:
            return unstable.offset + len(unstable.entries) - 1
        if unstable.snapshot is not None:
            return unstable.snapshot.metadata.index
        return self.storage.last_index()

    def last_term(self) -> int:
        """The term of the last entry."""
        return self.term(self.last_index())

    def term(self, index: int) -> int:
        """The term at ``index``; 0 beyond the last index.

        Raises ``CompactedError`` before ``first_index() - 1``.
        """
        unstable = self.unstable
        if index >= unstable.offset:
            position = index - unstable.offset
            if position < len(unstable.entries):
                return unstable.entries[position].term
            return 0
        if index < self.first_index() - 1:
            raise CompactedError(f"index {index} is compacted")
        known = unstable.maybe_term(index)
        if known is not None:
            return known
        return self.storage.term(index)

    def match_term(self, index: int, term: int) -> bool:
        """True when the entry at ``index`` exists and has ``term``."""
        try:
            return self.term(index) == term
        except CompactedError:
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """True when a log ending at (last_index, term) is at least as new (§5.4.1)."""
        my_last_index = self.last_index()
        my_last_term = self.term(my_last_index)
        return term > my_last_term or (term == my_last_term and last_index >= my_last_index)

    def find_conflict(self, entries: tuple[Entry, ...] | list[Entry]) -> int:
        """Index of the first entry not already in the log, or 0 if all are."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= ``index`` whose term is <= ``term``, with its term.

        Used on both sides of a rejected append to skip a whole term at once.
        """
        if index > self.last_index():
            return index, 0
        while True:
            try:
                current = self.term(index)
            except CompactedError:
                return index, 0
            if current <= term:
                return index, current
            index -= 1

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: tuple[Entry, ...]
    ) -> int | None:
        """Append after (index, log_term) if the log matches there (§5.3).

        Returns the index of the last new entry, or None when the consistency
        check fails.  Also raises the commit index up to what is known to match.
        """
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise AssertionError(
                    f"entry {conflict} conflicts with committed entry (committed {self.committed})"
                )
            self.append(list(entries[conflict - index - 1 :]))
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, entries: list[Entry]) -> int:
        """Append entries (truncating conflicting unstable ones); returns last index."""
        if entries:
            if entries[0].index - 1 < self.committed:
                raise AssertionError(
                    f"append after {entries[0].index - 1} would rewrite committed {self.committed}"
                )
            self.unstable.truncate_and_append(entries)
        return self.last_index()

    def commit_to(self, index: int) -> None:
        """Raise the commit index (never lowers it)."""
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(
                    f"commit {index} is beyond the last index {self.last_index()}"
                )
            self.committed = index

    def applied_to(self, index: int) -> None:
        """Record that the application has applied up to ``index``."""
        if index == 0:
            return
        if index > self.committed or index < self.applied:
            raise AssertionError(
                f"applied {index} outside [{self.applied}, {self.committed}]"
            )
        self.applied = index

    def stable_to(self, index: int, term: int) -> None:
        """The driver made entries up to (index, term) durable."""
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        """The driver made the snapshot at ``index`` durable."""
        self.unstable.stable_snap_to(index)

    def restore(self, snapshot: Snapshot) -> None:
        """Adopt an incoming snapshot: the whole log is replaced by it."""
        self.committed = snapshot.metadata.index
        self.unstable.restore(snapshot)

    def snapshot(self) -> Snapshot:
        """The newest snapshot known: pending or stored."""
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def entries_from(self, lo: int, max_size: int | None) -> list[Entry]:
        """Entries from ``lo`` to the end, at most ``max_size`` bytes."""
        last = self.last_index()
        if lo > last:
            return []
        return self.slice(lo, last + 1, max_size)

    def slice(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)`` from storage and the unstable part.

        Raises ``CompactedError`` when ``lo`` is before the first index.
        """
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise CompactedError(f"index {lo} is compacted")
        if hi > self.last_index() + 1:
            raise AssertionError(f"slice [{lo}, {hi}) beyond last index {self.last_index()}")
        unstable = self.unstable
        offset = unstable.offset
        if lo >= offset:
            return limit_size(unstable.entries[lo - offset : hi - offset], max_size)
        if hi <= offset:
            return self.storage.entries(lo, hi, max_size)
        stored = self.storage.entries(lo, offset, max_size)
        if len(stored) < offset - lo:
            return stored
        return limit_size(stored + unstable.entries[: hi - offset], max_size)

    def has_next_committed_entries(self) -> bool:
        """True when committed entries are waiting to be applied."""
        return self.unstable.snapshot is None and self.committed > self.applied

    def next_committed_entries(self) -> list[Entry]:
        """Committed entries not yet applied (none while a snapshot is pending)."""
        if not self.has_next_committed_entries():
            return []
        lo = max(self.applied + 1, self.first_index())
        return self.slice(lo, self.committed + 1)
