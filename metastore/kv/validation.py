"""etcd's checks of a KV request before it is proposed.

An API calls ``check_request`` on every request it accepts: a request that
fails gets the ``KVError`` etcd would answer and is never proposed.  The
checks need no state (what needs the keyspace, such as ``ignore_value`` on
an absent key, is decided at apply time by ``KeyValueStore``).
"""

from __future__ import annotations

from metastore.kv.errors import (
    DuplicateKeyError,
    EmptyKeyError,
    LeaseProvidedError,
    TooManyOpsError,
    ValueProvidedError,
)
from metastore.kv.messages import (
    ALL_KEYS,
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    TxnRequest,
)

DEFAULT_MAX_TXN_OPS = 128
"""etcd's ``--max-txn-ops`` default."""


def check_request(request: RequestOp, max_txn_ops: int = DEFAULT_MAX_TXN_OPS) -> None:
    """Raise the ``KVError`` etcd answers ``request`` with, if any: an empty
    key, ``ignore_value``/``ignore_lease`` with a value/lease, a txn with
    more than ``max_txn_ops`` compares or operations in a branch, or a txn
    that writes one key twice in a branch."""
    _check_op(request, max_txn_ops)
    if isinstance(request, TxnRequest):
        for branch in (request.success, request.failure):
            _written(branch)
            _check_reads_of_deleted_keys(branch)


def _check_op(request: RequestOp, max_txn_ops: int) -> None:
    if isinstance(request, TxnRequest):
        _check_txn(request, max_txn_ops)
        return
    if not request.key:
        raise EmptyKeyError()
    if isinstance(request, PutRequest):
        if request.ignore_value and request.value:
            raise ValueProvidedError()
        if request.ignore_lease and request.lease:
            raise LeaseProvidedError()


def _check_txn(txn: TxnRequest, max_txn_ops: int) -> None:
    ops = max(len(txn.compare), len(txn.success), len(txn.failure))
    if ops > max_txn_ops:
        raise TooManyOpsError()
    for compare in txn.compare:
        if not compare.key:
            raise EmptyKeyError()
    for op in txn.success + txn.failure:
        _check_op(op, max_txn_ops - ops if isinstance(op, TxnRequest) else max_txn_ops)


class _Deletes:
    """The key ranges a branch deletes, asked whether a key falls in one."""

    def __init__(self) -> None:
        self.ranges: list[tuple[bytes, bytes]] = []

    def add(self, request: DeleteRangeRequest) -> None:
        # etcd checks a delete as the interval [key, range_end): one ending
        # at "\0" (every key from ``key`` on) is empty there, so it never
        # conflicts with a put.
        if request.range_end != ALL_KEYS:
            self.ranges.append((request.key, request.range_end))

    def covers(self, key: bytes) -> bool:
        for start, end in self.ranges:
            if not end:
                if key == start:
                    return True
            elif start <= key < end:
                return True
        return False


def _written(ops: tuple[RequestOp, ...]) -> tuple[set[bytes], _Deletes]:
    """The keys ``ops`` put and the ranges they delete, nested txns
    included; raises ``DuplicateKeyError`` where etcd does: a key put twice
    or put and deleted in one branch (a txn's two branches may put the same
    key, as only one of them runs)."""
    deletes = _Deletes()
    for op in ops:
        if isinstance(op, DeleteRangeRequest):
            deletes.add(op)
    puts: set[bytes] = set()
    for op in ops:
        if not isinstance(op, TxnRequest):
            continue
        then_puts, then_deletes = _written(op.success)
        else_puts, else_deletes = _written(op.failure)
        for key in then_puts:
            if key in puts or deletes.covers(key):
                raise DuplicateKeyError()
            puts.add(key)
        for key in else_puts:
            if (key in puts and key not in then_puts) or deletes.covers(key):
                raise DuplicateKeyError()
            puts.add(key)
        deletes.ranges += then_deletes.ranges + else_deletes.ranges
    for op in ops:
        if isinstance(op, PutRequest):
            if op.key in puts or deletes.covers(op.key):
                raise DuplicateKeyError()
            puts.add(op.key)
    return puts, deletes


def _flattened(ops: tuple[RequestOp, ...]) -> list[RequestOp]:
    """``ops`` with every nested txn's operations (both branches) in place."""
    found: list[RequestOp] = []
    for op in ops:
        if isinstance(op, TxnRequest):
            found += _flattened(op.success) + _flattened(op.failure)
        else:
            found.append(op)
    return found


def _check_reads_of_deleted_keys(ops: tuple[RequestOp, ...]) -> None:
    """Refuse a put with ``ignore_value`` or ``ignore_lease`` whose key a
    delete ending at "\\0" in the same branch covers: etcd 3.4.23 accepts
    such a txn and then panics applying it; MetaStore refuses it as the
    duplicate it is."""
    ops = _flattened(ops)
    starts = [op.key for op in ops if isinstance(op, DeleteRangeRequest) and op.range_end == ALL_KEYS]
    for op in ops:
        if isinstance(op, PutRequest) and (op.ignore_value or op.ignore_lease):
            if any(op.key >= start for start in starts):
                raise DuplicateKeyError()


def is_read_only(request: RequestOp) -> bool:
    """Whether ``request`` only reads (a range, or a txn of ranges only):
    etcd serves such a txn without a new revision."""
    if isinstance(request, RangeRequest):
        return True
    if isinstance(request, TxnRequest):
        return all(is_read_only(op) for op in request.success + request.failure)
    return False


def adds_data(request: object) -> bool:
    """Whether ``request`` may add data: a put, or a txn holding one in
    either branch at any depth (what etcd refuses while NOSPACE is raised;
    deletes, ranges and compactions go on)."""
    if isinstance(request, PutRequest):
        return True
    if isinstance(request, TxnRequest):
        return any(adds_data(op) for op in request.success + request.failure)
    return False
