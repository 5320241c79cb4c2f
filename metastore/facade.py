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
from typing import Callable

from twisted.internet import defer

from metastore import health
from metastore.auth.checker import AuthChecker
from metastore.auth.messages import AuthInfo
from metastore.auth.state import AuthState
from metastore.auth.tokens import SimpleTokens, TokenProvider
from metastore.errors import RequestTimedOut, Unavailable
from metastore.kv.commands import AlarmType, Command, SetAlarm
from metastore.kv.errors import NoSpaceError
from metastore.kv.messages import (
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseRevokeRequest,
    RangeRequest,
    RangeResponse,
    TxnRequest,
    TxnResponse,
)
from metastore.kv.store import Result
from metastore.kv.validation import DEFAULT_MAX_TXN_OPS, adds_data, check_request, is_read_only
from metastore.leases import LeaseStatus, Lessor
from metastore.membership import MembershipError
from metastore.node import Node
from metastore.storage.engine import KeyValue, Lease, MemberRecord
from metastore.watch import (
    MEMBER_STOPPING,
    Callback,
    EventType,
    Watch,
    WatchEvent,
    WatchFilter,
    WatchHub,
    WatchResponse,
)

__all__ = [
    "AlarmType",
    "MEMBER_STOPPING",
    "MemberRecord",
    "Consistency",
    "EventType",
    "KeyValue",
    "Lease",
    "LeaseStatus",
    "MemberFacade",
    "MemberActivity",
    "MemberStatus",
    "MembershipError",
    "Restoring",
    "Result",
    "EventType",
    "Watch",
    "WatchEvent",
    "WatchFilter",
    "WatchResponse",
]


DEFAULT_QUOTA_BYTES = 2 * 2**30
"""etcd's default ``--quota-backend-bytes``."""

LEARNER_READY_FRACTION = 0.9
"""etcd's rule: a learner may be promoted once its match index reaches 90%
of the leader's."""

POLL_SECONDS = 0.01


def _poll(reactor, condition, timeout: float, error: Exception) -> defer.Deferred:
    """Fires with None once ``condition()`` holds (checked every
    ``POLL_SECONDS``), or fails with ``error`` after ``timeout`` seconds."""
    d: defer.Deferred = defer.Deferred()
    deadline = reactor.seconds() + timeout

    def check() -> None:
        if condition():
            d.callback(None)
        elif reactor.seconds() >= deadline:
            d.errback(error)
        else:
            reactor.callLater(POLL_SECONDS, check)

    check()
    return d


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
    apply_failure: str | None = None
    """The unexpected error that stopped applying, if any."""
    apply_stalled_ticks: int = 0
    """Ticks for which the applied index stayed below the commit index without moving."""
    election_ticks: int = 10
    connected_peers: tuple[int, ...] = ()
    """The members this one's transport is connected to now."""


@dataclass(frozen=True, slots=True)
class MemberActivity:
    """Running totals of one member's work and what waits now, for its
    metrics (``/metrics``)."""

    leader_changes_seen: int
    """Times this member learnt of a new leader since it started."""
    proposals_pending: int
    """Proposals made here that wait for their entry to apply."""
    proposals_failed: int
    """Proposals made here that failed for want of the cluster."""
    watchers: int
    """Live watches on this member."""
    is_learner: bool
    """Whether this member is a learner (a non-voting member)."""


