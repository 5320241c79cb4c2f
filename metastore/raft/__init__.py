"""The Raft consensus algorithm as a pure, deterministic state machine.

Nothing under this package does I/O, reads a clock or uses global
randomness; the driver in ``metastore.node`` does all of that through
``RawNode`` (see ``metastore.raft.rawnode`` for the driver's cycle).
"""

from metastore.raft.confchange import (
    MAX_NODE_ID,
    ConfChangeRejection,
    decode_and_validate_conf_change,
    decode_conf_change,
    encode_conf_change,
    validate_conf_change,
)
from metastore.raft.errors import (
    CompactedError,
    InvalidMessage,
    ProposalDropped,
    RaftError,
    SnapshotOutOfDateError,
    SnapshotTemporarilyUnavailable,
    StorageError,
    UnavailableError,
)
from metastore.raft.progress import ProgressState
from metastore.raft.rawnode import (
    LOCAL_MESSAGE_TYPES,
    MESSAGES_SENT_BEFORE_PERSIST,
    Config,
    PeerProgress,
    RawNode,
    Ready,
    ReadState,
    SoftState,
    Status,
)
from metastore.raft.storage import MemoryStorage, Storage
from metastore.raft.types import *  # noqa: F401,F403 - re-export the shared data types
from metastore.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
    StateType,
)

__all__ = [
    "NONE",
    "CompactedError",
    "Config",
    "ConfChange",
    "ConfChangeRejection",
    "ConfChangeType",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "InvalidMessage",
    "LOCAL_MESSAGE_TYPES",
    "MAX_NODE_ID",
    "MESSAGES_SENT_BEFORE_PERSIST",
    "MemoryStorage",
    "Message",
    "MessageType",
    "PeerProgress",
    "ProgressState",
    "ProposalDropped",
    "RaftError",
    "RawNode",
    "ReadState",
    "Ready",
    "Snapshot",
    "SnapshotMetadata",
    "SnapshotOutOfDateError",
    "SnapshotTemporarilyUnavailable",
    "SoftState",
    "StateType",
    "Status",
    "Storage",
    "StorageError",
    "UnavailableError",
    "decode_and_validate_conf_change",
    "decode_conf_change",
    "encode_conf_change",
    "validate_conf_change",
]
