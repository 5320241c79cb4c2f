"""Compaction on a running member: auto-compaction proposals and the
physical removal of compacted versions, both without holding the reactor.

``CompactionService`` wakes every ``check_seconds`` on the reactor's clock:

- on the leader only, it asks the auto-compaction policy
  (``metastore.kv.autocompaction``) whether to compact and proposes a
  ``CompactionRequest`` through raft, one at a time, as etcd's compactor
  does; every member then applies it in log order;
- on every member, while the engine still holds versions the compacted
  revision hides, it runs ``KeyValueStore.compact_step`` in slices of
  ``step_events`` events, one slice per reactor turn (``callLater(0)``), so
  requests and raft traffic are served between slices.

``wait_physical(revision)`` lets an API answer etcd's ``physical=true``
compaction only once the versions are gone.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from metastore.kv.autocompaction import AutoCompactionPolicy
from metastore.kv.messages import CompactionRequest
from metastore.periodic import start_periodic, stop_periodic

log = Logger(namespace="metastore.compacting")


class CompactionService(service.Service):
    """Drives auto-compaction and physical compaction for one member's ``node``."""

    def __init__(
        self,
        reactor,
        node,
        policy: AutoCompactionPolicy | None,
        check_seconds: float = 0.1,
        step_events: int = 500,
    ) -> None:
        self.reactor = reactor
        self.node = node
        self.policy = policy
        self.check_seconds = check_seconds
        self.step_events = step_events
        self._loop: task.LoopingCall | None = None
        self._step_call = None
        self._proposing = False
        self._physical_waiters: list[tuple[int, defer.Deferred]] = []

    def startService(self) -> None:
        """Start checking every ``check_seconds``."""
        super().startService()
        self._loop = start_periodic(self.check, self.check_seconds, self.reactor)

    def stopService(self):
        """Stop checking and stepping; pending ``wait_physical`` calls fail."""
        super().stopService()
        stop_periodic(self._loop)
        if self._step_call is not None and self._step_call.active():
            self._step_call.cancel()
        self._step_call = None
        waiters, self._physical_waiters = self._physical_waiters, []
        for _, d in waiters:
            d.errback(RuntimeError("the member stopped before the compaction finished"))

    def check(self) -> None:
        """Propose a compaction if the policy says so (leader only), and
        start the physical work if some is pending."""
        node = self.node
        if not node.running or node.failure is not None:
            return
        store = node.store
        if self.policy is not None and node.is_leader and not self._proposing:
            target = self.policy.decide(self.reactor.seconds(), store.revision, store.compacted_revision)
            if target is not None:
                self._propose(target)
        if self._step_call is None:
            self._step()

    def _propose(self, target: int) -> None:
        self._proposing = True

        def done(result):
            self._proposing = False
            if isinstance(result, Exception) or hasattr(result, "value"):
                log.info("auto-compaction at revision {revision} not applied: {reason}", revision=target, reason=result)
            return None

        self.node.propose(CompactionRequest(target)).addBoth(done)

    def _step(self) -> None:
        self._step_call = None
        node = self.node
        if not node.running or node.failure is not None or node.compaction.restoring:
            return
        store = node.store
        finished = store.compact_step(self.step_events)
        self._fire_waiters(store.physically_compacted_revision)
        if not finished:
            self._step_call = self.reactor.callLater(0, self._step)

    def _fire_waiters(self, done: int) -> None:
        ready = [d for revision, d in self._physical_waiters if revision <= done]
        self._physical_waiters = [(r, d) for r, d in self._physical_waiters if r > done]
        for d in ready:
            d.callback(done)

    def wait_physical(self, revision: int) -> defer.Deferred:
        """Fires once no version hidden by a compaction at ``revision`` is
        left in the engine (at once if that is already so)."""
        done = self.node.store.physically_compacted_revision
        if done >= revision:
            return defer.succeed(done)
        d: defer.Deferred = defer.Deferred()
        self._physical_waiters.append((revision, d))
        if self._step_call is None and self.running:
            self._step_call = self.reactor.callLater(0, self._step)
        return d
