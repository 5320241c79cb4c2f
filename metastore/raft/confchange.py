"""Membership changes as data: their wire form inside an EntryConfChange
entry (msgpack), and the rules that decide whether one can be applied.

A committed conf change entry is applied by every member at the same log
index against the same membership, so ``validate_conf_change`` (a pure
function of the change and the membership) decides identically everywhere:
an invalid change is applied as a no-op on every member, never half-way.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from metastore.raft.types import ConfChange, ConfChangeType, ConfState

_FORMAT_VERSION = 1

MAX_NODE_ID = (1 << 64) - 1
"""Node ids are etcd's uint64; 0 (``NONE``) means "no node"."""


@dataclass(frozen=True, slots=True)
class ConfChangeRejection:
    """Why a conf change entry cannot be applied; it is applied as a no-op."""

    reason: str


def encode_conf_change(change: ConfChange) -> bytes:
    """Encode ``change`` as versioned msgpack bytes."""
    return msgpack.packb(
        [_FORMAT_VERSION, int(change.type), change.node_id, change.context], use_bin_type=True
    )


def _check_fields(change_type: object, node_id: object, context: object) -> str | None:
    if type(change_type) is not int or change_type not in ConfChangeType._value2member_map_:
        return f"unknown conf change type {change_type!r}"
    if type(node_id) is not int:
        return f"node id {node_id!r} is not an integer"
    if not 0 < node_id <= MAX_NODE_ID:
        return f"node id {node_id} is outside [1, 2**64 - 1]"
    if not isinstance(context, bytes):
        return "conf change context is not bytes"
    return None


def decode_conf_change(data: bytes) -> ConfChange:
    """Decode bytes made by ``encode_conf_change``; ValueError if malformed
    (undecodable, another format version, or a field of the wrong type or
    out of range)."""
    try:
        fields = msgpack.unpackb(data, raw=False)
        version, change_type, node_id, context = fields
    except Exception as error:  # msgpack raises several unrelated types
        raise ValueError(f"malformed conf change: {error}") from None
    if type(version) is not int or version != _FORMAT_VERSION:
        raise ValueError(f"unknown conf change format version {version!r}")
    problem = _check_fields(change_type, node_id, context)
    if problem is not None:
        raise ValueError(f"malformed conf change fields: {problem}")
    return ConfChange(type=ConfChangeType(change_type), node_id=node_id, context=context)


def validate_conf_change(change: ConfChange, conf_state: ConfState) -> ConfChangeRejection | None:
    """Why ``change`` cannot be applied to the membership ``conf_state``, or
    None when it can.

    The rules (etcd's raft rules plus etcd's membership checks, for
    single-step changes): the type is known and the node id in
    [1, 2**64 - 1]; ``ConfChangeAddNode`` adds a new voter or promotes a
    learner, never re-adds a voter; ``ConfChangeAddLearnerNode`` adds a new
    learner, never re-adds one and never demotes a voter (remove it first);
    ``ConfChangeRemoveNode`` removes a member, never a non-member and never
    the last voter.
    """
    problem = _check_fields(
        int(change.type) if isinstance(change.type, ConfChangeType) else change.type,
        change.node_id,
        change.context,
    )
    if problem is not None:
        return ConfChangeRejection(problem)
    node_id = change.node_id
    voter = node_id in conf_state.voters
    learner = node_id in conf_state.learners
    if change.type == ConfChangeType.ConfChangeAddNode:
        if voter:
            return ConfChangeRejection(f"node {node_id} is already a voter")
    elif change.type == ConfChangeType.ConfChangeAddLearnerNode:
        if learner:
            return ConfChangeRejection(f"node {node_id} is already a learner")
        if voter:
            return ConfChangeRejection(
                f"node {node_id} is a voter: demoting a voter to learner is not supported"
            )
    elif change.type == ConfChangeType.ConfChangeRemoveNode:
        if not (voter or learner):
            return ConfChangeRejection(f"node {node_id} is not a member")
        if voter and len(conf_state.voters) == 1:
            return ConfChangeRejection(f"node {node_id} is the last voter")
    return None


def apply_to_conf_state(change: ConfChange, conf_state: ConfState) -> ConfState:
    """The membership after applying ``change``, which
    ``validate_conf_change`` accepted, to ``conf_state``."""
    voters = set(conf_state.voters)
    learners = set(conf_state.learners)
    node_id = change.node_id
    voters.discard(node_id)
    learners.discard(node_id)
    if change.type == ConfChangeType.ConfChangeAddNode:
        voters.add(node_id)
    elif change.type == ConfChangeType.ConfChangeAddLearnerNode:
        learners.add(node_id)
    return ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))


def decode_and_validate_conf_change(data: bytes, conf_state: ConfState) -> ConfChange | ConfChangeRejection:
    """The change carried by an EntryConfChange entry's ``data`` if it can
    be applied to ``conf_state``, else a ``ConfChangeRejection`` saying why
    (malformed bytes included).  Pure and total: never raises."""
    try:
        change = decode_conf_change(data)
    except ValueError as error:
        return ConfChangeRejection(str(error))
    rejection = validate_conf_change(change, conf_state)
    return change if rejection is None else rejection
