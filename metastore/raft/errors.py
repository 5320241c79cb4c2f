"""Errors the Raft core raises for expected outcomes.

A broken invariant is not an error of this module: it raises
``AssertionError`` at once, because continuing could lose data.
"""

from __future__ import annotations


class RaftError(Exception):
    """Base class of every expected failure the Raft core reports."""


class ProposalDropped(RaftError):
    """A proposal (or leader-only request) was refused and will not commit.

    ``reason`` says why: no leader, a leader transfer in progress, this node
    is not a member, or a membership change is already pending.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidMessage(RaftError, ValueError):
    """A message from the network that no peer may send (a local-only type,
    or no sender); the driver should drop it (and maybe the connection)."""


class StorageError(RaftError):
    """Base class of the typed errors a ``Storage`` raises."""


class CompactedError(StorageError):
    """The requested index lies before the storage's first index."""


class UnavailableError(StorageError):
    """The requested index is not (yet) in the storage."""


class SnapshotTemporarilyUnavailable(UnavailableError):
    """Storage cannot produce a snapshot right now; the leader retries later."""


class SnapshotOutOfDateError(StorageError):
    """A snapshot older than the one storage already holds was offered."""
