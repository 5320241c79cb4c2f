"""The replicated key-value state machine: etcd's MVCC model.

``KeyValueStore.apply`` takes committed commands in log order and turns
them into one batch of events for the engine, with etcd's rules:

- the store's revision grows by one for each command that changes
  something; the changes of one command share that revision and are told
  apart by sub-revisions 0, 1, 2... in the order they happen;
- a key's ``version`` counts its puts since it was (re)created; its
  ``create_revision`` is the revision that created it; deleting it writes a
  tombstone, and a later put starts again at version 1;
- a txn evaluates every compare of every nested level against the state
  before it (``_choose_path``), checks its puts and ranges, then runs the
  chosen operations in order; a range inside it sees the writes before it;
- a compaction refuses reads below its revision from then on;
- leases (etcd's lessor state): a grant records a lease, a put attaches its
  key to the lease it names (an unknown lease is etcd's "requested lease
  not found", also inside a txn), a revoke deletes every attached key in
  one revision and then the lease, a keepalive or checkpoint records the
  remaining TTL.  When a lease expires is decided outside apply, by the
  leader's ``metastore.leases.Lessor``, which proposes the revoke.

After each apply the store hands what happened (``AppliedChanges``: the
events with their previous versions, the lease commands that took effect)
to its ``listeners``, in apply order; apply does not depend on them.

Errors etcd decides at apply time (``ignore_value`` on an absent key, a
txn range at a compacted or future revision, compacting a compacted or
future revision) are returned as the command's result, a ``KVError``, and
change nothing.  Apply is deterministic: no clock, no randomness.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import msgpack

from metastore.kv.errors import (
    CompactedError,
    FutureRevisionError,
    KeyNotFoundError,
    KVError,
    LeaseExistsError,
    LeaseNotFoundError,
    LeaseTTLTooLargeError,
)
from metastore.kv.messages import (
    MAX_LEASE_TTL,
    CompactionRequest,
    CompactionResponse,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    LeaseCheckpointRequest,
    LeaseCheckpointResponse,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseKeepAliveRequest,
    LeaseKeepAliveResponse,
    LeaseRequest,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    RequestOp,
    ResponseHeader,
    ResponseOp,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)
from metastore.kv.validation import is_read_only
from metastore.storage.engine import ClusterState, Engine, Event, KeyValue, Lease, LeaseChanges, tombstone

LeaseResponse = LeaseGrantResponse | LeaseRevokeResponse | LeaseKeepAliveResponse | LeaseCheckpointResponse
Result = ResponseOp | CompactionResponse | LeaseResponse | KVError
"""What applying one command gives: its response, or the error etcd answers."""


@dataclass(frozen=True, slots=True)
class LeaseEvent:
    """A lease command that took effect: ``kind`` is ``grant``,
    ``keepalive``, ``checkpoint`` or ``revoke``; ``lease`` the lease after
    it (before it, for a revoke)."""

    kind: str
    lease: Lease


@dataclass(frozen=True, slots=True)
class AppliedChanges:
    """What one apply call changed, as handed to the store's listeners once
    it is committed: ``events`` in revision order with ``prev_kvs[i]`` the
    version of ``events[i]``'s key just before it (None when absent), the
    store's revision before (``previous_revision``) and after
    (``revision``), and the lease commands that took effect, in order."""

    previous_revision: int
    revision: int
    events: tuple[Event, ...]
    prev_kvs: tuple[KeyValue | None, ...]
    lease_events: tuple[LeaseEvent, ...]


@dataclass(frozen=True, slots=True)
class StoreState:
    """A store's counters, membership and leases at one moment: with the
    history read at that moment, all a replica needs (``Engine.restore``)."""

    revision: int
    applied_index: int
    compacted_revision: int
    physically_compacted_revision: int
    cluster_state: ClusterState | None
    leases: tuple[Lease, ...]


Listener = Callable[[AppliedChanges], None]
CommandListener = Callable[[int, int, Sequence["RequestOp | CompactionRequest | None"], Sequence["Result | None"]], None]


def _in_range(name: bytes, key: bytes, range_end: bytes | None) -> bool:
    if not range_end:
        return name == key
    return name >= key and (range_end == b"\0" or name < range_end)


class _Batch:
    """The events of one apply call, readable (at any revision) before they
    reach the engine; with nothing written it is a plain reader of the engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.events: list[Event] = []
        self.revision = engine.revision
        self.compacted_revision = engine.compacted_revision
        self.compaction_changed = False
        self._written: dict[bytes, list[Event]] = {}
        self.prev_kvs: list[KeyValue | None] = []
        self.lease_events: list[LeaseEvent] = []
        self.lease_records: list[tuple[int, Lease | None]] = []
        self.attachments: list[tuple[int, bytes, bool]] = []
        self._leases: dict[int, Lease | None] = {}

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        """``key`` as visible at ``revision`` (0: now), batch included."""
        written = self._written.get(key)
        if written:
            for event in reversed(written):
                if revision <= 0 or event.kv.mod_revision <= revision:
                    return None if event.deleted else event.kv
        if revision <= 0:
            return self.engine.get(key)
        return self.engine.get(key, self._engine_revision(revision))

    def _engine_revision(self, revision: int) -> int:
        return 0 if revision > self.engine.revision else revision

    def range(self, key: bytes, range_end: bytes | None, revision: int = 0, limit: int = 0) -> list[KeyValue]:
        """Visible keys in the range at ``revision``, in key order, batch included."""
        if not range_end:
            found = self.get(key, revision)
            return [] if found is None else [found]
        engine_revision = self._engine_revision(revision)
        if not self._written or (0 < revision <= self.engine.revision):
            return list(self.engine.range(key, range_end, engine_revision, limit))
        visible = {kv.key: kv for kv in self.engine.range(key, range_end, engine_revision)}
        for name in self._written:
            if _in_range(name, key, range_end):
                kv = self.get(name, revision)
                if kv is None:
                    visible.pop(name, None)
                else:
                    visible[name] = kv
        found = [visible[name] for name in sorted(visible)]
        return found[:limit] if limit else found

    def count(self, key: bytes, range_end: bytes | None, revision: int = 0) -> int:
        """How many keys ``range`` would give without a limit."""
        if not self._written or (0 < revision <= self.engine.revision):
            return self.engine.count(key, range_end, self._engine_revision(revision))
        return len(self.range(key, range_end, revision))

    def add(self, event: Event, prev: KeyValue | None) -> None:
        """Record ``event`` as written by this batch over ``prev`` (the
        key's version before it), keeping lease attachments in step."""
        self.events.append(event)
        self.prev_kvs.append(prev)
        self._written.setdefault(event.kv.key, []).append(event)
        old = prev.lease if prev is not None else 0
        new = 0 if event.deleted else event.kv.lease
        if old != new:
            if old:
                self.attachments.append((old, event.kv.key, False))
            if new:
                self.attachments.append((new, event.kv.key, True))

    def lease(self, lease_id: int) -> Lease | None:
        """Lease ``lease_id`` as this batch leaves it, or None."""
        if lease_id in self._leases:
            return self._leases[lease_id]
        return self.engine.lease(lease_id)

    def set_lease(self, lease_id: int, lease: Lease | None) -> None:
        """Record (or, with None, remove) lease ``lease_id``."""
        self._leases[lease_id] = lease
        self.lease_records.append((lease_id, lease))

    def lease_keys(self, lease_id: int) -> list[bytes]:
        """The live keys attached to ``lease_id``, batch included, in key order."""
        keys = set(self.engine.lease_keys(lease_id))
        for attached_to, key, attached in self.attachments:
            if attached_to == lease_id:
                (keys.add if attached else keys.discard)(key)
        return sorted(keys)

    def lease_changes(self) -> LeaseChanges | None:
        """What the engine must record about leases, or None for nothing."""
        if not self.lease_records and not self.attachments:
            return None
        return LeaseChanges(tuple(self.lease_records), tuple(self.attachments))


