"""Plain data types of the Raft core, shared with storage and transport.

They mirror etcd's ``raftpb`` so a reader can check this code against
etcd's.  Every type is a frozen, slotted dataclass: values, never handles.
``storage/`` and ``transport/`` may import this module and nothing else of
``raft/``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NONE = 0
"""The node id that means "nobody" (no vote, no leader)."""


class EntryType(enum.IntEnum):
    """What an entry's ``data`` holds."""

    EntryNormal = 0
    EntryConfChange = 1


class ConfChangeType(enum.IntEnum):
    """A single-step membership change."""

    ConfChangeAddNode = 0
    ConfChangeRemoveNode = 1
    ConfChangeAddLearnerNode = 2


class MessageType(enum.IntEnum):
    """Raft message kinds, with etcd's names."""

    MsgHup = 0
    MsgBeat = 1
    MsgProp = 2
    MsgApp = 3
    MsgAppResp = 4
    MsgVote = 5
    MsgVoteResp = 6
    MsgSnap = 7
    MsgHeartbeat = 8
    MsgHeartbeatResp = 9
    MsgUnreachable = 10
    MsgSnapStatus = 11
    MsgCheckQuorum = 12
    MsgTransferLeader = 13
    MsgTimeoutNow = 14
    MsgReadIndex = 15
    MsgReadIndexResp = 16
    MsgPreVote = 17
    MsgPreVoteResp = 18


class StateType(enum.IntEnum):
    """The role a node plays."""

    StateFollower = 0
    StateCandidate = 1
    StateLeader = 2
    StatePreCandidate = 3


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry.  ``index`` >= 1; ``term`` >= 1 for real entries."""

    term: int
    index: int
    type: EntryType = EntryType.EntryNormal
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before a message is sent: term, vote, commit."""

    term: int = 0
    vote: int = NONE
    commit: int = 0

    def is_empty(self) -> bool:
        """True for the zero hard state (nothing persisted yet)."""
        return self.term == 0 and self.vote == NONE and self.commit == 0


@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership: voter ids and learner ids (disjoint sets)."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A single-step membership change; ``context`` carries e.g. a peer URL."""

    type: ConfChangeType
    node_id: int
    context: bytes = b""


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    """Where a snapshot stands in the log, and the membership at that point."""

    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot: metadata, plus ``data`` (empty on the wire; the transport
    streams the real data in chunks)."""

    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)
    data: bytes = b""

    def is_empty(self) -> bool:
        """True when this is no snapshot at all (index 0)."""
        return self.metadata.index == 0


@dataclass(frozen=True, slots=True)
class Message:
    """A Raft message between nodes (and from the driver to its node)."""

    type: MessageType
    to: int = NONE
    from_: int = NONE
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
