"""The watch hub: replay then live with no gap and no duplicate, filters,
prev_kv, txn events together, bounded buffers, compacted starts, progress.
"""

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from metastore.kv.messages import CompactionRequest, DeleteRangeRequest, PutRequest, TxnRequest, prefix_range_end
from metastore.kv.store import KeyValueStore
from metastore.watch import EventType, WatchFilter, WatchHub
from tests.engines import OnMemoryEngine, OnRocksDBEngine


class Reader:
    """Collects a watch's responses."""

    def __init__(self) -> None:
        self.responses = []

    def __call__(self, response) -> None:
        self.responses.append(response)

    @property
    def events(self):
        return [(e.kv.key, e.kv.mod_revision, e.type) for r in self.responses for e in r.events]


class WatchHubBehaviour:
    """Behaviour of ``WatchHub`` over a store on each engine, time from ``task.Clock``."""

    def make_engine(self):
        raise NotImplementedError

    def setUp(self):
        self.clock = task.Clock()
        engine = self.make_engine()
        self.addCleanup(engine.close)
        self.store = KeyValueStore(engine)
        self.index = 0
        self.hub = WatchHub(self.store, self.clock, max_buffered_events=50, replay_chunk=100)

    def apply(self, *commands):
        self.index += 1
        return self.store.apply(self.index, list(commands))

    def watch(self, key, range_end=b"", start_revision=0, **kwargs):
        reader = Reader()
        handle = self.hub.watch(key, range_end, start_revision, callback=reader, **kwargs)
        return handle, reader

    def history(self, key=b"", range_end=b"\0"):
        """Every retained event in the range, as a watch reports them."""
        return [
            (e.kv.key, e.kv.mod_revision, EventType.DELETE if e.deleted else EventType.PUT)
            for e in self.store.history(0)
            if e.kv.key >= key and (range_end == b"\0" or e.kv.key < range_end)
        ]

    def test_created_first_then_live_events(self):
        """The created response comes at once; a key watch sees only its key."""
        _, reader = self.watch(b"k")
        self.assertTrue(reader.responses[0].created)
        self.apply(PutRequest(b"k", b"1"), PutRequest(b"other"), DeleteRangeRequest(b"k"))
        self.assertEqual(reader.events, [(b"k", 2, EventType.PUT), (b"k", 4, EventType.DELETE)])

    def test_replay_then_live_without_gap_or_duplicate(self):
        """A watch from an old revision replays in chunks, one reactor turn
        each, while writes go on; it ends with exactly the history."""
        for i in range(250):
            self.apply(PutRequest(b"p/%d" % (i % 7), b"%d" % i))
        _, reader = self.watch(b"p/", prefix_range_end(b"p/"), start_revision=2)
        for i in range(10):
            self.clock.advance(0)  # one replay step
            self.apply(PutRequest(b"p/x", b"%d" % i), PutRequest(b"q", b"not watched"))
        self.clock.advance(0)
        self.apply(PutRequest(b"p/last"))
        self.assertEqual(reader.events, self.history(b"p/", prefix_range_end(b"p/")))
        self.assertGreater(len(reader.responses), 3)

    def test_txn_events_arrive_together(self):
        """Every event of one txn shares a revision and one response."""
        _, reader = self.watch(b"t/", prefix_range_end(b"t/"))
        self.apply(TxnRequest((), (PutRequest(b"t/a"), PutRequest(b"t/b"), DeleteRangeRequest(b"t/c"))))
        self.apply(PutRequest(b"t/c"))
        self.apply(TxnRequest((), (PutRequest(b"t/a"), DeleteRangeRequest(b"t/c"))))
        batches = [[(e.kv.key, e.kv.mod_revision) for e in r.events] for r in reader.responses[1:]]
        self.assertEqual(batches, [[(b"t/a", 2), (b"t/b", 2)], [(b"t/c", 3)], [(b"t/a", 4), (b"t/c", 4)]])

    def test_filters_and_prev_kv(self):
        """NOPUT and NODELETE drop those events; prev_kv carries the version
        before, live and replayed alike."""
        self.apply(PutRequest(b"k", b"1"))
        _, no_put = self.watch(b"k", filters=(WatchFilter.NOPUT,), prev_kv=True)
        _, no_delete = self.watch(b"k", filters=(WatchFilter.NODELETE,))
        self.apply(PutRequest(b"k", b"2"))
        self.apply(DeleteRangeRequest(b"k"))
        self.assertEqual(no_put.events, [(b"k", 4, EventType.DELETE)])
        self.assertEqual(no_put.responses[-1].events[0].prev_kv.value, b"2")
        self.assertEqual(no_delete.events, [(b"k", 3, EventType.PUT)])
        _, replayed = self.watch(b"k", start_revision=3, prev_kv=True)
        self.clock.advance(0)
        self.assertEqual([e.prev_kv.value for r in replayed.responses for e in r.events], [b"1", b"2"])

    def test_watchers_of_the_same_events_share_them(self):
        """A fan-out makes each event once (twice with prev_kv asked), and
        watchers that get the same events get the same tuple, so an API
        can encode it once for all of them."""
        prefix = (b"f/", prefix_range_end(b"f/"))
        readers = [self.watch(*prefix)[1] for _ in range(3)]
        _, with_prev = self.watch(*prefix, prev_kv=True)
        _, one_key = self.watch(b"f/a")
        self.apply(TxnRequest((), (PutRequest(b"f/a", b"1"), PutRequest(b"f/b", b"2"))))
        shared = readers[0].responses[-1].events
        self.assertEqual([(e.kv.key, e.kv.value) for e in shared], [(b"f/a", b"1"), (b"f/b", b"2")])
        self.assertTrue(all(r.responses[-1].events is shared for r in readers))
        self.assertIsNot(with_prev.responses[-1].events, shared)
        self.assertEqual(with_prev.responses[-1].events[0].kv, shared[0].kv)
        self.assertIs(one_key.responses[-1].events[0], shared[0])
        self.assertEqual(len(one_key.responses[-1].events), 1)

    def test_range_and_all_keys(self):
        """A range watch sees keys in [key, range_end); b"\\0" means every key from key."""
        _, ranged = self.watch(b"b", b"d")
        _, rest = self.watch(b"c", b"\0")
        self.apply(*(PutRequest(k) for k in (b"a", b"b", b"c", b"d", b"zz")))
        self.assertEqual([k for k, _, _ in ranged.events], [b"b", b"c"])
        self.assertEqual([k for k, _, _ in rest.events], [b"c", b"d", b"zz"])

    def test_slow_watcher_is_cancelled_with_a_reason(self):
        """A paused watcher holds responses up to its bound; past it, it is
        cancelled with a reason, never silently dropped from; others go on."""
        slow, slow_reader = self.watch(b"k")
        _, fast_reader = self.watch(b"k")
        slow.pause()
        for i in range(50):
            self.apply(PutRequest(b"k", b"%d" % i))
        self.assertEqual(len(slow_reader.responses), 1)
        slow.resume()
        self.assertEqual(len(slow_reader.events), 50)
        slow.pause()
        for i in range(51):
            self.apply(PutRequest(b"k", b"%d" % i))
        last = slow_reader.responses[-1]
        self.assertTrue(last.canceled)
        self.assertIn("too slow", last.cancel_reason)
        self.assertEqual(len(slow_reader.events), 50)
        self.assertEqual(len(fast_reader.events), 101)
        self.apply(PutRequest(b"k"))
        self.assertEqual(slow_reader.responses[-1], last)

    def test_compacted_start_revision(self):
        """A watch from below the compacted revision is created, then
        cancelled with etcd's compact_revision."""
        for i in range(5):
            self.apply(PutRequest(b"k", b"%d" % i))
        self.apply(CompactionRequest(4))
        handle, reader = self.watch(b"k", start_revision=2)
        created, cancelled = reader.responses
        self.assertTrue(created.created)
        self.assertEqual((cancelled.canceled, cancelled.compact_revision), (True, 4))
        self.assertTrue(handle.canceled)
        _, at_compaction = self.watch(b"k", start_revision=4)
        self.clock.advance(0)
        self.assertEqual([rev for _, rev, _ in at_compaction.events], [4, 5, 6])

    def test_cancel_and_progress(self):
        """cancel() ends with a canceled response and no more events;
        progress notifications say how far a synced watch got."""
        handle, reader = self.watch(b"k", progress_notify=True)
        self.apply(PutRequest(b"other"))
        self.hub.notify_progress()
        self.assertTrue(reader.responses[-1].is_progress_notify)
        self.assertEqual(reader.responses[-1].revision, 2)
        handle.request_progress()
        self.assertEqual(reader.responses[-1].revision, 2)
        handle.cancel()
        self.assertTrue(reader.responses[-1].canceled)
        self.apply(PutRequest(b"k"))
        self.assertEqual(reader.events, [])
        self.assertEqual(self.hub.watches(), [])

    def test_a_jump_in_the_store_is_replayed(self):
        """When the store moves on without the hub seeing it (a snapshot was
        installed), synced watches replay from where they were."""
        _, reader = self.watch(b"k")
        self.store.listeners.remove(self.hub.applied)
        self.apply(PutRequest(b"k", b"unseen"))
        self.store.listeners.append(self.hub.applied)
        self.apply(PutRequest(b"k", b"seen"))
        self.clock.advance(0)
        self.assertEqual(reader.events, [(b"k", 2, EventType.PUT), (b"k", 3, EventType.PUT)])

    def test_a_failing_reader_loses_its_watch_not_the_apply(self):
        """A callback that raises is logged and its watch ends; apply and
        the other watches go on."""

        def broken(response):
            if response.events:
                raise RuntimeError("reader bug")

        self.hub.watch(b"k", callback=broken)
        _, reader = self.watch(b"k")
        self.apply(PutRequest(b"k", b"1"))
        self.apply(PutRequest(b"k", b"2"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual([rev for _, rev, _ in reader.events], [2, 3])
        self.assertEqual(len(self.hub.watches()), 1)

    def test_future_start_revision(self):
        """A watch from a revision not reached yet reports from it on."""
        _, reader = self.watch(b"k", start_revision=4)
        for i in range(4):
            self.apply(PutRequest(b"k", b"%d" % i))
        self.assertEqual([rev for _, rev, _ in reader.events], [4, 5])


class MemoryEngineWatchHubTests(OnMemoryEngine, WatchHubBehaviour, SynchronousTestCase):
    """The hub replaying from the memory engine."""


class RocksDBEngineWatchHubTests(OnRocksDBEngine, WatchHubBehaviour, SynchronousTestCase):
    """The hub replaying from the RocksDB engine."""
