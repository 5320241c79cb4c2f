"""The leader's queue of ReadIndex requests waiting for a heartbeat quorum (§8)."""

from __future__ import annotations

from metastore.raft.types import Message


class PendingRead:
    """One read: the request, the commit index it may be served at, and who
    has confirmed the leadership since it arrived."""

    __slots__ = ("request", "index", "acks")

    def __init__(self, request: Message, index: int, acks: set[int]) -> None:
        self.request = request
        self.index = index
        self.acks = acks


class ReadOnlyQueue:
    """Reads in arrival order, keyed by their context.

    An acknowledgement of a later context confirms every earlier read too,
    because the heartbeat carrying it was sent after they all arrived.
    """

    __slots__ = ("_by_context", "_order")

    def __init__(self) -> None:
        self._by_context: dict[bytes, PendingRead] = {}
        self._order: list[bytes] = []

    def add(self, index: int, request: Message, self_id: int) -> None:
        """Queue a read at ``index``; a context already queued is ignored."""
        context = request.context
        if context in self._by_context:
            return
        self._by_context[context] = PendingRead(request, index, {self_id})
        self._order.append(context)

    def ack(self, node_id: int, context: bytes) -> set[int] | None:
        """Record that ``node_id`` answered the heartbeat carrying ``context``."""
        pending = self._by_context.get(context)
        if pending is None:
            return None
        pending.acks.add(node_id)
        return pending.acks

    def release_through(self, context: bytes) -> list[PendingRead]:
        """Remove and return every read up to and including ``context``."""
        if context not in self._by_context:
            return []
        position = self._order.index(context)
        released_contexts = self._order[: position + 1]
        del self._order[: position + 1]
        return [self._by_context.pop(c) for c in released_contexts]

    def last_context(self) -> bytes | None:
        """The context of the newest queued read, if any."""
        return self._order[-1] if self._order else None

    def __len__(self) -> int:
        return len(self._order)
