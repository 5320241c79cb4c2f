"""Applying committed entries: the keyspace, the membership, their waiters."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Sequence

from twisted.logger import Logger

from metastore import raft
from metastore.auth.errors import AuthError, AuthOldRevision, PermissionDenied, UserNotFound
from metastore.auth.messages import AUTH_COMMANDS, AuthInfo
from metastore.errors import EntryRejected, RequestTimedOut
from metastore.kv.commands import Command, CommandError, PublishMember, SetAlarm, UpdateMember, decode_proposal
from metastore.kv.dedup import RecentRequests, Verdict
from metastore.kv.errors import NoSpaceError
from metastore.kv.messages import LeaseRevokeRequest, PutRequest
from metastore.kv.validation import adds_data
from metastore.kv.store import KeyValueStore
from metastore.measure import UNMEASURED, Observer
from metastore.membership import Membership
from metastore.raft.types import ConfChange, Entry, EntryType
from metastore.waiters import PendingRequests

log = Logger()


class EntryApplier:
    """Applies committed entries in log order to the key-value store and
    the membership, and answers the requests waiting for them.

    Every committed entry is applied, whatever it holds, so the applied
    index always reaches the commit index: an entry that holds no valid
    command, or a membership change that raft's rules
    (``RawNode.apply_conf_change_entry``) or ``Membership.invalid_reason``
    refuse at its index, is applied as a no-op by every member alike and
    fails its proposer with ``EntryRejected``.  A membership change is
    applied on its own: to raft, then to ``membership``; the engine stores
    the new membership record with the change's index.  A request whose id
    ``RecentRequests`` remembers (a re-proposed copy) is applied as a no-op.
    A client request checked at an auth revision older than the one
    applied here (an auth change was applied between its check and its
    entry: both in log order, so every member decides alike) is refused
    with etcd's ``AuthOldRevision`` and changes nothing; so is a revoke of
    a lease, or a put attaching a key to one, whose user may not write
    every key attached to the lease at its entry (``PermissionDenied``).
    An auth change (users, roles, permissions, disable) checked for a root
    user is refused when, at its entry, that user is gone
    (``UserNotFound``) or no longer holds the root role
    (``PermissionDenied``): etcd's admin check at apply."""

    def __init__(
        self,
        store: KeyValueStore,
        membership: Membership,
        pending: PendingRequests,
        rawnode: raft.RawNode,
        recent: RecentRequests,
    ) -> None:
        self._store = store
        self._recent = recent
        self._membership = membership
        self._pending = pending
        self._rawnode = rawnode
        self._run: list[tuple[bytes | None, Command | None]] = []
        """Decoded commands not yet applied to the store (one engine batch)."""
        self.first_applied_index: int | None = None
        """The index of the first entry this process applied."""
        self.rejected = 0
        """How many entries this process applied as no-ops."""
        self.failure: Exception | None = None
        """The unexpected error that stopped applying, if any (a bug: the
        member then stops, and its health says so)."""
        self.stalled_ticks = 0
        """Ticks for which the applied index stayed below the commit index
        without moving."""
        self._applied_at_last_tick = store.applied_index
        self.commit_seconds: Observer = UNMEASURED
        """Records how long each batch of entries took to apply and commit to the engine."""

    def tick(self, commit_index: int) -> None:
        """One tick passed with ``commit_index`` known committed: count how
        long applying has been stuck behind it."""
        applied = self._store.applied_index
        if applied >= commit_index or applied != self._applied_at_last_tick:
            self.stalled_ticks = 0
        else:
            self.stalled_ticks += 1
        self._applied_at_last_tick = applied

    def apply(self, entries: Sequence[Entry]) -> None:
        """Apply ``entries`` (committed, durable, in order).  An unexpected
        error is kept as ``failure`` and raised."""
        try:
            self._apply(entries)
        except Exception as e:
            self.failure = e
            raise

    def _apply(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        if self.first_applied_index is None:
            self.first_applied_index = entries[0].index
        self._run = []
        for entry in entries:
            if entry.type == EntryType.EntryConfChange:
                self._flush(entry.index - 1)
                self._apply_conf_change(entry)
                self._apply_commands([(None, None)], entry.index)
            else:
                decoded = self._decode(entry)  # which may flush the run first
                self._run.append(decoded)
        self._flush(entries[-1].index)

    def _flush(self, index: int) -> None:
        """Apply the commands decoded so far, ending at ``index``."""
        run, self._run = self._run, []
        self._apply_commands(run, index)

    def _apply_conf_change(self, entry: Entry) -> None:
        """Apply the change ``entry`` holds, or skip it when raft or the
        membership refuses it at this index."""
        outcome = self._rawnode.check_conf_change_entry(entry)
        reason = outcome.reason if isinstance(outcome, raft.ConfChangeRejection) else None
        if reason is None:
            reason = self._membership.invalid_reason(outcome)
        if reason is not None:
            self.rejected += 1
            self._rawnode.skip_conf_change_entry(entry)
            self._membership.reject_entry(entry.data, entry.index, reason)
            return
        change = self._rawnode.apply_conf_change_entry(entry)
        assert isinstance(change, ConfChange)
        self._membership.apply_conf_change(change, entry.data)

    def _decode(self, entry: Entry) -> tuple[bytes | None, Command | None]:
        if not entry.data:
            return None, None  # a new leader's empty entry
        try:
            request_id, command, proposed_at, auth = decode_proposal(entry.data)
        except CommandError as e:
            log.error("entry {i} holds no valid command, applied as a no-op: {e}", i=entry.index, e=e)
            self.rejected += 1
            # A waiter keyed by the entry's bytes (a raw proposal) learns why.
            self._pending.resolve(entry.data, EntryRejected(f"entry {entry.index} holds no valid command: {e}"))
            return None, None
        self._recent.forget_before(entry.index)
        verdict = self._recent.judge(request_id, proposed_at, entry.index)
        if verdict is Verdict.DUPLICATE:
            log.info("entry {i} repeats a request already applied: a no-op", i=entry.index)
            return None, None
        if verdict is Verdict.UNDECIDABLE:
            self.rejected += 1
            error = RequestTimedOut(f"entry {entry.index} was proposed too long ago to rule out an earlier copy: "
                                    "it was not applied, an earlier copy may have been")
            self._pending.resolve(request_id, error)
            return None, None
        self._recent.add(request_id, entry.index)
        if isinstance(command, (PublishMember, UpdateMember)):
            self._membership.apply_attributes(command)
            self._pending.resolve(request_id, None)
            return None, None
        if type(command) in AUTH_COMMANDS:
            # What came before it is applied first, so its answer's revision
            # is the keyspace's at the change.
            self._flush(entry.index - 1)
            refusal = None if auth is None else self._admin_refusal(auth)
            if refusal is not None:
                self._pending.resolve(request_id, refusal)  # etcd's admin check at apply
                return None, None
            try:
                self._membership.apply_auth(command)
            except AuthError as e:
                self._pending.resolve(request_id, e)
            else:
                self._pending.resolve(request_id, self._membership.auth.revision)
            return None, None
        if isinstance(command, SetAlarm):
            self._membership.apply_alarm(command)
            self._pending.resolve(request_id, None)
            return None, None
        refusal = None if auth is None else self._auth_refusal(auth, command, entry.index)
        if refusal is not None:
            self._pending.resolve(request_id, refusal)  # etcd's auth applier
            return None, None
        if self._membership.out_of_space and adds_data(command):
            self._pending.resolve(request_id, NoSpaceError())  # etcd's capped applier
            return None, None
        return request_id, command

    def _admin_refusal(self, auth: AuthInfo) -> AuthError | None:
        """Why the auth change checked for ``auth`` must be refused now
        (etcd's ``IsAdminPermitted``): its user is gone, or no longer holds
        the root role; None when it may be applied.  Unlike a write, an
        auth change is not refused for an older auth revision alone."""
        state = self._membership.auth
        if not state.enabled:
            return None
        if auth.user not in state.users:
            return UserNotFound()
        if not state.is_root(auth.user):
            return PermissionDenied()
        return None

    def _auth_refusal(self, auth: AuthInfo, command: Command, index: int) -> AuthError | None:
        """Why the request checked for ``auth`` must be refused at ``index``:
        the auth state moved on since its check, or (etcd's lease check at
        apply) its user may not write every key now attached to the lease
        it revokes or attaches a key to; None when it may be applied."""
        state = self._membership.auth
        if state.is_old(auth.revision):
            return AuthOldRevision()
        lease = _lease_named(command)
        if lease and state.enabled and not state.is_root(auth.user):
            self._flush(index - 1)  # the lease's keys as of this entry
            if not state.may_write(auth.user, self._store.lease_keys(lease)):
                return PermissionDenied()
        return None

    def _apply_commands(self, run: list[tuple[bytes | None, Command | None]], index: int) -> None:
        if not run:
            return
        record = self._membership.changed_record(self._rawnode.applied_conf_state)
        if self._recent.changed:
            record = replace(record or self._membership.record(self._rawnode.applied_conf_state()),
                             requests=self._recent.entries())
            self._recent.changed = False
        started = time.perf_counter()
        results = self._store.apply(index, [c for _, c in run], record)
        self.commit_seconds.observe(time.perf_counter() - started)
        for (request_id, _), result in zip(run, results):
            if request_id is not None:
                self._pending.resolve(request_id, result)


def _lease_named(command: Command) -> int:
    """The lease a revoke, or a put attaching its key, names (0: none)."""
    if isinstance(command, LeaseRevokeRequest):
        return command.id
    if isinstance(command, PutRequest):
        return command.lease
    return 0
