"""Commands the state machine applies, and their explicit wire encoding.

A command travels inside a raft entry as a msgpack list
``[format version, request id, operation]``; the request id lets the node
that proposed it find the caller waiting on it.  The commands are etcd's
KV requests (``metastore.kv.messages``) plus the member attribute updates
``PublishMember`` and ``UpdateMember`` (format 2 only, code 7), and
``SetAlarm`` (code 8).

Format 2 (written now) encodes every field of the requests, ranges and
nested txns included.  Format 1 (the seed's, still read from old WAL
entries and snapshots of the log) had Put ``[1, key, value, lease]``,
DeleteRange ``[2, key, range_end or nil]``, Txn ``[3, compares, success,
failure]`` with compares ``[target, result, key, operand]`` and no nesting,
and PublishMember ``[4, member_id, client_url]`` (format 2 adds the gRPC
URL, when there is one: ``[4, member_id, client_url, grpc_url]``).

The lease commands are format 2 too, told apart by their codes:
LeaseGrant ``[7, ttl, id]``, LeaseRevoke ``[8, id]``, LeaseKeepAlive
``[9, id]`` and LeaseCheckpoint ``[10, [[id, remaining_ttl], ...]]``; none
may be nested in a txn.

The auth commands (``metastore.auth.messages``, format 2) share code 13:
``[13, kind, *fields]``, ``kind`` the command's position in
``AUTH_COMMANDS`` and the fields its own in order (a permission as
``[type, key, range_end]``); passwords travel hashed.

A client write checked while auth is enabled carries who it was checked
for and at which auth revision (``AuthInfo``) as a fifth element
``[user, auth revision]`` (``proposed_at`` then nil when there is none); a
proposal made while auth is disabled has no fifth element, so the hot
path pays nothing for auth it does not use.  Entries written before this
element existed (3 or 4 elements) decode as unchecked, as they were.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

import msgpack

from metastore.auth.messages import AUTH_COMMANDS, AuthCommand, AuthInfo, Permission, PermissionType

from metastore.kv.messages import (  # noqa: F401  (re-exported for callers of the seed's names)
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRange,
    DeleteRangeRequest,
    LeaseCheckpointRequest,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseRequest,
    LeaseRevokeRequest,
    Put,
    PutRequest,
    RangeRequest,
    RequestOp,
    SortOrder,
    SortTarget,
    Txn,
    TxnRequest,
)

FORMAT_VERSION = 2
"""The command format this version writes; ``decode_command`` reads 1 and 2."""


class CommandError(ValueError):
    """Bytes that do not decode to a valid command."""


@dataclass(frozen=True, slots=True)
class PublishMember:
    """Member ``member_id`` serves the HTTP APIs at ``client_url`` and, when
    ``grpc_url`` is not empty, etcd's gRPC API there.  Cluster metadata,
    applied by the node; it changes no key and no revision."""

    member_id: int
    client_url: str
    grpc_url: str = ""


@dataclass(frozen=True, slots=True)
class UpdateMember:
    """Member ``member_id`` now listens for peers at ``peer_url`` (etcd's
    MemberUpdate).  Cluster metadata like ``PublishMember``: raft needs no
    configuration change for it."""

    member_id: int
    peer_url: str


class AlarmType(enum.IntEnum):
    """etcd's ``AlarmType``."""

    NONE = 0
    NOSPACE = 1
    CORRUPT = 2


@dataclass(frozen=True, slots=True)
class SetAlarm:
    """Raise (``active``) or disarm ``alarm`` for ``member_id`` (etcd's
    AlarmRequest ACTIVATE / DEACTIVATE).  Replicated cluster metadata: every
    member refuses writes while NOSPACE is raised."""

    member_id: int
    alarm: AlarmType
    active: bool


Command = Union[
    PutRequest, DeleteRangeRequest, TxnRequest, RangeRequest, CompactionRequest, PublishMember, UpdateMember, SetAlarm,
    LeaseRequest, AuthCommand,
]

_PUT, _DELETE_RANGE, _TXN, _PUBLISH_MEMBER, _RANGE, _COMPACTION, _UPDATE_MEMBER, _SET_ALARM = 1, 2, 3, 4, 5, 6, 7, 8
_LEASE_GRANT, _LEASE_REVOKE, _LEASE_KEEPALIVE, _LEASE_CHECKPOINT = 9, 10, 11, 12
_AUTH = 13


