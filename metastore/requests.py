"""Client requests on their way into the Ready loop, and what waits on them.

``Requests`` admits proposals, membership changes and linearizable reads
into the node's ``RawNode`` and keeps their waiters: a proposal's Deferred
fires with its result once its entry is applied here; a read's once the
applied index reaches its ReadIndex.  A collaborator of ``metastore.node``.
"""

from __future__ import annotations

import itertools
import os

from twisted.internet import defer
from twisted.python.failure import Failure

from metastore import raft
from metastore.auth.messages import AuthInfo
from metastore.errors import (
    ChangeRefused, NoLeader, RequestTimedOut, StorageFailed, Stopping, Unavailable, UnhealthyCluster,
)
from metastore.kv.commands import Command, encode_command
from metastore.raft.types import ConfChange
from metastore.waiters import LinearizableReads, PendingRequests, fail_after


class Requests:
    """Admits requests to ``node`` (refusing them while its storage failed
    or it is not running) and answers them; fails them all on ``fail_all``."""

    def __init__(self, node, election_ticks: int) -> None:
        self._node = node
        self._boot_id, self._sequence = os.urandom(8), itertools.count(1)
        self.pending = PendingRequests(node.reactor, node.request_timeout)
        self._in_flight: dict[bytes, bytes] = {}
        """Each waiting write's entry data, by request id, to re-propose."""
        self.proposals_failed = 0
        """Proposals that failed for want of the cluster (no leader, timed out,
        stopping, storage failed), not those the state machine refused."""
        self.reads = LinearizableReads(
            node.reactor, node.request_timeout, election_ticks, self._new_id, node.rawnode.read_index
        )

    def _new_id(self) -> bytes:
        """An id unique across the cluster and across restarts (random per
        process, then a counter): for proposals and ReadIndex contexts."""
        return self._boot_id + next(self._sequence).to_bytes(8, "big")

    def propose(self, command: Command, auth: AuthInfo | None = None, again: bool = True) -> defer.Deferred:
        """Replicate ``command``; fires with its ``Result`` once applied here.
        The entry carries the commit index known now, so copies re-proposed
        later are recognised (``metastore.kv.dedup``), and ``auth``: who the
        command was checked for, at which auth revision (checked again at apply).
        ``again`` False: never proposed again when a new leader is learned
        (``repropose``), for a leader's own decisions (lease expiry and
        checkpoints): a leader paused past a lease's TTL must not have its
        stale revoke applied in its successor's term; it times out instead."""
        node = self._node
        if node.failure is not None:
            self.proposals_failed += 1
            return defer.fail(StorageFailed(str(node.failure)))
        if not node.running:
            self.proposals_failed += 1
            return defer.fail(Stopping("the member is not running"))
        request_id = self._new_id()
        data = encode_command(request_id, command, node.rawnode.commit_index, auth)
        try:
            node.rawnode.propose(data)
        except raft.ProposalDropped as e:
            self.proposals_failed += 1
            return defer.fail(NoLeader(f"proposal dropped: {e}"))
        if again:
            self._in_flight[request_id] = data
        d = self.pending.add(request_id)
        d.addBoth(self._answered, request_id)
        node.wake()
        return d

    def _answered(self, result, request_id: bytes):
        self._in_flight.pop(request_id, None)
        if isinstance(result, Failure) and isinstance(result.value, Unavailable):
            self.proposals_failed += 1
        return result

    def repropose(self) -> None:
        """A new leader is known: propose every write still waiting again, as
        it was (same request id, same ``proposed_at``), since the old leader
        may have lost it; a copy applied twice is applied once."""
        for data in list(self._in_flight.values()):
            try:
                self._node.rawnode.propose(data)
            except raft.ProposalDropped:
                return  # no leader after all: the next one will retry
        if self._in_flight:
            self._node.wake()

    def change_membership(self, change: ConfChange) -> defer.Deferred:
        """Propose a single-step membership change; fires once it is applied
        here, fails with ``Unavailable`` when refused or timed out."""
        node = self._node
        if node.failure is not None:
            return defer.fail(StorageFailed(str(node.failure)))
        unsafe = node.membership.unsafe_reconfiguration(change)
        if unsafe is not None:
            return defer.fail(UnhealthyCluster(unsafe))
        try:
            node.rawnode.propose_conf_change(change)
        except raft.ProposalDropped as e:
            return defer.fail(ChangeRefused(f"membership change refused for now: {e}"))
        d = node.membership.wait_applied(change)
        node.wake()
        error = RequestTimedOut("the membership change timed out; it may still apply")
        return fail_after(d, node.request_timeout, node.reactor, error)

    def propose_raw(self, data: bytes, conf_change: bool) -> defer.Deferred:
        """Test-only (``metastore.faults``): propose ``data`` as it is, as a
        normal or a conf change entry, bypassing every check; fires once
        applied, fails with ``EntryRejected`` once applied as a no-op."""
        node = self._node
        if node.failure is not None or not node.running:
            return defer.fail(Stopping("the member is not accepting proposals"))
        entry = raft.Entry(0, 0, raft.EntryType.EntryConfChange if conf_change else raft.EntryType.EntryNormal, data)
        try:
            node.rawnode.raft.step(raft.Message(type=raft.MessageType.MsgProp, entries=(entry,)))
        except raft.ProposalDropped as e:
            return defer.fail(NoLeader(f"proposal dropped: {e}"))
        d = node.membership.wait_entry(data) if conf_change else self.pending.add(data)
        node.wake()
        return fail_after(d, node.request_timeout, node.reactor, RequestTimedOut("the raw proposal timed out"))

    def read_barrier(self) -> defer.Deferred:
        """Fires once local state reflects every write acknowledged before
        this call (linearizable read, through batched ReadIndex)."""
        node = self._node
        if node.failure is not None:
            if node.sole_voter:
                # Nothing can commit without this member, so what it applied
                # is the newest state there is.
                return defer.succeed(node.store.applied_index)
            return defer.fail(StorageFailed(str(node.failure)))
        if not node.running:
            return defer.fail(Stopping("the member is not running"))
        d = self.reads.add()
        self.maybe_start_read_round()
        return d

    def maybe_start_read_round(self) -> None:
        """Start a ReadIndex round for waiting reads if none is fresh in flight."""
        if self.reads.maybe_start_round(self._node.leader_id != 0):
            self._node.wake()

    def serve(self, read_state: raft.ReadState, applied_index: int) -> None:
        """Raft answered a ReadIndex round."""
        self.reads.serve(read_state.request_ctx, read_state.index, applied_index)
        self.maybe_start_read_round()

    def fail_all(self, error: Exception) -> None:
        """Fail every waiting proposal and read with ``error``."""
        self.pending.fail_all(error)
        self.reads.fail_all(error)
