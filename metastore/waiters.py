"""What a member's requests wait on: their entry, an applied index, or a
ReadIndex round.  Used by ``metastore.node``; no raft, no I/O."""

from __future__ import annotations

import heapq
import itertools
from typing import Callable

from twisted.internet import defer
from twisted.python.failure import Failure

from metastore.errors import RequestTimedOut


class PendingRequests:
    """Deferreds waiting for their entry to be applied, by request id; each
    fails with ``RequestTimedOut`` if its timeout passes first.

    Every request has the same timeout, so deadlines come in the order the
    requests do: one timer, set for the oldest deadline, serves them all
    (a timer per request costs the reactor more than the request's whole
    routing)."""

    def __init__(self, clock, timeout: float) -> None:
        self._clock = clock
        self._timeout = timeout
        self._waiting: dict[bytes, tuple[defer.Deferred, float]] = {}
        """In the order added, so in deadline order."""
        self._timer = None

    def add(self, request_id: bytes) -> defer.Deferred:
        """A Deferred for the result of the entry proposed as ``request_id``."""
        d = defer.Deferred()
        self._waiting[request_id] = (d, self._clock.seconds() + self._timeout)
        if self._timer is None:
            self._timer = self._clock.callLater(self._timeout, self._expire_due)
        return d

    def _expire_due(self) -> None:
        """Fail the waiters whose deadline has come; set the timer for the next."""
        self._timer = None
        now = self._clock.seconds()
        due = []
        for request_id, (_, deadline) in self._waiting.items():
            if deadline > now:
                break
            due.append(request_id)
        for request_id in due:
            d, _ = self._waiting.pop(request_id)
            d.errback(RequestTimedOut("the request timed out; a write may still be applied"))
        if self._waiting and self._timer is None:
            first_deadline = next(iter(self._waiting.values()))[1]
            self._timer = self._clock.callLater(max(0.0, first_deadline - now), self._expire_due)

    def resolve(self, request_id: bytes, result: object) -> None:
        """Fire the waiter of ``request_id`` (if this member has one) with
        ``result``; an exception (a command apply refused, such as a
        ``KVError``) fails it instead."""
        found = self._waiting.pop(request_id, None)
        if found is not None:
            if isinstance(result, Exception):
                found[0].errback(result)
            else:
                found[0].callback(result)

    def fail_all(self, error: Exception) -> None:
        """Fail every waiter with ``error``."""
        waiting, self._waiting = self._waiting, {}
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for d, _ in waiting.values():
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


class LinearizableReads:
    """Linearizable reads, batched into ReadIndex rounds.

    Reads that arrive while a round is in flight join the next one; a
    round older than an election timeout no longer holds the next back.
    Each read fires once the applied index reaches its round's read index
    (``reached``), or fails with ``RequestTimedOut`` after ``timeout``."""

    def __init__(
        self,
        clock,
        timeout: float,
        election_ticks: int,
        new_context: Callable[[], bytes],
        read_index: Callable[[bytes], None],
    ) -> None:
        self._clock = clock
        self._timeout = timeout
        self._election_ticks = election_ticks
        self._new_context = new_context
        self._read_index = read_index
        self._ticks = 0
        self._next: list[defer.Deferred] = []
        self._batches: dict[bytes, ReadBatch] = {}
        self._applied = AppliedWaiters()

    def add(self) -> defer.Deferred:
        """A read waiting for the next round; call ``maybe_start_round`` after."""
        d = defer.Deferred()
        self._next.append(d)
        return fail_after(d, self._timeout, self._clock, RequestTimedOut("the linearizable read timed out"))

    def tick(self) -> None:
        """One raft tick passed (rounds age in ticks)."""
        self._ticks += 1

    def maybe_start_round(self, leader_known: bool) -> bool:
        """Start a ReadIndex round for the waiting reads unless one is fresh
        in flight or no leader is known; True when one was started."""
        if not self._next or not leader_known:
            return False
        stale = self._ticks - self._election_ticks
        if any(b.started_tick > stale for b in self._batches.values()):
            return False
        batch = ReadBatch(self._new_context(), self._ticks)
        batch.waiters, self._next = self._next, []
        self._batches[batch.context] = batch
        self._read_index(batch.context)
        return True

    def serve(self, context: bytes, read_index: int, applied_index: int) -> None:
        """Raft confirmed round ``context`` at ``read_index``: its reads wait
        for that index to be applied."""
        batch = self._batches.pop(context, None)
        if batch is None:
            return
        for d in batch.waiters:
            if not d.called:
                self._applied.wait(read_index).chainDeferred(d)
        self._applied.reached(applied_index)

    def reached(self, applied_index: int) -> None:
        """The applied index is now ``applied_index``."""
        self._applied.reached(applied_index)

    def fail_all(self, error: Exception) -> None:
        """Fail every waiting read with ``error``."""
        waiting = self._next + [d for b in self._batches.values() for d in b.waiters]
        self._next, self._batches = [], {}
        for d in waiting:
            if not d.called:
                d.errback(error)
        self._applied.fail_all(error)