def _encode_operation(op: Command) -> list:
    if isinstance(op, PutRequest):
        return [_PUT, op.key, op.value, op.lease, op.prev_kv, op.ignore_value, op.ignore_lease]
    if isinstance(op, DeleteRangeRequest):
        return [_DELETE_RANGE, op.key, op.range_end or b"", op.prev_kv]
    if isinstance(op, TxnRequest):
        return [
            _TXN,
            [[int(c.target), int(c.result), c.key, c.operand, c.range_end] for c in op.compare],
            [_encode_operation(o) for o in op.success],
            [_encode_operation(o) for o in op.failure],
        ]
    if isinstance(op, RangeRequest):
        return [
            _RANGE, op.key, op.range_end, op.limit, op.revision, int(op.sort_order), int(op.sort_target),
            op.serializable, op.keys_only, op.count_only,
            op.min_mod_revision, op.max_mod_revision, op.min_create_revision, op.max_create_revision,
        ]  # fmt: skip
    if isinstance(op, CompactionRequest):
        return [_COMPACTION, op.revision, op.physical]
    if isinstance(op, PublishMember):
        grpc = [op.grpc_url] if op.grpc_url else []
        return [_PUBLISH_MEMBER, op.member_id, op.client_url, *grpc]
    if isinstance(op, UpdateMember):
        return [_UPDATE_MEMBER, op.member_id, op.peer_url]
    if isinstance(op, SetAlarm):
        return [_SET_ALARM, op.member_id, int(op.alarm), op.active]
    if isinstance(op, LeaseGrantRequest):
        return [_LEASE_GRANT, op.ttl, op.id]
    if isinstance(op, LeaseRevokeRequest):
        return [_LEASE_REVOKE, op.id]
    if isinstance(op, LeaseKeepAliveRequest):
        return [_LEASE_KEEPALIVE, op.id]
    if isinstance(op, LeaseCheckpointRequest):
        return [_LEASE_CHECKPOINT, [list(pair) for pair in op.checkpoints]]
    if type(op) in AUTH_COMMANDS:
        fields = [[int(f.perm_type), f.key, f.range_end] if isinstance(f, Permission) else f
                  for f in (getattr(op, name) for name in op.__slots__)]
        return [_AUTH, AUTH_COMMANDS.index(type(op)), *fields]
    raise TypeError(f"not a command: {op!r}")


def encode_command(
    request_id: bytes, command: Command, proposed_at: int | None = None, auth: AuthInfo | None = None
) -> bytes:
    """The entry data for ``command`` proposed under ``request_id``;
    ``proposed_at`` is the commit index the proposer knew when it first
    proposed it (every copy of one request carries the same), so the state
    machine can tell whether it still remembers an earlier copy; ``auth``
    (None while auth is disabled) who it was checked for, and when."""
    fields = [FORMAT_VERSION, request_id, _encode_operation(command)]
    if auth is not None:
        fields += [proposed_at, [auth.user, auth.revision]]
    elif proposed_at is not None:
        fields.append(proposed_at)
    return msgpack.packb(fields)


def _decode_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise CommandError(f"{what} must be bytes")
    return value


_INT64 = range(-(1 << 63), 1 << 63)


def _ints(values: list, what: str) -> list:
    for value in values:
        if type(value) not in (int, bool) or value not in _INT64:
            raise CommandError(f"{what} must be int64 integers or booleans")
    return values


def _decode_compare(raw: object, version: int) -> Compare:
    try:
        if version == 1:
            target, result, key, operand = raw
            end = b""
        else:
            target, result, key, operand, end = raw
        if not isinstance(operand, bytes):
            _ints([operand], "compare operand")
        return Compare(CompareTarget(target), CompareResult(result), _decode_bytes(key, "key"), operand, _decode_bytes(end, "range_end"))
    except (TypeError, ValueError) as e:
        raise CommandError(f"bad compare: {e}") from None


def _decode_operation(raw: object, version: int, nested: bool = False) -> Command:
    if not isinstance(raw, list) or not raw:
        raise CommandError("operation must be a non-empty list")
    code, fields = raw[0], raw[1:]
    if code == _PUT and version == 1 and len(fields) == 3 and type(fields[2]) is int and fields[2] in _INT64:
        return PutRequest(_decode_bytes(fields[0], "key"), _decode_bytes(fields[1], "value"), fields[2])
    if code == _PUT and version == 2 and len(fields) == 6:
        key, value, lease, prev_kv, ignore_value, ignore_lease = fields
        _ints([lease, prev_kv, ignore_value, ignore_lease], "put fields")
        return PutRequest(_decode_bytes(key, "key"), _decode_bytes(value, "value"), lease, bool(prev_kv), bool(ignore_value), bool(ignore_lease))
    if code == _DELETE_RANGE and version == 1 and len(fields) == 2:
        end = b"" if fields[1] is None else _decode_bytes(fields[1], "range_end")
        return DeleteRangeRequest(_decode_bytes(fields[0], "key"), end)
    if code == _DELETE_RANGE and version == 2 and len(fields) == 3:
        return DeleteRangeRequest(_decode_bytes(fields[0], "key"), _decode_bytes(fields[1], "range_end"), bool(fields[2]))
    if code == _TXN and len(fields) == 3 and not (nested and version == 1):
        if not all(isinstance(f, list) for f in fields):
            raise CommandError("txn parts must be lists")
        return TxnRequest(
            tuple(_decode_compare(c, version) for c in fields[0]),
            tuple(_decode_operation(o, version, nested=True) for o in fields[1]),
            tuple(_decode_operation(o, version, nested=True) for o in fields[2]),
        )
    if code == _RANGE and version == 2 and len(fields) == 13:
        key, end, *numbers = fields
        _ints(numbers, "range fields")
        limit, revision, order, target, serializable, keys_only, count_only, *filters = numbers
        try:
            return RangeRequest(
                _decode_bytes(key, "key"), _decode_bytes(end, "range_end"), limit, revision,
                SortOrder(order), SortTarget(target), bool(serializable), bool(keys_only), bool(count_only), *filters,
            )  # fmt: skip
        except ValueError as e:
            raise CommandError(f"bad range: {e}") from None
    if code == _COMPACTION and version == 2 and len(fields) == 2 and not nested:
        _ints(fields, "compaction fields")
        return CompactionRequest(fields[0], bool(fields[1]))
    if version == 2 and not nested and code in (_LEASE_GRANT, _LEASE_REVOKE, _LEASE_KEEPALIVE, _LEASE_CHECKPOINT):
        return _decode_lease(code, fields)
    if code == _AUTH and version == 2 and not nested:
        return _decode_auth(fields)
    if code == _PUBLISH_MEMBER and version == 2 and len(fields) == 3 and not nested:
        if isinstance(fields[0], int) and isinstance(fields[1], str) and isinstance(fields[2], str):
            return PublishMember(*fields)
    if code in (_PUBLISH_MEMBER, _UPDATE_MEMBER) and len(fields) == 2 and not nested:
        if isinstance(fields[0], int) and isinstance(fields[1], str):
            return (PublishMember if code == _PUBLISH_MEMBER else UpdateMember)(fields[0], fields[1])
    if code == _SET_ALARM and version == 2 and len(fields) == 3 and not nested:
        _ints(fields, "alarm fields")
        try:
            return SetAlarm(fields[0], AlarmType(fields[1]), bool(fields[2]))
        except ValueError as e:
            raise CommandError(f"bad alarm: {e}") from None
    raise CommandError(f"unknown or malformed operation {code!r}")