def _compare_holds(compare: Compare, batch: _Batch) -> bool:
    found = batch.range(compare.key, compare.range_end or None)
    if not found:
        if compare.target == CompareTarget.VALUE:
            return False  # etcd: a value compare on an absent key always fails
        return _compare_kv(compare, KeyValue(compare.key, b"", 0, 0, 0, 0))
    return all(_compare_kv(compare, kv) for kv in found)


def _compare_kv(compare: Compare, kv: KeyValue) -> bool:
    target = compare.target
    if target == CompareTarget.VALUE:
        actual: int | bytes = kv.value
    elif target == CompareTarget.VERSION:
        actual = kv.version
    elif target == CompareTarget.CREATE:
        actual = kv.create_revision
    elif target == CompareTarget.MOD:
        actual = kv.mod_revision
    else:
        actual = kv.lease
    operand = compare.operand
    if type(actual) is not type(operand):
        return False
    result = compare.result
    if result == CompareResult.EQUAL:
        return actual == operand
    if result == CompareResult.NOT_EQUAL:
        return actual != operand
    if result == CompareResult.GREATER:
        return actual > operand
    return actual < operand


_SORT_KEYS = {
    SortTarget.KEY: lambda kv: kv.key,
    SortTarget.VERSION: lambda kv: kv.version,
    SortTarget.CREATE: lambda kv: kv.create_revision,
    SortTarget.MOD: lambda kv: kv.mod_revision,
    SortTarget.VALUE: lambda kv: kv.value,
}


