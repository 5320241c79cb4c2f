"""Commands the state machine applies, and their explicit wire encoding.

A command travels inside a raft entry as a msgpack list that starts with a
format version and the request id, so the node that proposed it can find
the caller waiting on it.  The set mirrors etcd's: Put, DeleteRange, and
Txn (compares, then the success or the failure operations).  The seed REST
API's compare-and-swap is a Txn with one compare.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

import msgpack

FORMAT_VERSION = 1


class CommandError(ValueError):
    """Bytes that do not decode to a valid command."""


class CompareTarget(enum.IntEnum):
    """Which attribute of a key a compare looks at (etcd's names)."""

    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class CompareResult(enum.IntEnum):
    """How a compare relates the key's attribute to the operand."""

    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


@dataclass(frozen=True, slots=True)
class Compare:
    """``attribute(key) <result> operand``; an absent key has version,
    create and mod revision 0, lease 0 and an empty value."""

    target: CompareTarget
    result: CompareResult
    key: bytes
    operand: int | bytes


@dataclass(frozen=True, slots=True)
class Put:
    """Set ``key`` to ``value``."""

    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class DeleteRange:
    """Delete ``key``, or every key in ``[key, range_end)`` when given."""

    key: bytes
    range_end: bytes | None = None


Operation = Union[Put, DeleteRange]


@dataclass(frozen=True, slots=True)
class Txn:
    """If every compare holds, run ``success``; otherwise run ``failure``.
    The whole transaction is one revision."""

    compares: tuple[Compare, ...]
    success: tuple[Operation, ...]
    failure: tuple[Operation, ...] = ()


@dataclass(frozen=True, slots=True)
class PublishMember:
    """Member ``member_id`` serves clients at ``client_url``.  Cluster
    metadata, applied by the node; it changes no key and no revision."""

    member_id: int
    client_url: str


Command = Union[Put, DeleteRange, Txn, PublishMember]

_PUT, _DELETE_RANGE, _TXN, _PUBLISH_MEMBER = 1, 2, 3, 4


def _encode_operation(op: Command) -> list:
    if isinstance(op, Put):
        return [_PUT, op.key, op.value, op.lease]
    if isinstance(op, DeleteRange):
        return [_DELETE_RANGE, op.key, op.range_end]
    if isinstance(op, Txn):
        return [
            _TXN,
            [[int(c.target), int(c.result), c.key, c.operand] for c in op.compares],
            [_encode_operation(o) for o in op.success],
            [_encode_operation(o) for o in op.failure],
        ]
    if isinstance(op, PublishMember):
        return [_PUBLISH_MEMBER, op.member_id, op.client_url]
    raise TypeError(f"not a command: {op!r}")


def encode_command(request_id: bytes, command: Command) -> bytes:
    """The entry data for ``command`` proposed under ``request_id``."""
    return msgpack.packb([FORMAT_VERSION, request_id, _encode_operation(command)])


def _decode_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise CommandError(f"{what} must be bytes")
    return value


def _decode_operation(raw: object, nested: bool = False) -> Command:
    if not isinstance(raw, list) or not raw:
        raise CommandError("operation must be a non-empty list")
    code = raw[0]
    if code == _PUT and len(raw) == 4 and isinstance(raw[3], int):
        return Put(_decode_bytes(raw[1], "key"), _decode_bytes(raw[2], "value"), raw[3])
    if code == _DELETE_RANGE and len(raw) == 3:
        end = None if raw[2] is None else _decode_bytes(raw[2], "range_end")
        return DeleteRange(_decode_bytes(raw[1], "key"), end)
    if code == _TXN and len(raw) == 4 and not nested:
        try:
            compares = tuple(
                Compare(CompareTarget(t), CompareResult(r), _decode_bytes(k, "key"), operand)
                for t, r, k, operand in raw[1]
            )
        except (TypeError, ValueError) as e:
            raise CommandError(f"bad compare: {e}") from None
        return Txn(
            compares,
            tuple(_decode_operation(o, nested=True) for o in raw[2]),
            tuple(_decode_operation(o, nested=True) for o in raw[3]),
        )
    if code == _PUBLISH_MEMBER and len(raw) == 3 and not nested:
        if isinstance(raw[1], int) and isinstance(raw[2], str):
            return PublishMember(raw[1], raw[2])
    raise CommandError(f"unknown or malformed operation {code!r}")


def decode_command(data: bytes) -> tuple[bytes, Command]:
    """``(request_id, command)`` from entry data; raises ``CommandError``."""
    try:
        raw = msgpack.unpackb(data)
    except Exception as e:  # msgpack raises several unrelated types
        raise CommandError(f"undecodable command: {e}") from None
    if not isinstance(raw, list) or len(raw) != 3 or raw[0] != FORMAT_VERSION:
        raise CommandError("unknown command format")
    return _decode_bytes(raw[1], "request id"), _decode_operation(raw[2])