def _decode_lease(code: int, fields: list) -> LeaseRequest:
    if code == _LEASE_GRANT and len(fields) == 2 and all(type(f) is int for f in fields):
        return LeaseGrantRequest(fields[0], fields[1])
    if code in (_LEASE_REVOKE, _LEASE_KEEPALIVE) and len(fields) == 1 and type(fields[0]) is int:
        return (LeaseRevokeRequest if code == _LEASE_REVOKE else LeaseKeepAliveRequest)(fields[0])
    if code == _LEASE_CHECKPOINT and len(fields) == 1 and isinstance(fields[0], list):
        pairs = fields[0]
        if all(isinstance(p, list) and len(p) == 2 and all(type(n) is int for n in p) for p in pairs):
            return LeaseCheckpointRequest(tuple((p[0], p[1]) for p in pairs))
    raise CommandError(f"malformed lease operation {code!r}")


def _decode_auth(fields: list) -> AuthCommand:
    if not fields or type(fields[0]) is not int or not 0 <= fields[0] < len(AUTH_COMMANDS):
        raise CommandError("malformed auth operation")
    kind = AUTH_COMMANDS[fields[0]]
    values = fields[1:]
    if len(values) != len(kind.__slots__):
        raise CommandError(f"malformed auth operation {kind.__name__}")
    decoded = []
    for value in values:
        if isinstance(value, list):
            try:
                perm_type, key, end = value
                value = Permission(PermissionType(perm_type), _decode_bytes(key, "key"), _decode_bytes(end, "range_end"))
            except (TypeError, ValueError) as e:
                raise CommandError(f"bad permission: {e}") from None
        elif not isinstance(value, (str, bytes, bool)):
            raise CommandError(f"malformed auth operation {kind.__name__}")
        decoded.append(value)
    return kind(*decoded)


def decode_command(data: bytes) -> tuple[bytes, Command]:
    """``(request_id, command)`` from entry data of format 1 or 2; raises
    ``CommandError``."""
    request_id, command, _, _ = decode_proposal(data)
    return request_id, command


def decode_proposal(data: bytes) -> tuple[bytes, Command, int | None, AuthInfo | None]:
    """``(request_id, command, proposed_at, auth)`` from entry data
    (``proposed_at`` and ``auth`` None when the entry carries none); raises
    ``CommandError``."""
    try:
        raw = msgpack.unpackb(data)
    except Exception as e:  # msgpack raises several unrelated types
        raise CommandError(f"undecodable command: {e}") from None
    if not isinstance(raw, list) or len(raw) not in (3, 4, 5) or raw[0] not in (1, 2):
        raise CommandError("unknown command format")
    proposed_at = raw[3] if len(raw) >= 4 else None
    if proposed_at is not None and (type(proposed_at) is not int or proposed_at not in _INT64):
        raise CommandError("proposed_at must be an int64 integer")
    auth = _decode_auth_info(raw[4]) if len(raw) == 5 else None
    return _decode_bytes(raw[1], "request id"), _decode_operation(raw[2], raw[0]), proposed_at, auth


def _decode_auth_info(raw: object) -> AuthInfo:
    if not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[0], str):
        raise CommandError("auth must be [user, auth revision]")
    if type(raw[1]) is not int or raw[1] not in _INT64:
        raise CommandError("the auth revision must be an int64 integer")
    return AuthInfo(raw[0], raw[1])