def check_revision(revision: int, current: int, compacted: int) -> None:
    """Raise etcd's error for reading at ``revision`` (0: now) when the
    store is at ``current`` and compacted at ``compacted``."""
    if revision > current:
        raise FutureRevisionError()
    if 0 < revision < compacted:
        raise CompactedError()


def _range(batch: _Batch, request: RangeRequest, header: int) -> RangeResponse:
    """etcd's range over ``batch`` (revision already checked), answered
    with ``header`` as the header revision."""
    filtered = bool(
        request.min_mod_revision or request.max_mod_revision or request.min_create_revision or request.max_create_revision
    )
    key, end, at = request.key, request.range_end or None, request.revision
    if request.count_only:
        return RangeResponse(ResponseHeader(header), count=batch.count(key, end, at))
    # etcd fetches one key past the limit to learn ``more``, unless it has to
    # sort or filter the whole range first.
    limit = 0 if request.sort_order != SortOrder.NONE or filtered else request.limit
    kvs = batch.range(key, end, at, limit + 1 if limit > 0 else 0)
    count = batch.count(key, end, at) if limit > 0 and len(kvs) > limit else len(kvs)
    if filtered:
        kvs = [kv for kv in kvs if _passes_filters(request, kv)]
    order = request.sort_order
    if order == SortOrder.NONE and request.sort_target != SortTarget.KEY:
        order = SortOrder.ASCEND
    if order != SortOrder.NONE and not (order == SortOrder.ASCEND and request.sort_target == SortTarget.KEY):
        # Python's sort is stable even reversed: equal sort values keep
        # ascending key order, as etcd's do.
        kvs.sort(key=_SORT_KEYS[request.sort_target], reverse=order == SortOrder.DESCEND)
    more = False
    if request.limit > 0 and len(kvs) > request.limit:
        kvs, more = kvs[: request.limit], True
    if request.keys_only:
        kvs = [KeyValue(kv.key, b"", kv.create_revision, kv.mod_revision, kv.version, kv.lease) for kv in kvs]
    return RangeResponse(ResponseHeader(header), tuple(kvs), more, count)


def _one_key_now(request: RangeRequest) -> bool:
    """Whether ``request`` reads one key as it is now and whole: the
    usual range, which ``_range`` answers with the key's newest version
    alone (the limit cannot cut one key short)."""
    return not (
        request.range_end or request.revision or request.count_only or request.keys_only or request.sort_order
        or request.sort_target or request.min_mod_revision or request.max_mod_revision
        or request.min_create_revision or request.max_create_revision
    )  # fmt: skip


def _passes_filters(request: RangeRequest, kv: KeyValue) -> bool:
    if request.max_mod_revision and kv.mod_revision > request.max_mod_revision:
        return False
    if request.min_mod_revision and kv.mod_revision < request.min_mod_revision:
        return False
    if request.max_create_revision and kv.create_revision > request.max_create_revision:
        return False
    if request.min_create_revision and kv.create_revision < request.min_create_revision:
        return False
    return True


