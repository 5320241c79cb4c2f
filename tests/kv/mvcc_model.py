"""A reference model of etcd's MVCC keyspace, as plain as possible.

It keeps the whole keyspace of every revision as a dict (copied per write),
so "what did a range at revision R answer" is a lookup, not an index walk.
It shares no code with ``metastore.kv.store`` beyond the message types, so
comparing the two finds mistakes in either.
"""

from __future__ import annotations

from metastore.kv.errors import CompactedError, FutureRevisionError, KeyNotFoundError
from metastore.kv.messages import (
    CompactionRequest,
    CompactionResponse,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    ResponseHeader,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)
from metastore.storage.engine import KeyValue


def in_range(name: bytes, key: bytes, end: bytes) -> bool:
    """Whether ``name`` is selected by ``key``/``range_end`` (etcd's rules)."""
    if not end:
        return name == key
    if end == b"\0":
        return name >= key
    return key <= name < end


class MVCCModel:
    """etcd's KV semantics over a list of whole-keyspace states."""

    def __init__(self) -> None:
        self.states: dict[int, dict[bytes, KeyValue]] = {1: {}}
        self.revision = 1
        self.compacted = 0

    def check(self, revision: int) -> None:
        """Raise etcd's error for reading at ``revision``."""
        if revision > self.revision:
            raise FutureRevisionError()
        if 0 < revision < self.compacted:
            raise CompactedError()

    def range(self, request: RangeRequest, state=None, header=None) -> RangeResponse:
        """etcd's range, answered from a whole state."""
        at = request.revision or self.revision
        if state is None or request.revision:
            state = self.states[at]
        found = sorted((kv for name, kv in state.items() if in_range(name, request.key, request.range_end)), key=lambda kv: kv.key)
        count = len(found)
        header = ResponseHeader(self.revision if header is None else header)
        if request.count_only:
            return RangeResponse(header, (), False, count)
        unsorted_limit = request.sort_order == SortOrder.NONE and not (
            request.min_mod_revision or request.max_mod_revision or request.min_create_revision or request.max_create_revision
        )
        if unsorted_limit and request.limit:
            found = found[: request.limit + 1]
        found = [
            kv
            for kv in found
            if not (request.max_mod_revision and kv.mod_revision > request.max_mod_revision)
            and not (request.min_mod_revision and kv.mod_revision < request.min_mod_revision)
            and not (request.max_create_revision and kv.create_revision > request.max_create_revision)
            and not (request.min_create_revision and kv.create_revision < request.min_create_revision)
        ]
        order = request.sort_order
        if order == SortOrder.NONE and request.sort_target != SortTarget.KEY:
            order = SortOrder.ASCEND
        attribute = {
            SortTarget.KEY: "key",
            SortTarget.VERSION: "version",
            SortTarget.CREATE: "create_revision",
            SortTarget.MOD: "mod_revision",
            SortTarget.VALUE: "value",
        }[request.sort_target]
        if order == SortOrder.ASCEND:
            found = sorted(found, key=lambda kv: (getattr(kv, attribute), kv.key))
        elif order == SortOrder.DESCEND:
            groups: dict = {}
            for kv in found:
                groups.setdefault(getattr(kv, attribute), []).append(kv)
            found = [kv for value in sorted(groups, reverse=True) for kv in groups[value]]
        more = bool(request.limit) and len(found) > request.limit
        if request.limit:
            found = found[: request.limit]
        if request.keys_only:
            found = [KeyValue(kv.key, b"", kv.create_revision, kv.mod_revision, kv.version, kv.lease) for kv in found]
        return RangeResponse(header, tuple(found), more, count)

    def apply(self, request):
        """The response etcd gives to a write (or the error it raises)."""
        if isinstance(request, CompactionRequest):
            if request.revision <= self.compacted:
                raise CompactedError()
            if request.revision > self.revision:
                raise FutureRevisionError()
            self.compacted = request.revision
            return CompactionResponse(ResponseHeader(self.revision))
        before = self.states[self.revision]
        if isinstance(request, TxnRequest):
            path = self._path(request, before)
            self._precheck(request, iter(path), before)
        elif isinstance(request, PutRequest) and (request.ignore_value or request.ignore_lease):
            if request.key not in before:
                raise KeyNotFoundError()
        work = dict(before)
        changed = [False]
        new = self.revision + 1

        def header() -> ResponseHeader:
            return ResponseHeader(new if changed[0] else self.revision)

        def run(op, path=None, nested=False):
            if isinstance(op, PutRequest):
                prev = work.get(op.key)
                value = prev.value if op.ignore_value else op.value
                lease = prev.lease if op.ignore_lease else op.lease
                work[op.key] = KeyValue(op.key, value, prev.create_revision if prev else new, new, prev.version + 1 if prev else 1, lease)
                changed[0] = True
                return PutResponse(header(), prev if op.prev_kv else None)
            if isinstance(op, DeleteRangeRequest):
                gone = sorted((kv for name, kv in work.items() if in_range(name, op.key, op.range_end)), key=lambda kv: kv.key)
                for kv in gone:
                    del work[kv.key]
                changed[0] = changed[0] or bool(gone)
                return DeleteRangeResponse(header(), len(gone), tuple(gone) if op.prev_kv else ())
            if isinstance(op, RangeRequest):
                return self.range(op, None if op.revision else work, header().revision)
            succeeded = next(path)
            responses = tuple(run(o, path, True) for o in (op.success if succeeded else op.failure))
            return TxnResponse(None if nested else header(), succeeded, responses)

        if isinstance(request, TxnRequest):
            response = run(request, iter(path))
        else:
            response = run(request)
        if changed[0]:
            self.revision = new
            self.states[new] = work
        return response

    def _path(self, txn: TxnRequest, state: dict, path=None) -> list[bool]:
        path = [] if path is None else path
        held = all(self._holds(c, state) for c in txn.compare)
        path.append(held)
        for op in txn.success if held else txn.failure:
            if isinstance(op, TxnRequest):
                self._path(op, state, path)
        return path

    def _precheck(self, txn: TxnRequest, path, state: dict) -> None:
        for op in txn.success if next(path) else txn.failure:
            if isinstance(op, PutRequest) and (op.ignore_value or op.ignore_lease) and op.key not in state:
                raise KeyNotFoundError()
            if isinstance(op, RangeRequest):
                self.check(op.revision)
            if isinstance(op, TxnRequest):
                self._precheck(op, path, state)

    @staticmethod
    def _holds(compare, state: dict) -> bool:
        found = [kv for name, kv in state.items() if in_range(name, compare.key, compare.range_end)]
        if not found:
            if compare.target == CompareTarget.VALUE:
                return False
            found = [KeyValue(compare.key, b"", 0, 0, 0, 0)]
        for kv in found:
            actual = {
                CompareTarget.VALUE: kv.value,
                CompareTarget.VERSION: kv.version,
                CompareTarget.CREATE: kv.create_revision,
                CompareTarget.MOD: kv.mod_revision,
                CompareTarget.LEASE: kv.lease,
            }[compare.target]
            operand = compare.operand
            if type(actual) is not type(operand):
                return False
            ok = {
                CompareResult.EQUAL: actual == operand,
                CompareResult.NOT_EQUAL: actual != operand,
                CompareResult.GREATER: actual > operand,
                CompareResult.LESS: actual < operand,
            }[compare.result]
            if not ok:
                return False
        return True
