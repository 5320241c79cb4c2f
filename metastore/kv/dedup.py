"""The state machine's memory of recent requests: at most once under retries.

A member that loses its leader proposes its pending requests again, each
copy with the same request id and the same ``proposed_at`` (the commit
index its proposer knew when it first proposed it).  Any copy that reaches
the log lands above ``proposed_at`` (every leader's log holds every
committed entry), so remembering the request ids applied in the last
``span`` indexes decides every copy within ``span`` of ``proposed_at``:
already applied (a duplicate, applied as a no-op) or not.  A copy further
away cannot be decided and is refused.

Deterministic: a pure function of the applied log, stored with the
membership record in the engine and in snapshots, so every member decides
alike.  No raft, no I/O.
"""

from __future__ import annotations

import collections
import enum
from typing import Iterable

DEFAULT_SPAN = 10_000
"""How many raft indexes back request ids are remembered."""


class Verdict(enum.Enum):
    """What to do with an entry's request."""

    APPLY = "apply"
    DUPLICATE = "duplicate"
    """A copy was applied already: apply this one as a no-op."""
    UNDECIDABLE = "undecidable"
    """Too far from where it was proposed to know: refuse it."""


class RecentRequests:
    """Request ids applied in the last ``span`` raft indexes."""

    def __init__(self, span: int = DEFAULT_SPAN, entries: Iterable[tuple[bytes, int]] = ()) -> None:
        self.span = span
        self._order: collections.deque[tuple[bytes, int]] = collections.deque()
        self._ids: set[bytes] = set()
        self.changed = False
        """Whether anything was added or forgotten since ``entries`` was last read."""
        self.restore(entries)

    def restore(self, entries: Iterable[tuple[bytes, int]]) -> None:
        """Replace the memory with stored ``(request_id, index)`` pairs, in index order."""
        self._order = collections.deque((bytes(r), int(i)) for r, i in entries)
        self._ids = {r for r, _ in self._order}
        self.changed = False

    def judge(self, request_id: bytes, proposed_at: int | None, index: int) -> Verdict:
        """The verdict on a request applied at ``index``: entries without
        ``proposed_at`` (written before it existed) are checked for
        duplicates only."""
        if request_id in self._ids:
            return Verdict.DUPLICATE
        if proposed_at is not None and index - proposed_at > self.span:
            return Verdict.UNDECIDABLE
        return Verdict.APPLY

    def add(self, request_id: bytes, index: int) -> None:
        """Remember that ``request_id`` was applied at ``index``."""
        self._order.append((request_id, index))
        self._ids.add(request_id)
        self.changed = True

    def forget_before(self, index: int) -> None:
        """Forget what lies ``span`` or more indexes behind ``index``."""
        order = self._order
        while order and order[0][1] <= index - self.span:
            self._ids.discard(order.popleft()[0])
            self.changed = True

    def entries(self) -> tuple[tuple[bytes, int], ...]:
        """What to store: ``(request_id, index)`` pairs in index order."""
        return tuple(self._order)

    def __len__(self) -> int:
        return len(self._order)