class _TxnWriter:
    """Runs the operations of one command at one new revision."""

    def __init__(self, batch: _Batch) -> None:
        self.batch = batch
        self.revision = batch.revision + 1
        self.sub = 0

    @property
    def header(self) -> ResponseHeader:
        """etcd's header for an operation: the new revision once something changed."""
        return ResponseHeader(self.revision if self.sub else self.batch.revision)

    def put(self, request: PutRequest) -> PutResponse:
        prev = self.batch.get(request.key)
        value = prev.value if request.ignore_value and prev else request.value
        lease = prev.lease if request.ignore_lease and prev else request.lease
        kv = KeyValue(
            key=request.key,
            value=value,
            create_revision=prev.create_revision if prev else self.revision,
            mod_revision=self.revision,
            version=prev.version + 1 if prev else 1,
            lease=lease,
        )
        self.batch.add(Event(kv, self.sub), prev)
        self.sub += 1
        return PutResponse(ResponseHeader(self.revision), prev if request.prev_kv else None)

    def delete(self, kvs: Sequence[KeyValue]) -> None:
        """Delete each of ``kvs`` (live versions), in order."""
        for kv in kvs:
            self.batch.add(tombstone(kv.key, self.revision, self.sub), kv)
            self.sub += 1

    def delete_range(self, request: DeleteRangeRequest) -> DeleteRangeResponse:
        deleted = self.batch.range(request.key, request.range_end or None)
        self.delete(deleted)
        return DeleteRangeResponse(self.header, len(deleted), tuple(deleted) if request.prev_kv else ())

    def range(self, request: RangeRequest) -> RangeResponse:
        return _range(self.batch, request, self.header.revision)

    def txn(self, txn: TxnRequest, path: Iterator[bool], nested: bool) -> TxnResponse:
        succeeded = next(path)
        responses = []
        for op in txn.success if succeeded else txn.failure:
            if isinstance(op, PutRequest):
                responses.append(self.put(op))
            elif isinstance(op, DeleteRangeRequest):
                responses.append(self.delete_range(op))
            elif isinstance(op, RangeRequest):
                responses.append(self.range(op))
            else:
                responses.append(self.txn(op, path, nested=True))
        return TxnResponse(None if nested else self.header, succeeded, tuple(responses))

    def finish(self) -> None:
        """The command's revision becomes the store's if it changed anything."""
        if self.sub:
            self.batch.revision = self.revision


def _choose_path(txn: TxnRequest, batch: _Batch, path: list[bool]) -> list[bool]:
    """Every compare's outcome, depth first in execution order, all against
    the state before the txn (etcd's ``compareToPath``)."""
    succeeded = all(_compare_holds(c, batch) for c in txn.compare)
    path.append(succeeded)
    for op in txn.success if succeeded else txn.failure:
        if isinstance(op, TxnRequest):
            _choose_path(op, batch, path)
    return path


def _check_path(txn: TxnRequest, path: Iterator[bool], batch: _Batch) -> None:
    """etcd's checks of the chosen operations before any runs (a put's
    missing key before its unknown lease, as etcd's ``checkRequestPut``)."""
    for op in txn.success if next(path) else txn.failure:
        if isinstance(op, PutRequest):
            _check_put(op, batch)
        elif isinstance(op, RangeRequest):
            check_revision(op.revision, batch.revision, batch.compacted_revision)
        elif isinstance(op, TxnRequest):
            _check_path(op, path, batch)


def _check_put(request: PutRequest, batch: _Batch, lease_first: bool = False) -> None:
    """etcd's checks of a put before it runs: the key exists when its value
    or lease is kept; the lease it names exists.  etcd checks the lease
    first for a put on its own, the key first inside a txn."""
    lease_unknown = bool(request.lease) and not request.ignore_lease and batch.lease(request.lease) is None
    if lease_first and lease_unknown:
        raise LeaseNotFoundError()
    if (request.ignore_value or request.ignore_lease) and batch.get(request.key) is None:
        raise KeyNotFoundError()
    if lease_unknown:
        raise LeaseNotFoundError()


def _apply_lease(batch: _Batch, request: LeaseRequest) -> Result:
    """Apply a lease command to ``batch`` (see the module docstring)."""
    if isinstance(request, LeaseCheckpointRequest):
        for lease_id, remaining in request.checkpoints:
            lease = batch.lease(lease_id)
            if lease is not None and remaining > 0 and lease.remaining_ttl != remaining:
                lease = Lease(lease.id, lease.ttl, remaining)
                batch.set_lease(lease_id, lease)
                batch.lease_events.append(LeaseEvent("checkpoint", lease))
        return LeaseCheckpointResponse(ResponseHeader(batch.revision))
    if isinstance(request, LeaseGrantRequest):
        if request.ttl > MAX_LEASE_TTL:
            return LeaseTTLTooLargeError()
        if request.id <= 0 or batch.lease(request.id) is not None:
            return LeaseExistsError()
        lease = Lease(request.id, request.ttl)
        batch.set_lease(lease.id, lease)
        batch.lease_events.append(LeaseEvent("grant", lease))
        return LeaseGrantResponse(ResponseHeader(batch.revision), lease.id, lease.ttl)
    lease = batch.lease(request.id)
    if lease is None:
        return LeaseNotFoundError()
    if isinstance(request, LeaseKeepAliveRequest):
        if lease.remaining_ttl:
            lease = Lease(lease.id, lease.ttl)
            batch.set_lease(lease.id, lease)
        batch.lease_events.append(LeaseEvent("keepalive", lease))
        return LeaseKeepAliveResponse(ResponseHeader(batch.revision), lease.id, lease.ttl)
    writer = _TxnWriter(batch)
    kvs = [batch.get(key) for key in batch.lease_keys(lease.id)]
    writer.delete([kv for kv in kvs if kv is not None])
    writer.finish()
    batch.set_lease(lease.id, None)
    batch.lease_events.append(LeaseEvent("revoke", lease))
    return LeaseRevokeResponse(writer.header, writer.sub)


