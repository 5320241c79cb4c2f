"""The typed face a member shows its APIs (seed REST, admin, later etcd v3).

The APIs never see the node's parts (``rawnode``, raft's log storage, the
engine, the WAL, the snapshotter): they propose commands, read with a
consistency level, ask for a ``MemberStatus``, and operate on members
through ``MemberFacade``.  Every Deferred fails with a
``metastore.errors.Unavailable`` subclass when the cluster cannot answer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from twisted.internet import defer

from metastore import health
from metastore.errors import Unavailable
from metastore.kv.commands import Command
from metastore.kv.messages import RangeRequest, RangeResponse, TxnRequest, TxnResponse
from metastore.kv.store import Result
from metastore.kv.validation import DEFAULT_MAX_TXN_OPS, check_request, is_read_only
from metastore.membership import MembershipError
from metastore.node import Node
from metastore.storage.engine import KeyValue, MemberRecord

__all__ = [
    "Consistency",
    "KeyValue",
    "MemberFacade",
    "MemberStatus",
    "MembershipError",
    "Restoring",
    "Result",
]


class Consistency(enum.Enum):
    """How fresh a read must be."""

    LINEARIZABLE = "linearizable"
    """Reflects every write acknowledged before the read began (ReadIndex)."""
    SERIALIZABLE = "serializable"
    """This member's applied state, at once; may lag the leader."""


class Restoring(Unavailable):
    """A serializable read while this member installs a snapshot."""


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One member's view of itself and the cluster, at one moment."""

    member_id: int
    leader: int
    role: str
    """``leader``, ``follower``, ``candidate`` or ``precandidate``."""
    term: int
    commit_index: int
    applied_index: int
    snapshot_index: int
    start_applied_index: int
    first_applied_index: int | None
    wal_syncs: int
    storage: str
    first_log_index: int
    revision: int
    healthy: bool
    storage_failure: str | None


class MemberFacade:
    """What the APIs may ask of a member."""

    def __init__(self, node: Node, storage_name: str = "memory") -> None:
        self._node = node
        self._storage_name = storage_name

    @property
    def member_id(self) -> int:
        """This member's id."""
        return self._node.member_id

    @property
    def leader_id(self) -> int:
        """The leader this member knows of, 0 for none."""
        return self._node.leader_id

    @property
    def term(self) -> int:
        """The raft term this member is in."""
        return self._node.rawnode.raft.term

    # -- the keyspace ------------------------------------------------------

    @staticmethod
    def check(request: Command, max_txn_ops: int = DEFAULT_MAX_TXN_OPS) -> None:
        """Raise the ``KVError`` etcd answers a range, put, delete range or
        txn with before proposing it (``metastore.kv.validation``)."""
        check_request(request, max_txn_ops)

    @staticmethod
    def is_read_only(request: Command) -> bool:
        """Whether ``request`` only reads, so ``read_request`` may serve it."""
        return is_read_only(request)

    def propose(self, command: Command) -> defer.Deferred:
        """Replicate ``command``; fires with its ``Result`` once committed,
        durable and applied here (so a read here then sees it)."""
        return self._node.propose(command)

    def read(self, consistency: Consistency = Consistency.LINEARIZABLE) -> defer.Deferred:
        """Fires once a read at ``consistency`` may be served from this
        member's applied state; fails with ``Restoring`` for a serializable
        read during a snapshot install."""
        if consistency is Consistency.LINEARIZABLE:
            return self._node.read_barrier()
        if self._node.compaction.restoring:
            return defer.fail(Restoring("this member is installing a snapshot; retry or read from another member"))
        return defer.succeed(None)

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        """The key ``key`` as of ``revision`` (0: now) in the applied state,
        or None; raises ``CompactedError`` / ``FutureRevisionError``."""
        return self._node.store.get(key, revision)

    def range_request(self, request: RangeRequest) -> RangeResponse:
        """An etcd range over the applied state (after ``read``)."""
        return self._node.store.range(request)

    def read_request(self, request: RangeRequest | TxnRequest) -> RangeResponse | TxnResponse:
        """A range, or a txn that only reads, served from the applied state
        without a new revision (etcd serves read-only txns this way)."""
        return self._node.store.read(request)

    def hash_kv(self, revision: int = 0) -> tuple[int, int]:
        """etcd's HashKV: (crc32 of the history up to ``revision``, the
        compacted revision); equal on every member at the same revision."""
        return self._node.store.hash_kv(revision)

    @property
    def compacted_revision(self) -> int:
        """The revision history was compacted at."""
        return self._node.store.compacted_revision

    @property
    def revision(self) -> int:
        """The store's current revision."""
        return self._node.store.revision

    def keyspace_hash(self) -> str:
        """A hash of the whole applied keyspace (equal across members at one index)."""
        return self._node.store.keyspace_hash()

    # -- status ---------------------------------------------------------------

    def health(self) -> str:
        """Why this member cannot serve, or "" when it can."""
        return "; ".join(self.health_problems())

    def health_problems(self) -> list[str]:
        """Every reason this member cannot serve (``/health``); empty when it can."""
        return health.problems(self.status(), health.HEALTH_CHECKS)

    def readiness_problems(self) -> list[str]:
        """Every reason this member is not ready (``/readyz``): those of
        ``health_problems`` and an applied index behind commit."""
        return health.problems(self.status(), health.READY_CHECKS)

    def status(self) -> MemberStatus:
        """This member's view now: role, leader, term, indexes, revision, health."""
        node = self._node
        raft_status = node.rawnode.status()
        return MemberStatus(
            member_id=node.member_id,
            leader=node.leader_id,
            role=raft_status.raft_state.name.removeprefix("State").lower(),
            term=raft_status.term,
            commit_index=raft_status.commit,
            applied_index=node.applied_index,
            snapshot_index=node.compaction.snapshot_index,
            start_applied_index=node.start_applied_index,
            first_applied_index=node.applier.first_applied_index,
            wal_syncs=node.disk.wal_syncs,
            storage=self._storage_name,
            first_log_index=node.raft_storage.first_index(),
            revision=node.store.revision,
            healthy=node.running and node.failure is None and node.leader_id != 0,
            storage_failure=None if node.failure is None else str(node.failure),
        )

    # -- members ----------------------------------------------------------------

    def members(self) -> list[MemberRecord]:
        """Every member as applied here, by id."""
        return self._node.membership.listing()

    def add_member(self, member_id: int, peer_url: str) -> defer.Deferred:
        """Add a voting member at ``peer_url``; fires once applied here.
        Raises ``MembershipError`` (bad URL, id in use) before proposing."""
        return self._node.requests.change_membership(self._node.membership.add_change(member_id, peer_url))

    def remove_member(self, member_id: int) -> defer.Deferred:
        """Remove a member; fires once applied here.  Raises
        ``MembershipError`` (``no_such_member``) before proposing."""
        return self._node.requests.change_membership(self._node.membership.remove_change(member_id))

    def update_member(self, member_id: int, peer_url: str) -> defer.Deferred:
        """Change a member's peer URL: not supported yet (raft has no
        ConfChangeUpdateNode); raises ``MembershipError`` (``not_supported``)."""
        raise MembershipError("not_supported", "changing a member's peer URL is not supported yet")

    # -- snapshots -----------------------------------------------------------------

    def take_snapshot(self) -> defer.Deferred:
        """Write a snapshot now; fires with its index once durable.  Fails
        with ``RuntimeError`` while another is being taken."""
        return self._node.compaction.take_snapshot()
