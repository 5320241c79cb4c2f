"""The storage-engine interface shared by the memory and RocksDB engines.

An engine holds the applied keyspace with its history, as etcd's MVCC
store does: every version of every key, addressed by its revision
``(main, sub)`` (``main`` the write transaction's revision, ``sub`` the
change's position inside it), back to the compacted revision.  A key index
(key -> its revisions) answers "which version of this key at revision R";
the versions themselves are kept in revision order, which is also the order
in which a watch replays them.  Deleting a key writes a tombstone.

The state machine in ``metastore.kv`` decides every version's metadata and
hands each batch of events to ``commit`` in one call, so an engine can make
the batch atomic (RocksDB writes it as one WriteBatch together with the
applied index).  Engines do not check revisions against the compacted one:
the store does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol, Sequence


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
    """Where it serves the HTTP APIs (empty until it published it)."""
    is_learner: bool = False
    grpc_url: str = ""
    """Where it serves etcd's gRPC API (empty when it serves none)."""


@dataclass(frozen=True, slots=True)
class ClusterState:
    """The membership at an applied index: raft's voters and learners,
    every member's URLs, and the ids removed (never reused).  Stored with
    the keyspace so that a restart or a snapshot restores it without
    replaying the log, and every member judges a later change alike."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    members: tuple[MemberRecord, ...] = ()
    removed: tuple[int, ...] = ()
    requests: tuple[tuple[bytes, int], ...] = ()
    """The request ids applied in the last raft indexes, with their index,
    in index order (``metastore.kv.dedup``): replicated state like the
    rest, so every member deduplicates a retried request alike."""
    alarms: tuple[tuple[int, int], ...] = ()
    """The raised alarms, ``(member_id, alarm type)`` sorted (etcd's
    ``AlarmType`` numbers: 1 NOSPACE, 2 CORRUPT)."""
    auth: bytes = b""
    """The auth state (users, roles, enabled, auth revision) in
    ``metastore.auth.state.AuthState.encode``'s form; empty for the initial one."""


MAX_SUB = (1 << 63) - 1
"""Larger than any sub-revision: ``(main, MAX_SUB)`` follows every change of ``main``."""


@dataclass(frozen=True, slots=True)
class Event:
    """One version in the history: at revision ``(kv.mod_revision, sub)``
    key ``kv.key`` was put (``kv`` is its new version) or, when
    ``deleted``, deleted (a tombstone: ``kv`` holds the key and
    ``mod_revision``, every other field zero)."""

    kv: KeyValue
    sub: int
    deleted: bool = False

    @property
    def revision(self) -> tuple[int, int]:
        """``(main, sub)``: the event's place in the history."""
        return (self.kv.mod_revision, self.sub)


@dataclass(frozen=True, slots=True)
class Lease:
    """A granted lease as the replicated state knows it: ``ttl`` seconds
    granted, and ``remaining_ttl`` the seconds left at the last checkpoint
    (0: no checkpoint since the grant or the last keepalive, so the whole
    ``ttl``).  When it expires is the leader's business, not the state's."""

    id: int
    ttl: int
    remaining_ttl: int = 0


@dataclass(frozen=True, slots=True)
class LeaseChanges:
    """The lease records and attachments one commit changes, in order:
    ``leases`` sets a record (a ``Lease``) or removes one (``(id, None)``);
    ``attachments`` attaches (True) or detaches (False) a key."""

    leases: tuple[tuple[int, Lease | None], ...] = ()
    attachments: tuple[tuple[int, bytes, bool], ...] = ()


def tombstone(key: bytes, revision: int, sub: int) -> Event:
    """The event deleting ``key`` at ``(revision, sub)``."""
    return Event(KeyValue(key, b"", 0, revision, 0, 0), sub, True)


class Engine(Protocol):
    """What the key-value state machine needs from a storage engine.

    Reads take a ``revision``: 0 means the newest state; otherwise the
    answer is, for each key, its newest version at or below ``revision``
    unless that is a tombstone.  A ``range_end`` of ``b""`` (or None) means
    just ``key``; ``b"\\0"`` means every key >= ``key``.  Reads below
    ``compacted_revision`` answer what is left and are the caller's to
    refuse.
    """

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

    @property
    def compacted_revision(self) -> int:
        """The newest compaction committed (0 for none): reads below it are refused."""

    @property
    def physically_compacted_revision(self) -> int:
        """No version hidden by a compaction at this revision is left in the
        engine; ``compact_step`` works until it equals ``compacted_revision``."""

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        """The version of ``key`` visible at ``revision``, or None."""

    def range(self, key: bytes, range_end: bytes | None, revision: int = 0, limit: int = 0) -> Iterator[KeyValue]:
        """The visible versions of keys in ``[key, range_end)`` at
        ``revision``, in key order; ``limit`` 0 means no limit."""

    def count(self, key: bytes, range_end: bytes | None, revision: int = 0) -> int:
        """How many keys ``range`` would yield without a limit."""

    def history(self, start: tuple[int, int] = (0, 0)) -> Iterator[Event]:
        """The retained events from revision ``start`` on, in revision order,
        read lazily on the calling thread (a watch replays from here)."""

    @property
    def cluster_state(self) -> ClusterState | None:
        """The membership last committed with ``commit``, or None."""

    def lease(self, lease_id: int) -> Lease | None:
        """The lease ``lease_id``, or None when it was never granted or is revoked."""

    def leases(self) -> list[Lease]:
        """Every lease, by id."""

    def lease_keys(self, lease_id: int) -> list[bytes]:
        """The live keys attached to ``lease_id``, in key order."""

    def commit(
        self,
        events: Sequence[Event],
        revision: int,
        applied_index: int,
        cluster_state: ClusterState | None = None,
        compacted_revision: int | None = None,
        lease_changes: LeaseChanges | None = None,
    ) -> None:
        """Add ``events`` (in revision order, all above the current revision)
        to the history and the newest state atomically, together with the
        new revision, applied index and, when given, membership, compacted
        revision and lease changes."""

    def compact_step(self, limit: int) -> bool:
        """Physically remove some of the versions that the compacted
        revision hides (about ``limit`` events' worth, so the calling
        thread is held only briefly); True when none are left."""

    def sync(self) -> None:
        """Make every commit so far durable; blocking, and safe on a worker
        thread while the reactor thread commits."""

    def snapshot_items(self) -> Iterable[Event]:
        """The retained history as of now, in revision order, unaffected by
        later commits and compaction steps and safe to consume on another
        thread; ``compacted_revision`` and ``physically_compacted_revision``
        read at the same moment describe it.  Cheap on the calling thread."""

    def restore(
        self,
        items: Iterable[Event],
        revision: int,
        applied_index: int,
        cluster_state: ClusterState,
        compacted_revision: int = 0,
        physically_compacted_revision: int = 0,
        leases: Iterable[Lease] = (),
    ) -> None:
        """Replace the whole history with ``items`` (in revision order, or
        at most one event per key) and the given revision, applied index,
        membership, compaction state and leases (attachments follow from the
        live keys' ``lease``), atomically: a crash leaves either the old
        state or the new one."""

    def close(self) -> None:
        """Release the engine's resources."""