def _write(batch: _Batch, command: PutRequest | DeleteRangeRequest | TxnRequest) -> Result:
    """Run a put, a delete or a txn in ``batch`` at the next revision (the
    revision moves only if something changed), or return the error etcd
    would answer, having changed nothing."""
    writer = _TxnWriter(batch)
    if isinstance(command, PutRequest):
        try:
            _check_put(command, batch, lease_first=True)
        except KVError as error:
            return error
        response: ResponseOp = writer.put(command)
    elif isinstance(command, DeleteRangeRequest):
        response = writer.delete_range(command)
    else:
        path = _choose_path(command, batch, [])
        try:
            _check_path(command, iter(path), batch)
        except KVError as error:
            return error
        response = writer.txn(command, iter(path), nested=False)
    writer.finish()
    return response


def _hash_record(kv: KeyValue, deleted: bool) -> bytes:
    return msgpack.packb([kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease, deleted])


class KeyValueStore:
    """etcd's MVCC keyspace over a storage ``Engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.listeners: list[Listener] = []
        """Called with each apply's ``AppliedChanges`` once it is committed."""
        self.command_listeners: list[CommandListener] = []
        """Called with ``(applied index before, index, commands, results)``
        for each apply once it is committed, before ``listeners``: a
        replica that applies the same commands in the same order holds the
        same state and gets the same results
        (``metastore.workers``)."""

    @property
    def revision(self) -> int:
        """The store's current revision."""
        return self.engine.revision

    @property
    def compacted_revision(self) -> int:
        """Reads below this revision are refused (0: never compacted)."""
        return self.engine.compacted_revision

    @property
    def physically_compacted_revision(self) -> int:
        """Versions hidden by a compaction at or below this revision are
        gone from the engine (physical compaction trails the logical one)."""
        return self.engine.physically_compacted_revision

    @property
    def applied_index(self) -> int:
        """The raft index the keyspace reflects."""
        return self.engine.applied_index

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        """``key`` at ``revision`` (0: now), or None; raises
        ``CompactedError``/``FutureRevisionError`` for a revision out of reach."""
        if revision:
            check_revision(revision, self.revision, self.compacted_revision)
        return self.engine.get(key, revision)

    def range(self, request: RangeRequest) -> RangeResponse:
        """Answer ``request`` from the applied state (etcd's Range); raises
        ``CompactedError``/``FutureRevisionError``.  The header revision is
        the store's current one, whatever revision was read."""
        if _one_key_now(request):
            kv = self.engine.get(request.key)
            if kv is None:
                return RangeResponse(ResponseHeader(self.revision))
            return RangeResponse(ResponseHeader(self.revision), (kv,), False, 1)
        check_revision(request.revision, self.revision, self.compacted_revision)
        return _range(_Batch(self.engine), request, self.revision)

    def read(self, request: RangeRequest | TxnRequest) -> RangeResponse | TxnResponse:
        """Answer a range or a read-only txn (``validation.is_read_only``)
        from the applied state, as etcd does without a new revision; raises
        a ``KVError`` as apply would, ``ValueError`` for a txn that writes."""
        if isinstance(request, RangeRequest):
            return self.range(request)
        if not is_read_only(request):
            raise ValueError("only a read-only txn can be served without being applied")
        result = self._apply_one(_Batch(self.engine), request)
        if isinstance(result, KVError):
            raise result
        return result

    def history(self, start_revision: int) -> Iterator[Event]:
        """The retained events from ``start_revision`` on, in revision order;
        raises ``CompactedError`` below the compacted revision."""
        check_revision(0, self.revision, self.compacted_revision)
        if 0 < start_revision < self.compacted_revision:
            raise CompactedError()
        return self.engine.history((start_revision, 0))

    def compact_step(self, limit: int = 1000) -> bool:
        """Do a bounded slice of physical compaction (see ``Engine.compact_step``);
        True when there is none left."""
        return self.engine.compact_step(limit)

    def hash_kv(self, revision: int = 0) -> tuple[int, int]:
        """etcd's HashKV: ``(hash, compact_revision)``, a CRC-32 over the
        keyspace at the compacted revision and every event after it up to
        ``revision`` (0: now).  It depends only on the applied log, not on
        how far physical compaction got, so members at the same revision
        agree.  Raises ``CompactedError``/``FutureRevisionError``."""
        revision = revision or self.revision
        check_revision(revision, self.revision, self.compacted_revision)
        compacted = self.compacted_revision
        crc = 0
        if compacted:
            for kv in self.engine.range(b"", b"\0", compacted):
                crc = zlib.crc32(_hash_record(kv, False), crc)
        for event in self.engine.history((compacted + 1, 0)):
            if event.kv.mod_revision > revision:
                break
            crc = zlib.crc32(_hash_record(event.kv, event.deleted), crc)
        return crc, compacted

    def keyspace_hash(self) -> str:
        """A SHA-256 over every live key and its metadata, in key order: two
        members at the same applied index hold the same keyspace exactly
        when their hashes are equal."""
        digest = hashlib.sha256()
        for kv in self.engine.range(b"", b"\0"):
            digest.update(msgpack.packb([kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease]))
        return digest.hexdigest()

    def apply(
        self,
        index: int,
        commands: Sequence[RequestOp | CompactionRequest | None],
        cluster_state: ClusterState | None = None,
    ) -> list[Result | None]:
        """Apply ``commands`` (None for an entry with no command) as one
        engine batch ending at raft ``index``, with the membership when it
        changed; one result per command (a response, or the ``KVError``
        etcd would answer, in which case the command changed nothing)."""
        batch = _Batch(self.engine)
        previous_revision = self.engine.revision
        previous_index = self.engine.applied_index
        results = [None if c is None else self._apply_one(batch, c) for c in commands]
        self.engine.commit(
            batch.events,
            batch.revision,
            index,
            cluster_state,
            batch.compacted_revision if batch.compaction_changed else None,
            batch.lease_changes(),
        )
        for command_listener in self.command_listeners:
            command_listener(previous_index, index, commands, results)
        if self.listeners and (batch.events or batch.lease_events):
            changes = AppliedChanges(
                previous_revision, batch.revision, tuple(batch.events), tuple(batch.prev_kvs), tuple(batch.lease_events)
            )
            for listener in list(self.listeners):
                listener(changes)
        return results

    def dump(self) -> tuple[StoreState, Iterable[Event]]:
        """The store as it is now: its ``StoreState`` and its retained
        history, which later applies and compaction steps do not change."""
        engine = self.engine
        items = engine.snapshot_items()
        state = StoreState(engine.revision, engine.applied_index, engine.compacted_revision,
                           engine.physically_compacted_revision, engine.cluster_state, tuple(engine.leases()))
        return state, items

    def lease(self, lease_id: int) -> Lease | None:
        """Lease ``lease_id`` as applied, or None."""
        return self.engine.lease(lease_id)

    def leases(self) -> list[Lease]:
        """Every lease as applied, by id."""
        return self.engine.leases()

    def lease_keys(self, lease_id: int) -> list[bytes]:
        """The live keys attached to ``lease_id``, in key order."""
        return self.engine.lease_keys(lease_id)

    def _apply_one(self, batch: _Batch, command: RequestOp | CompactionRequest) -> Result:
        if isinstance(command, (PutRequest, DeleteRangeRequest, TxnRequest)):  # the common case first
            return _write(batch, command)
        if isinstance(command, CompactionRequest):
            return self._compact(batch, command)
        if isinstance(command, (LeaseGrantRequest, LeaseRevokeRequest, LeaseKeepAliveRequest, LeaseCheckpointRequest)):
            return _apply_lease(batch, command)
        try:
            check_revision(command.revision, batch.revision, batch.compacted_revision)
        except KVError as error:
            return error
        return _range(batch, command, batch.revision)

    @staticmethod
    def _compact(batch: _Batch, request: CompactionRequest) -> Result:
        if request.revision <= batch.compacted_revision:
            return CompactedError()
        if request.revision > batch.revision:
            return FutureRevisionError()
        batch.compacted_revision = request.revision
        batch.compaction_changed = True
        return CompactionResponse(ResponseHeader(batch.revision))
