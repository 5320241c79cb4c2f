"""The replicated key-value state machine.

``KeyValueStore.apply`` takes committed commands in log order and turns
them into one batch of changes for the engine, with etcd's revision rules:
the store's revision grows by one for each command that changes something;
a key's ``version`` counts writes since it was created; deleting a key
forgets its history.  Apply is deterministic: no clock, no randomness.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import msgpack

from metastore.kv.commands import (
    Command,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRange,
    Put,
    Txn,
)
from metastore.storage.engine import ClusterState, Engine, KeyValue


@dataclass(frozen=True, slots=True)
class PutResult:
    """A put happened at ``revision``; ``prev`` is the key before it."""

    revision: int
    prev: KeyValue | None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """``deleted`` keys are gone as of ``revision``."""

    revision: int
    deleted: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Whether the compares held, and the results of the operations run."""

    revision: int
    succeeded: bool
    responses: tuple[PutResult | DeleteResult, ...]


Result = PutResult | DeleteResult | TxnResult


class _Batch:
    """Changes of one apply call, readable before they reach the engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.changes: dict[bytes, KeyValue | None] = {}
        self.revision = engine.revision

    def get(self, key: bytes) -> KeyValue | None:
        if key in self.changes:
            return self.changes[key]
        return self.engine.get(key)

    def keys_in(self, key: bytes, range_end: bytes | None) -> list[KeyValue]:
        """Live keys in the range as the batch sees them, in key order."""
        if range_end is None:
            found = self.get(key)
            return [found] if found is not None else []
        live = {kv.key: kv for kv in self.engine.range(key, range_end)}
        for name, kv in self.changes.items():
            if name >= key and (range_end == b"\0" or name < range_end):
                if kv is None:
                    live.pop(name, None)
                else:
                    live[name] = kv
        return [live[name] for name in sorted(live)]


def _compare_holds(compare: Compare, kv: KeyValue | None) -> bool:
    target = compare.target
    if target == CompareTarget.VALUE:
        actual: int | bytes = kv.value if kv else b""
    elif target == CompareTarget.VERSION:
        actual = kv.version if kv else 0
    elif target == CompareTarget.CREATE:
        actual = kv.create_revision if kv else 0
    elif target == CompareTarget.MOD:
        actual = kv.mod_revision if kv else 0
    else:
        actual = kv.lease if kv else 0
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


class KeyValueStore:
    """etcd's keyspace model over a storage ``Engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def revision(self) -> int:
        """The store's current revision."""
        return self.engine.revision

    @property
    def applied_index(self) -> int:
        """The raft index the keyspace reflects."""
        return self.engine.applied_index

    def get(self, key: bytes) -> KeyValue | None:
        """The live key ``key``, or None (from applied state only)."""
        return self.engine.get(key)

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
        commands: Sequence[Command | None],
        cluster_state: ClusterState | None = None,
    ) -> list[Result | None]:
        """Apply ``commands`` (None for an entry with no command) as one
        engine batch ending at raft ``index``, with the membership when it
        changed; one result per command."""
        batch = _Batch(self.engine)
        results = [None if c is None else self._apply_one(batch, c) for c in commands]
        self.engine.commit(batch.changes, batch.revision, index, cluster_state)
        return results

    def _apply_one(self, batch: _Batch, command: Command) -> Result:
        if isinstance(command, Txn):
            held = all(_compare_holds(c, batch.get(c.key)) for c in command.compares)
            ops = command.success if held else command.failure
            return self._write(batch, ops, lambda rev, out: TxnResult(rev, held, out))
        return self._write(batch, (command,), lambda rev, out: out[0])

    def _write(self, batch: _Batch, ops: Iterable[Put | DeleteRange], wrap) -> Result:
        # One command is one revision however many operations it runs, and
        # no revision at all when it changes nothing (etcd's rule).
        revision = batch.revision + 1
        changed = False
        out: list[PutResult | DeleteResult] = []
        for op in ops:
            if isinstance(op, Put):
                prev = batch.get(op.key)
                batch.changes[op.key] = KeyValue(
                    key=op.key,
                    value=op.value,
                    create_revision=prev.create_revision if prev else revision,
                    mod_revision=revision,
                    version=prev.version + 1 if prev else 1,
                    lease=op.lease,
                )
                changed = True
                out.append(PutResult(revision, prev))
            else:
                deleted = tuple(batch.keys_in(op.key, op.range_end))
                for kv in deleted:
                    batch.changes[kv.key] = None
                changed = changed or bool(deleted)
                out.append(DeleteResult(revision, deleted))
        if changed:
            batch.revision = revision
        final = batch.revision
        return wrap(final, tuple(_at_revision(r, final) for r in out))


def _at_revision(result: PutResult | DeleteResult, revision: int) -> PutResult | DeleteResult:
    if result.revision == revision:
        return result
    if isinstance(result, PutResult):
        return PutResult(revision, result.prev)
    return DeleteResult(revision, result.deleted)
