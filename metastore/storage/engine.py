"""The storage-engine interface shared by the memory and RocksDB engines.

An engine holds the applied keyspace: every live key with etcd's metadata,
the store's revision, and the raft index the keyspace reflects.  The state
machine in ``metastore.kv`` computes each batch of changes and hands it to
``commit`` in one call, so an engine can make the batch atomic (RocksDB
writes it as one WriteBatch together with the applied index).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Protocol


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One live key with etcd's per-key metadata.

    ``create_revision`` <= ``mod_revision``; ``version`` counts the writes
    since the key was (re)created, starting at 1; ``lease`` is 0 for none.
    """

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


class Engine(Protocol):
    """What the key-value state machine needs from a storage engine."""

    @property
    def revision(self) -> int:
        """The store's revision: the revision of the newest write, 1 when new."""

    @property
    def applied_index(self) -> int:
        """The raft index of the last entry whose effects this engine holds."""

    def get(self, key: bytes) -> KeyValue | None:
        """The live key ``key``, or None."""

    def range(self, key: bytes, range_end: bytes | None, limit: int = 0) -> Iterator[KeyValue]:
        """Live keys in ``[key, range_end)`` in key order; ``range_end`` None
        means just ``key``, ``b"\\0"`` means every key >= ``key``; ``limit``
        0 means no limit."""

    def count(self, key: bytes, range_end: bytes | None) -> int:
        """How many live keys ``range`` would yield without a limit."""

    def commit(
        self,
        changes: Mapping[bytes, KeyValue | None],
        revision: int,
        applied_index: int,
    ) -> None:
        """Apply ``changes`` (None deletes) atomically, together with the new
        revision and applied index."""

    def close(self) -> None:
        """Release the engine's resources."""
