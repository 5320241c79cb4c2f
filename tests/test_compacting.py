"""CompactionService proposes auto-compactions on the leader and removes
compacted versions in slices, one per reactor turn (task.Clock, no real time)."""

from types import SimpleNamespace

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from metastore.compacting import CompactionService
from metastore.kv.autocompaction import RevisionRetention
from metastore.kv.messages import CompactionRequest, PutRequest
from metastore.kv.store import KeyValueStore
from metastore.storage.memory import MemoryEngine


class FakeNode:
    """What the service uses of a Node; proposals apply at once."""

    def __init__(self) -> None:
        self.store = KeyValueStore(MemoryEngine())
        self.running = True
        self.failure = None
        self.is_leader = True
        self.compaction = SimpleNamespace(restoring=False)
        self.proposed: list = []
        self.index = 0

    def propose(self, command) -> defer.Deferred:
        self.proposed.append(command)
        self.index += 1
        [result] = self.store.apply(self.index, [command])
        return defer.succeed(result)

    def write(self, count: int) -> None:
        for n in range(count):
            self.index += 1
            self.store.apply(self.index, [PutRequest(b"k%d" % (n % 10), b"v")])


class CompactionServiceTests(SynchronousTestCase):
    """Auto-compaction and physical compaction through the service."""

    def setUp(self):
        self.clock = task.Clock()
        self.node = FakeNode()
        self.service = CompactionService(self.clock, self.node, RevisionRetention(100), check_seconds=0.1, step_events=25)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def history_size(self) -> int:
        return len(list(self.node.store.engine.history()))

    def test_leader_proposes_and_physical_compaction_runs_in_slices(self):
        """Past the retention the leader proposes one compaction; the
        removal then takes slices of ``step_events``, each its own reactor
        call, until done."""
        slices = []
        step = self.node.store.compact_step
        self.node.store.compact_step = lambda limit: slices.append(limit) or step(limit)
        self.node.write(400)
        self.clock.advance(0.1)
        self.assertEqual(self.node.proposed, [CompactionRequest(301)])
        self.assertEqual(self.node.store.compacted_revision, 301)
        self.assertEqual(self.node.store.engine.physically_compacted_revision, 301)
        # 300 events at 25 a slice: not one long stall.
        self.assertGreaterEqual(len(slices), 12)
        self.assertEqual(set(slices), {25})
        self.assertEqual(self.history_size(), 100 + 10)  # revisions 302..401, plus each key's newest at or below 301

    def test_follower_only_removes(self):
        """A follower proposes nothing, but removes what a compaction applied hides."""
        self.node.is_leader = False
        self.node.write(400)
        self.clock.advance(0.1)
        self.assertEqual(self.node.proposed, [])
        self.node.index += 1
        self.node.store.apply(self.node.index, [CompactionRequest(201)])
        d = self.service.wait_physical(201)
        self.assertNoResult(d)
        for _ in range(100):
            self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), 201)

    def test_no_steps_while_restoring(self):
        """While a snapshot is being installed the engine is left alone."""
        self.node.write(400)
        self.node.compaction.restoring = True
        self.clock.advance(0.1)
        for _ in range(50):
            self.clock.advance(0)
        self.assertEqual(self.node.store.engine.physically_compacted_revision, 0)

    def test_stop_fails_waiters(self):
        """Stopping fails an unfinished physical wait instead of leaving it hanging."""
        self.node.is_leader = False
        self.node.write(200)
        self.node.store.apply(1000, [CompactionRequest(150)])
        d = self.service.wait_physical(150)
        self.service.stopService()
        self.failureResultOf(d, RuntimeError)
