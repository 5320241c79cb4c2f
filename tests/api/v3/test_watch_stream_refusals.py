"""``WatchStream`` answers etcd 3.4 gives that the main stream tests do not
cover (checked against /usr/bin/etcd): an empty range, the empty key, a
negative start revision, and a stream that fills up again while resuming."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from metastore.api.v3.watch import EMPTY_RANGE, INVALID_WATCH_ID, TOO_MANY_WATCHERS, WatchCreateRequest, WatchService
from metastore.kv.messages import CompactionRequest, PutRequest
from metastore.kv.store import KeyValueStore
from metastore.storage.memory import MemoryEngine
from metastore.watch import WatchHub
from tests.api.v3.test_watch_stream import HubMember


class WatchStreamRefusalTests(SynchronousTestCase):
    """Refusals and edge ranges on one stream over a real hub."""

    def setUp(self):
        engine = MemoryEngine()
        self.addCleanup(engine.close)
        self.store = KeyValueStore(engine)
        self.hub = WatchHub(self.store, task.Clock(), max_buffered_events=5)
        self.index = 0
        self.sent = []
        self.stream = WatchService(HubMember(self.store, self.hub), 1024).open(self.sent.append)

    def apply(self, *commands):
        self.index += 1
        self.store.apply(self.index, list(commands))

    def test_empty_range_is_refused(self):
        """A range end at or below the key answers created+canceled, watch
        -1, "mvcc: watcher range is empty", and makes no watch."""
        self.assertEqual(self.stream.create(WatchCreateRequest(b"b", range_end=b"a")), INVALID_WATCH_ID)
        self.assertEqual(self.stream.create(WatchCreateRequest(b"b", range_end=b"b")), INVALID_WATCH_ID)
        self.assertEqual([(r.watch_id, r.created, r.canceled, r.cancel_reason) for r in self.sent],
                         [(-1, True, True, EMPTY_RANGE)] * 2)
        self.assertEqual((self.stream.watch_ids, self.hub.watches()), ([], []))

    def test_empty_key_with_range_end_zero_watches_every_key(self):
        """``key`` empty and ``range_end`` \\0 (``etcdctl watch --prefix ""``)
        is every key, as the empty key is the smallest key."""
        self.stream.create(WatchCreateRequest(b"", range_end=b"\0"))
        self.apply(PutRequest(b"\0"))
        self.apply(PutRequest(b"zz"))
        self.assertEqual([e.kv.key for r in self.sent for e in r.events], [b"\0", b"zz"])

    def test_negative_start_revision_is_compacted(self):
        """A negative start revision is below any retained history: after a
        compaction it answers created, then canceled with compact_revision."""
        for _ in range(3):
            self.apply(PutRequest(b"k"))
        self.apply(CompactionRequest(3))
        self.stream.create(WatchCreateRequest(b"k", start_revision=-4))
        self.assertEqual([(r.created, r.canceled, r.compact_revision) for r in self.sent],
                         [(True, False, 0), (False, True, 3)])

    def test_resume_stops_when_the_reader_fills_up_again(self):
        """If delivering one watch's held events pauses the stream again,
        the other watches stay paused (their events stay held)."""

        def reader(response):
            self.sent.append(response)
            if response.events and response.watch_id == 0:
                self.stream.pause()

        self.stream = WatchService(HubMember(self.store, self.hub), 1024).open(reader)
        self.stream.create(WatchCreateRequest(b"a"))
        self.stream.create(WatchCreateRequest(b"b"))
        self.stream.pause()
        self.apply(PutRequest(b"a"))
        self.apply(PutRequest(b"b"))
        self.stream.resume()
        self.assertEqual([r.watch_id for r in self.sent if r.events], [0])
        self.stream.resume()
        self.assertEqual([r.watch_id for r in self.sent if r.events], [0, 1])

    def test_watches_beyond_the_per_stream_limit_are_refused(self):
        """With ``max_watchers_per_stream`` 2 the third create is answered
        created+canceled with the limit's reason; a cancel makes room again."""
        stream = WatchService(HubMember(self.store, self.hub), 1024, max_watchers_per_stream=2).open(self.sent.append)
        first, second = stream.create(WatchCreateRequest(b"a")), stream.create(WatchCreateRequest(b"b"))
        self.assertEqual(stream.create(WatchCreateRequest(b"c")), INVALID_WATCH_ID)
        refusal = self.sent[-1]
        self.assertEqual((refusal.created, refusal.canceled), (True, True))
        self.assertEqual(refusal.cancel_reason, f"{TOO_MANY_WATCHERS} (limit 2)")
        self.assertEqual(stream.watch_ids, [first, second])
        stream.cancel(first)
        self.assertNotEqual(stream.create(WatchCreateRequest(b"c")), INVALID_WATCH_ID)
