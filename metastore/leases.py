"""Lease timing: the one home of what a lease's expiry means on a member.

The replicated lease state (which leases exist, their TTL, the remaining
TTL of the last checkpoint, the keys attached) lives in the key-value
state machine (``metastore.kv.store``) and is the same on every member.
*When* a lease expires is not replicated: as in etcd, only the leader keeps
deadlines, on its monotonic clock (the reactor's ``seconds()``), outside
apply.  ``Lessor`` is that clock-keeper:

- on becoming leader it gives every lease the deadline now + its remaining
  TTL (the checkpointed one, else the whole TTL), so a leader change
  never expires a live lease: it extends it, as etcd's ``Promote`` does;
- a grant or keepalive applied while leading sets the deadline now + TTL;
- a lease past its deadline is revoked by proposing ``LeaseRevokeRequest``
  (again after ``revoke_retry`` seconds while the revoke has not applied);
- every ``checkpoint_interval`` it proposes the remaining TTLs
  (``LeaseCheckpointRequest``), so a restart of the whole cluster resumes
  from them rather than from the whole TTLs; a checkpoint that applies
  after a keepalive it did not see (the keepalive was in the log, not yet
  applied, when the remaining TTL was computed) is corrected at once by
  another, so a new leader does not count from the stale value;
- on losing leadership it forgets every deadline.

Keepalives are replicated commands (``LeaseKeepAliveRequest``) rather than
messages to the leader: raft already forwards a follower's proposal to the
leader, the renewal reaches whichever member leads when it commits, and a
new leader finds it in the replicated state (the remaining TTL reset to the
whole TTL) instead of trusting a message the old leader may have taken
with it.  The price is one log entry per keepalive, grouped by the group
commit like any write.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from typing import Callable

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from metastore.kv.messages import LeaseCheckpointRequest, LeaseRevokeRequest
from metastore.kv.store import AppliedChanges, KeyValueStore
from metastore.periodic import start_periodic, stop_periodic
from metastore.storage.engine import Lease

log = Logger()

MAX_LEASE_ID = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    """etcd's ``LeaseTimeToLiveResponse`` fields: ``ttl`` the seconds left
    (-1 when there is no such lease), ``granted_ttl`` the TTL granted, and
    the attached keys when asked for."""

    id: int
    ttl: int
    granted_ttl: int
    keys: tuple[bytes, ...] = ()


class Lessor(service.Service):
    """Keeps lease deadlines while this member leads and proposes the
    revokes and checkpoints they call for (see the module docstring)."""

    def __init__(
        self,
        store: KeyValueStore,
        propose: Callable[[object], defer.Deferred],
        clock,
        is_leader: Callable[[], bool],
        *,
        min_ttl: int = 2,
        check_interval: float = 0.5,
        checkpoint_interval: float = 300.0,
        revoke_retry: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._propose = propose
        self._clock = clock
        self._is_leader = is_leader
        self.min_ttl = min_ttl
        """Grants ask for at least this many seconds (etcd: 1.5 election timeouts)."""
        self._check_interval = check_interval
        self._checkpoint_interval = checkpoint_interval
        self._revoke_retry = revoke_retry
        self._rng = rng or random.SystemRandom()
        self._deadlines: dict[int, float] = {}
        self._estimates: dict[int, float] = {}
        """On every member: when each lease runs out counted from the last
        grant, keepalive or checkpoint applied here.  Only what a follower
        shows as the remaining TTL; expiry is the leader's ``_deadlines``."""
        self._queue: list[tuple[float, int]] = []
        """(deadline, id) in a heap, with stale pairs (a deadline since
        moved) skipped and dropped lazily: a check costs the expired leases,
        not all of them."""
        self._revoking: dict[int, float] = {}
        self._leading = False
        self._next_checkpoint = 0.0
        self._loop: task.LoopingCall | None = None
        store.listeners.append(self.applied)

    # -- service --------------------------------------------------------------

    def startService(self) -> None:
        """Check deadlines and leadership every ``check_interval`` seconds."""
        super().startService()
        self._loop = start_periodic(self.check, self._check_interval, self._clock)

    def stopService(self):
        """Stop checking; deadlines are forgotten (a leader's own business)."""
        super().stopService()
        stop_periodic(self._loop)
        self._demote()

    # -- what the facade asks ---------------------------------------------------

    def grant_ttl(self, ttl: int) -> int:
        """The TTL a grant asking for ``ttl`` seconds gets (at least ``min_ttl``)."""
        return max(ttl, self.min_ttl)

    def new_id(self) -> int:
        """A lease id for a grant that named none: random over 63 bits, taken
        by the member that receives the grant, as etcd does; the grant
        fails with "lease already exists" in the unlikely case it is taken."""
        return self._rng.randint(1, MAX_LEASE_ID)

    def status(self, lease_id: int, keys: bool = False) -> LeaseStatus:
        """Lease ``lease_id`` as this member knows it now: exact on the
        leader; on a follower, counted from the last grant, keepalive or
        checkpoint it applied (so within a commit latency of the leader's,
        except after a leader change, which extends leases), or, when it
        applied none since it started, the checkpointed or whole TTL."""
        lease = self._store.lease(lease_id)
        if lease is None:
            return LeaseStatus(lease_id, -1, 0)
        attached = tuple(self._store.lease_keys(lease_id)) if keys else ()
        return LeaseStatus(lease_id, self.remaining_ttl(lease, math.floor), lease.ttl, attached)

    def remaining_ttl(self, lease: Lease, rounding: Callable[[float], int] = math.ceil) -> int:
        """Whole seconds left of ``lease``, never below 0: rounded up by
        default (a checkpoint never takes time from a lease), rounded down
        for the TTL shown to clients (etcd says 29 just after a grant of 30)."""
        deadline = self._deadlines.get(lease.id, self._estimates.get(lease.id))
        if deadline is None:
            return lease.remaining_ttl or lease.ttl
        return max(0, rounding(deadline - self._clock.seconds()))

    # -- the clock-keeping ----------------------------------------------------------

    def applied(self, changes: AppliedChanges) -> None:
        """A store listener: grants and keepalives restart a lease's clock
        here if leading (and its shown countdown on any member, as a
        checkpoint does); a revoke ends it."""
        now = self._clock.seconds()
        stale = []
        for event in changes.lease_events:
            lease_id = event.lease.id
            if event.kind in ("grant", "keepalive"):
                self._estimates[lease_id] = now + event.lease.ttl
                if self._leading:
                    self._set_deadline(lease_id, now + event.lease.ttl)
            elif event.kind == "checkpoint":
                self._estimates[lease_id] = now + (event.lease.remaining_ttl or event.lease.ttl)
                if self._leading and lease_id in self._deadlines:
                    # Computed before a keepalive that applied first: the store now
                    # holds less than the lease has, which a new leader would use.
                    remaining = min(self.remaining_ttl(event.lease), event.lease.ttl)
                    if remaining > (event.lease.remaining_ttl or event.lease.ttl):
                        stale.append((lease_id, remaining))
            elif event.kind == "revoke":
                self._estimates.pop(lease_id, None)
                self._deadlines.pop(lease_id, None)
                self._revoking.pop(lease_id, None)
        if stale:
            self._propose(LeaseCheckpointRequest(tuple(stale))).addErrback(self._ignored, "checkpoint correction")

    def check(self) -> None:
        """Follow leadership; while leading, revoke what expired and
        checkpoint when due."""
        leading = self._is_leader()
        if leading and not self._leading:
            self._promote()
        elif not leading and self._leading:
            self._demote()
        if not leading:
            return
        now = self._clock.seconds()
        for lease_id in self._expired(now):
            if now - self._revoking.get(lease_id, -math.inf) >= self._revoke_retry:
                self._revoking[lease_id] = now
                self._propose(LeaseRevokeRequest(lease_id)).addErrback(self._revoke_failed, lease_id)
        if now >= self._next_checkpoint:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Propose the remaining TTL of every lease that has run for a while
        (only the leader knows them)."""
        self._next_checkpoint = self._clock.seconds() + self._checkpoint_interval
        pairs = []
        for lease in self._store.leases():
            remaining = self.remaining_ttl(lease)
            if lease.id in self._deadlines and 0 < remaining < lease.ttl:
                pairs.append((lease.id, remaining))
        if pairs:
            self._propose(LeaseCheckpointRequest(tuple(pairs))).addErrback(self._ignored, "checkpoint")

    def _set_deadline(self, lease_id: int, deadline: float) -> None:
        self._deadlines[lease_id] = deadline
        heapq.heappush(self._queue, (deadline, lease_id))
        if len(self._queue) > 2 * len(self._deadlines) + 64:
            self._queue = [(d, i) for i, d in self._deadlines.items()]
            heapq.heapify(self._queue)

    def _expired(self, now: float) -> list[int]:
        """The leases past their deadline (they stay queued until revoked,
        so that a failed revoke is retried)."""
        queue, expired = self._queue, []
        while queue and queue[0][0] <= now:
            deadline, lease_id = heapq.heappop(queue)
            if self._deadlines.get(lease_id) == deadline:
                expired.append(lease_id)
        for lease_id in expired:
            heapq.heappush(queue, (self._deadlines[lease_id], lease_id))
        return expired

    def _promote(self) -> None:
        self._leading = True
        now = self._clock.seconds()
        self._deadlines, self._queue = {}, []
        for lease in self._store.leases():
            self._set_deadline(lease.id, now + (lease.remaining_ttl or lease.ttl))
        self._revoking = {}
        self._next_checkpoint = now + self._checkpoint_interval
        log.info("leading: {n} leases counted from now", n=len(self._deadlines))

    def _demote(self) -> None:
        self._leading = False
        self._deadlines, self._queue, self._revoking = {}, [], {}

    def _revoke_failed(self, failure, lease_id: int) -> None:
        log.info("revoking expired lease {id:x} failed, will retry: {e}", id=lease_id, e=failure.value)

    def _ignored(self, failure, what: str) -> None:
        log.info("lease {what} failed: {e}", what=what, e=failure.value)
