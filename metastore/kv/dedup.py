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

import enum
from typing import Iterable, Iterator, Sequence

DEFAULT_SPAN = 10_000
"""How many raft indexes back request ids are remembered."""


class Verdict(enum.Enum):
    """What to do with an entry's request."""

    APPLY = "apply"
    DUPLICATE = "duplicate"
    """A copy was applied already: apply this one as a no-op."""
    UNDECIDABLE = "undecidable"
    """Too far from where it was proposed to know: refuse it."""


class RequestWindow(Sequence):
    """An immutable sequence of ``(request_id, index)`` pairs: the window as
    it was when taken, made in O(1) time.

    It shares ``RecentRequests``'s two lists, which are only appended to
    past ``hi`` (or replaced by new lists), so the pairs in ``[lo, hi)``
    never change.  Compares equal to a tuple or list of the same pairs."""

    __slots__ = ("_ids", "_indexes", "_lo", "_hi")

    def __init__(self, ids: list[bytes], indexes: list[int], lo: int, hi: int) -> None:
        self._ids, self._indexes, self._lo, self._hi = ids, indexes, lo, hi

    def __len__(self) -> int:
        return self._hi - self._lo

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(self)[i]
        n = self._hi - self._lo
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("request window index out of range")
        return self._ids[self._lo + i], self._indexes[self._lo + i]

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        lo, hi = self._lo, self._hi
        return zip(self._ids[lo:hi], self._indexes[lo:hi])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (RequestWindow, tuple, list)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"RequestWindow({tuple(self)!r})"


class RecentRequests:
    """Request ids applied in the last ``span`` raft indexes.

    The ids and their indexes are kept in two lists side by side rather
    than as pairs: a pair per applied request would be one more object the
    garbage collector tracks for every put (``metastore.storage.memory``
    says why that matters)."""

    def __init__(self, span: int = DEFAULT_SPAN, entries: Iterable[tuple[bytes, int]] = ()) -> None:
        self.span = span
        self._ids_in_order: list[bytes] = []
        self._indexes: list[int] = []
        """``_indexes[i]`` is the raft index at which ``_ids_in_order[i]`` was applied."""
        self._first = 0
        """Where the remembered ids start in the two lists (forgotten ones
        stay before it until the lists are rebuilt, for the windows taken)."""
        self._ids: set[bytes] = set()
        self.changed = False
        """Whether anything was added or forgotten since ``entries`` was last read."""
        self.restore(entries)

    def restore(self, entries: Iterable[tuple[bytes, int]]) -> None:
        """Replace the memory with stored ``(request_id, index)`` pairs, in index order."""
        pairs = [(bytes(r), int(i)) for r, i in entries]
        self._ids_in_order = [r for r, _ in pairs]
        self._indexes = [i for _, i in pairs]
        self._first = 0
        self._ids = set(self._ids_in_order)
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
        self._ids_in_order.append(request_id)
        self._indexes.append(index)
        self._ids.add(request_id)
        self.changed = True

    def forget_before(self, index: int) -> None:
        """Forget what lies ``span`` or more indexes behind ``index``."""
        ids, indexes, first, limit = self._ids_in_order, self._indexes, self._first, index - self.span
        while first < len(indexes) and indexes[first] <= limit:
            self._ids.discard(ids[first])
            first += 1
        if first != self._first:
            self.changed = True
            if first > 1024 and first * 2 > len(indexes):
                # New lists: windows already taken keep the old ones intact.
                self._ids_in_order, self._indexes, first = ids[first:], indexes[first:], 0
            self._first = first

    def entries(self) -> RequestWindow:
        """What to store: ``(request_id, index)`` pairs in index order (a
        window that later changes here do not alter)."""
        return RequestWindow(self._ids_in_order, self._indexes, self._first, len(self._indexes))

    def __len__(self) -> int:
        return len(self._indexes) - self._first
