"""The storage-engine interface shared by the memory and RocksDB engines.

An engine holds the applied keyspace: every live key with etcd's metadata,
the store's revision, and the raft index the keyspace reflects.  The state
machine in ``metastore.kv`` computes each batch of changes and hands it to
``commit`` in one call, so an engine can make the batch atomic (RocksDB
writes it as one WriteBatch together with the applied index).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Protocol


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


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A cluster member as the replicated state knows it."""

    member_id: int
    peer_url: str
    client_url: str = ""
    is_learner: bool = False


@dataclass(frozen=True, slots=True)
class ClusterState:
    """The membership at an applied index: raft's voters and learners, and
    every member's URLs.  Stored with the keyspace so that a restart or a
    snapshot restores it without replaying the log."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    members: tuple[MemberRecord, ...] = ()


class Engine(Protocol):
    """What the key-value state machine needs from a storage engine."""

    keeps_applied_state: bool
    """True when the applied state survives a restart by itself (after
    ``sync``): the engine is its own snapshot, and snapshot files are only
    needed to send to followers.  False when it lives in memory."""

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

    @property
    def cluster_state(self) -> ClusterState | None:
        """The membership last committed with ``commit``, or None."""

    def commit(
        self,
        changes: Mapping[bytes, KeyValue | None],
        revision: int,
        applied_index: int,
        cluster_state: ClusterState | None = None,
    ) -> None:
        """Apply ``changes`` (None deletes) atomically, together with the new
        revision, applied index and, when given, membership."""

    def sync(self) -> None:
        """Make every commit so far durable; blocking, and safe on a worker
        thread while the reactor thread commits."""

    def snapshot_items(self) -> Iterable[KeyValue]:
        """Every live key as of now, in key order, unaffected by later
        commits and safe to consume on another thread.  Taking it must be
        cheap on the calling (reactor) thread."""

    def restore(
        self,
        items: Iterable[KeyValue],
        revision: int,
        applied_index: int,
        cluster_state: ClusterState,
    ) -> None:
        """Replace the whole keyspace with ``items`` (in key order) and the
        given revision, applied index and membership, atomically: a crash
        leaves either the old state or the new one."""

    def close(self) -> None:
        """Release the engine's resources."""
