"""What a member's requests wait on: their entry, an applied index, or a
ReadIndex round.  Used by ``metastore.node``; no raft, no I/O."""

from __future__ import annotations

import heapq
import itertools

from twisted.internet import defer
from twisted.python.failure import Failure

from metastore.errors import RequestTimedOut


class PendingRequests:
    """Deferreds waiting for their entry to be applied, by request id; each
    fails with ``RequestTimedOut`` if its timeout passes first."""

    def __init__(self, clock, timeout: float) -> None:
        self._clock = clock
        self._timeout = timeout
        self._waiting: dict[bytes, tuple[defer.Deferred, object]] = {}

    def add(self, request_id: bytes) -> defer.Deferred:
        """A Deferred for the result of the entry proposed as ``request_id``."""
        d = defer.Deferred()
        call = self._clock.callLater(self._timeout, self._expire, request_id)
        self._waiting[request_id] = (d, call)
        return d

    def _expire(self, request_id: bytes) -> None:
        d, _ = self._waiting.pop(request_id)
        d.errback(RequestTimedOut("the request timed out; a write may still be applied"))

    def resolve(self, request_id: bytes, result: object) -> None:
        """Fire the waiter of ``request_id`` (if this member has one) with
        ``result``; an exception (a command apply refused, such as a
        ``KVError``) fails it instead."""
        found = self._waiting.pop(request_id, None)
        if found is not None:
            found[1].cancel()
            if isinstance(result, Exception):
                found[0].errback(result)
            else:
                found[0].callback(result)

    def fail_all(self, error: Exception) -> None:
        """Fail every waiter with ``error``."""
        waiting, self._waiting = self._waiting, {}
        for d, call in waiting.values():
            call.cancel()
            d.errback(error)

    def __len__(self) -> int:
        return len(self._waiting)


class AppliedWaiters:
    """Deferreds waiting until the applied index reaches a given index."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, defer.Deferred]] = []
        self._order = itertools.count()

    def wait(self, index: int) -> defer.Deferred:
        """A Deferred that fires once ``reached`` is told of ``index`` or more."""
        d = defer.Deferred()
        heapq.heappush(self._heap, (index, next(self._order), d))
        return d

    def reached(self, applied: int) -> None:
        """The applied index is now ``applied``: fire every waiter it covers."""
        heap = self._heap
        while heap and heap[0][0] <= applied:
            _, _, d = heapq.heappop(heap)
            if not d.called:
                d.callback(applied)

    def fail_all(self, error: Exception) -> None:
        """Fail every waiter with ``error``."""
        heap, self._heap = self._heap, []
        for _, _, d in heap:
            if not d.called:
                d.errback(error)


class ReadBatch:
    """Linearizable reads that share one ReadIndex round, named by ``context``."""

    def __init__(self, context: bytes, started_tick: int) -> None:
        self.context = context
        self.started_tick = started_tick
        self.waiters: list[defer.Deferred] = []


def fail_after(d: defer.Deferred, seconds: float, clock, error: Exception) -> defer.Deferred:
    """``d``, failing with ``error`` if it has not fired within ``seconds``."""

    def timed_out(result, timeout):
        if isinstance(result, Failure) and result.check(defer.CancelledError):
            return Failure(error)
        return result

    return d.addTimeout(seconds, clock, onTimeoutCancel=timed_out)