class MemberFacade:
    """What the APIs may ask of a member."""

    def __init__(
        self,
        node: Node,
        storage_name: str = "memory",
        db_size: Callable[[], int] = lambda: 0,
        quota_bytes: int = DEFAULT_QUOTA_BYTES,
        *,
        lessor: Lessor | None = None,
        watch_hub: WatchHub | None = None,
        auth_tokens: TokenProvider | None = None,
    ) -> None:
        self._node = node
        tokens = auth_tokens if auth_tokens is not None else SimpleTokens(node.reactor)
        self._auth = AuthChecker(lambda: node.membership.auth, tokens, node.store.lease_keys)
        self.auth_listeners: list[Callable[[], None]] = []
        """Called after each change of the auth state applied here (after
        the checker dropped the tokens and watches it no longer allows)."""
        node.membership.auth_changed = self._auth_changed
        self._storage_name = storage_name
        self._db_size = db_size
        self.quota_bytes = quota_bytes
        """Above this ``db_size`` a write raises NOSPACE (``--quota-backend-bytes``)."""
        self._lessor = lessor
        self._watch_hub = watch_hub

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

    def propose(self, command: Command, auth: AuthInfo | None = None) -> defer.Deferred:
        """Replicate ``command``; fires with its ``Result`` once committed,
        durable and applied here (so a read here then sees it).  ``auth`` is
        what ``authorize`` answered for it: every member refuses the command
        at apply with ``AuthOldRevision`` when the auth state changed since."""
        return self._node.propose(command, auth)

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

    # -- leases -----------------------------------------------------------------

    def lease_grant(self, ttl: int, id: int = 0, auth: AuthInfo | None = None) -> defer.Deferred:
        """Grant a lease of ``ttl`` seconds (raised to the minimum TTL) with
        ``id`` (0: this member picks one); fires with ``LeaseGrantResponse``
        once applied here, fails with ``LeaseExistsError`` /
        ``LeaseTTLTooLargeError``; ``auth`` as for ``propose``."""
        lessor = self._require(self._lessor)
        return self.propose(LeaseGrantRequest(lessor.grant_ttl(ttl), id or lessor.new_id()), auth)

    def lease_revoke(self, id: int, auth: AuthInfo | None = None) -> defer.Deferred:
        """Revoke lease ``id``, deleting its keys in one revision; fires with
        ``LeaseRevokeResponse``, fails with ``LeaseNotFoundError``;
        ``auth`` as for ``propose``."""
        return self.propose(LeaseRevokeRequest(id), auth)

    def lease_keepalive(self, id: int) -> defer.Deferred:
        """Renew lease ``id`` from whichever member this is (the keepalive is
        replicated, so it reaches the leader); fires with
        ``LeaseKeepAliveResponse`` (its ``ttl``: the seconds it now has),
        fails with ``LeaseNotFoundError``."""
        return self.propose(LeaseKeepAliveRequest(id))

    def lease_time_to_live(self, id: int, keys: bool = False) -> LeaseStatus:
        """Lease ``id`` from the applied state (after ``read``): seconds left
        (-1: no such lease), TTL granted, attached keys if ``keys``.  Exact
        on the leader; a follower counts from the last grant, keepalive or
        checkpoint it applied (``Lessor.status``)."""
        return self._require(self._lessor).status(id, keys)

    def leases(self) -> list[Lease]:
        """Every lease in the applied state (after ``read``), by id."""
        return self._node.store.leases()

    # -- watch ------------------------------------------------------------------

    def watch(
        self,
        key: bytes,
        range_end: bytes = b"",
        start_revision: int = 0,
        filters: tuple[WatchFilter, ...] = (),
        prev_kv: bool = False,
        progress_notify: bool = False,
        *,
        callback: Callback,
    ) -> Watch:
        """Watch ``key`` (``range_end`` empty), ``[key, range_end)`` or every
        key from ``key`` (``range_end`` ``b"\\0"``) from ``start_revision``
        (0: from the next one).  ``callback`` gets ``WatchResponse``s: the
        ``created`` one at once, then events in revision order, progress
        notifications, and a last ``canceled`` one (``compact_revision`` set
        when the start was compacted).  The returned ``Watch`` has
        ``cancel()``, ``pause()``/``resume()`` (its buffer is bounded: a
        watch paused too long is cancelled with a reason) and
        ``request_progress()``."""
        return self._require(self._watch_hub).watch(
            key, range_end, start_revision, filters, prev_kv, progress_notify, callback=callback
        )

    def watch_count(self) -> int:
        """How many watches are live on this member."""
        return len(self._require(self._watch_hub).watches())

    @staticmethod
    def _require(part):
        if part is None:
            raise RuntimeError("this member was built without leases and watches")
        return part

    # -- auth -------------------------------------------------------------------

    def authorize(self, token: str | None, request) -> AuthInfo | None:
        """Raise etcd's auth error unless the user of ``token`` may make the
        KV or lease ``request`` (``AuthChecker.authorize``; passes while auth
        is disabled); the ``AuthInfo`` to propose it with (None while auth is
        disabled)."""
        return self._auth.authorize(token, request)

    def auth_still_current(self, auth: AuthInfo | None) -> None:
        """Raise ``AuthOldRevision`` when a read checked for ``auth`` is about
        to be answered after the auth state changed (etcd checks again after
        serving a range)."""
        self._auth.still_current(auth)

    def authorize_read(self, token: str | None, key: bytes, range_end: bytes) -> str | None:
        """Raise etcd's auth error unless the user of ``token`` may read the
        range (a watch); the user, None while auth is disabled."""
        return self._auth.authorize_read(token, key, range_end)

    def authorize_admin(self, token: str | None) -> AuthInfo | None:
        """Raise etcd's auth error unless the user of ``token`` holds the root
        role; the ``AuthInfo`` to propose an auth change with (None while
        auth is disabled)."""
        return self._auth.authorize_admin(token)

    def authorize_user(self, token: str | None) -> None:
        """Raise etcd's auth error unless ``token`` names a user (while auth is enabled)."""
        self._auth.authorize_user(token)

    def track_watch(self, user: str | None, key: bytes, range_end: bytes, watch: Watch) -> None:
        """Cancel ``watch`` once ``user`` may no longer read its range."""
        self._auth.track_watch(user, key, range_end, watch)

    def authenticate(self, name: str, password: str) -> defer.Deferred:
        """Fires with a token for ``name`` once the password checks out
        (checked off the reactor thread); fails with etcd's auth error."""
        return defer.Deferred.fromCoroutine(self._auth.authenticate(name, password))

    def _auth_changed(self) -> None:
        self._auth.auth_changed()
        for listener in self.auth_listeners:
            listener()

    def auth_state(self) -> AuthState:
        """The auth state as applied here (read it, never change it)."""
        return self._node.membership.auth

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
            storage_failure=None if node.failure is None or node.applier.failure else str(node.failure),
            apply_failure=None if node.applier.failure is None else repr(node.applier.failure),
            apply_stalled_ticks=node.applier.stalled_ticks,
            election_ticks=node.election_ticks,
            connected_peers=tuple(
                i for i in sorted(node.membership.peer_urls())
                if i != node.member_id and node.transport is not None and node.transport.connected(i)
            ),
        )

    def activity(self) -> MemberActivity:
        """This member's running totals now (``MemberActivity``)."""
        node = self._node
        return MemberActivity(
            leader_changes_seen=node.leader_changes_seen,
            proposals_pending=len(node.requests.pending),
            proposals_failed=node.requests.proposals_failed,
            watchers=0 if self._watch_hub is None else self.watch_count(),
            is_learner=any(m.member_id == node.member_id and m.is_learner for m in node.membership.listing()),
        )

    # -- members ----------------------------------------------------------------

    def members(self) -> list[MemberRecord]:
        """Every member as applied here, by id."""
        return self._node.membership.listing()

    def next_member_id(self) -> int:
        """An unused member id for a new member (``Membership.next_member_id``)."""
        return self._node.membership.next_member_id()

    def add_member(self, member_id: int, peer_url: str, learner: bool = False) -> defer.Deferred:
        """Add a member at ``peer_url`` (a voter, or a learner); fires once
        applied here.  Raises ``MembershipError`` (bad URL, id in use) before proposing."""
        return self._node.requests.change_membership(self._node.membership.add_change(member_id, peer_url, learner))

    def remove_member(self, member_id: int) -> defer.Deferred:
        """Remove a member; fires once applied here.  Raises
        ``MembershipError`` (``no_such_member``) before proposing."""
        return self._node.requests.change_membership(self._node.membership.remove_change(member_id))

    def promote_member(self, member_id: int) -> defer.Deferred:
        """Make learner ``member_id`` a voter; fires once applied here.
        Raises ``MembershipError`` before proposing: ``no_such_member``,
        ``not_learner``, ``not_leader`` (only the leader knows how far a
        learner is), or ``learner_not_ready`` (etcd's rule: its match index
        is below 90% of the leader's)."""
        change = self._node.membership.promote_change(member_id)
        status = self._node.rawnode.status()
        if member_id not in status.progress:
            raise MembershipError("not_leader", "only the leader can promote a learner; ask the leader")
        leader_match = status.progress[self.member_id].match
        if status.progress[member_id].match < leader_match * LEARNER_READY_FRACTION:
            raise MembershipError("learner_not_ready", f"learner {member_id} has not caught up with the leader")
        return self._node.requests.change_membership(change)

    def update_member(self, member_id: int, peer_url: str) -> defer.Deferred:
        """Move a member to a new peer URL (a replicated attribute update, no
        raft configuration change); fires once applied here.  Raises
        ``MembershipError`` before proposing."""
        return self._node.propose(self._node.membership.update_command(member_id, peer_url))

    def hand_over_leadership(self, timeout: float) -> defer.Deferred:
        """If this member leads and another voter exists, transfer
        leadership to the voter with the highest match index; fires once it
        leads with its id (None at once when there is nothing to do), fails
        with ``RequestTimedOut`` after ``timeout`` seconds."""
        node = self._node
        if not node.is_leader or not node.running:
            return defer.succeed(None)
        progress = node.rawnode.status().progress
        voters = [m.member_id for m in node.membership.listing() if not m.is_learner and m.member_id != self.member_id]
        candidates = [(progress[i].match, i) for i in voters if i in progress]
        if not candidates:
            return defer.succeed(None)
        target = max(candidates)[1]
        return self.transfer_leadership(target, timeout).addCallback(lambda _: target)

    def transfer_leadership(self, target: int, timeout: float | None = None) -> defer.Deferred:
        """etcd's MoveLeader: this member, the leader, hands leadership to
        voter ``target``; fires once ``target`` leads here, fails with
        ``RequestTimedOut`` after ``timeout`` (default: the request
        timeout).  Raises
        ``MembershipError`` (``not_leader``, ``bad_transferee``) first."""
        node = self._node
        if not node.is_leader:
            raise MembershipError("not_leader", "only the leader can transfer leadership; ask the leader")
        known = node.membership.members.get(target)
        if known is None or known.is_learner:
            raise MembershipError("bad_transferee", f"member {target} is not a voter of the cluster")
        if target == self.member_id:
            return defer.succeed(None)
        timeout = node.request_timeout if timeout is None else timeout
        node.rawnode.transfer_leader(target)
        node.wake()
        return _poll(node.reactor, lambda: node.leader_id == target, timeout,
                     RequestTimedOut(f"member {target} did not take over within {timeout}s"))

    # -- space and alarms --------------------------------------------------------

    def db_size(self) -> int:
        """Bytes this member's stored state takes on disk (engine, WAL, snapshots)."""
        return self._db_size()

    def alarms(self) -> list[tuple[int, AlarmType]]:
        """The raised alarms as applied here: ``(member_id, alarm)``, sorted."""
        return sorted(self._node.membership.alarms)

    def set_alarm(self, member_id: int, alarm: AlarmType, active: bool) -> defer.Deferred:
        """Raise or disarm ``alarm`` through raft; fires once applied here."""
        return self._node.propose(SetAlarm(member_id, alarm, active))

    def check_space(self, request: Command) -> defer.Deferred:
        """etcd's quota check before a write that adds data: while NOSPACE is
        raised, or once ``db_size`` passes the quota (which raises NOSPACE
        for this member, through raft), fails with ``NoSpaceError``;
        otherwise fires at once."""
        if not adds_data(request):
            return defer.succeed(None)
        if self._node.membership.out_of_space:
            return defer.fail(NoSpaceError())
        if self.db_size() <= self.quota_bytes:
            return defer.succeed(None)
        d = self.set_alarm(self.member_id, AlarmType.NOSPACE, True)
        d.addCallback(lambda _: defer.fail(NoSpaceError()))
        return d

    def propose_raw(self, data: bytes, conf_change: bool = False) -> defer.Deferred:
        """Test-only: propose ``data`` unchecked as a normal or conf change
        entry (``POST /admin/debug/propose-raw``, see ``metastore.faults``);
        fails with ``EntryRejected`` when every member applies it as a no-op."""
        return self._node.requests.propose_raw(data, conf_change)

    # -- snapshots -----------------------------------------------------------------

    def take_snapshot(self) -> defer.Deferred:
        """Write a snapshot now; fires with its index once durable.  Fails
        with ``RuntimeError`` while another is being taken."""
        return self._node.compaction.take_snapshot()

    async def snapshot_file(self) -> str:
        """The path of a snapshot file of the whole store taken now (the
        format of ``metastore.snapshots.format``); raises ``RuntimeError``
        while another snapshot is being taken."""
        index = await self.take_snapshot()
        for found, _, path in reversed(self._node.compaction.snapshotter.directory.snapshots()):
            if found == index:
                return path
        raise RuntimeError(f"snapshot {index} was pruned before it could be read")
