"""What a member has written to its WAL and what of it is durable, in raft's terms.

The ledger wraps the member's real ``WAL`` (``save``, ``save_snapshot``,
``sync``): what ``sync`` finds written when it runs is what the fsync made
durable.  The harness judges every message sent and every entry applied
against ``synced``.

A snapshot file is durable on its own (it is fsynced and renamed before a
marker names it, and recovery starts from the newest file even when the
WAL's marker was lost), so a marker whose file exists counts as synced at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metastore.raft.types import HardState


@dataclass
class LogImage:
    """The hard state, snapshot marker index and entry terms of a log."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot_index: int = 0
    terms: dict[int, int] = field(default_factory=dict)

    def copy(self) -> "LogImage":
        return LogImage(self.hard_state, self.snapshot_index, dict(self.terms))

    def holds(self, index: int, term: int) -> bool:
        """Whether entry (``index``, ``term``) is in this log or behind its snapshot."""
        return index <= self.snapshot_index or self.terms.get(index) == term

    def last_index(self) -> int:
        return max(self.terms, default=self.snapshot_index)

    def cover(self, index: int, term: int) -> None:
        """Record a snapshot marker at (``index``, ``term``), as the WAL's replay does."""
        if index > self.snapshot_index and self.terms.get(index) != term:
            self.terms.clear()  # replay drops what follows, too
        self.snapshot_index = max(self.snapshot_index, index)
        for i in [i for i in self.terms if i <= self.snapshot_index]:
            del self.terms[i]


class DurabilityLedger:
    """Follows one WAL: ``written`` (everything saved) and ``synced``
    (what the last completed fsync covered)."""

    def __init__(self, wal, raft_storage, snapshot_file) -> None:
        start = LogImage(raft_storage.hard_state, raft_storage.first_index() - 1)
        for index in range(raft_storage.first_index(), raft_storage.last_index() + 1):
            start.terms[index] = raft_storage.term(index)
        self.written = start
        self.synced = start.copy()
        self._snapshot_file = snapshot_file
        self._wrap(wal)

    def _wrap(self, wal) -> None:
        save, save_snapshot, sync = wal.save, wal.save_snapshot, wal.sync

        def saved(hard_state, entries) -> None:
            save(hard_state, entries)
            w = self.written
            if entries:
                first = entries[0].index
                for index in [i for i in w.terms if i >= first]:
                    del w.terms[index]
                for e in entries:
                    w.terms[e.index] = e.term
            if hard_state is not None:
                w.hard_state = hard_state

        def snapshot_saved(meta) -> None:
            save_snapshot(meta)
            self.written.cover(meta.index, meta.term)
            if self._snapshot_file(meta.term, meta.index):
                self.synced.cover(meta.index, meta.term)

        def synced() -> None:
            image = self.written.copy()
            sync()
            self.synced = image

        wal.save, wal.save_snapshot, wal.sync = saved, snapshot_saved, synced
