"""Errors raised by the write-ahead log.

Every WAL error derives from ``WALError`` so a caller can stop the node on
any of them with one ``except``; the subclasses say what went wrong.
"""

from __future__ import annotations


class WALError(Exception):
    """Base class: the WAL cannot be used as asked."""


class WALCorruptionError(WALError):
    """Replay found damage that is not a torn tail of the last segment.

    ``path`` and ``offset`` locate the damaged record (its first byte);
    ``reason`` says what is wrong with it.  The node must not start: a human
    decides what to do with the file.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"WAL corrupt: {path} at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class WALLockedError(WALError):
    """Another open WAL (in this or another process) holds the directory's lock."""


class WALFailedError(WALError):
    """A write or fsync failed, so durability can no longer be promised.

    Raised by the failing call (chained to the ``OSError``) and by every later
    ``save``/``sync``: the WAL must be closed and reopened, which replays what
    really reached the disk.
    """
