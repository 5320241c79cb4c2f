"""The protocol-neutral watch stream (``metastore.api.v3.watch``): stream
ids, fragments, flow control and its bound, progress, close; over a real
watch hub and store, time from ``task.Clock``."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from metastore.api.v3.watch import (
    DUPLICATE_WATCH_ID,
    INVALID_WATCH_ID,
    WatchCreateRequest,
    WatchService,
    event_wire_size,
    fragments,
)
from metastore.facade import EventType, KeyValue, WatchEvent, WatchFilter
from metastore.kv.messages import CompactionRequest, PutRequest, TxnRequest
from metastore.kv.store import KeyValueStore
from metastore.storage.memory import MemoryEngine
from metastore.watch import WatchHub


class HubMember:
    """The facade calls a watch stream makes, over a hub and a store, with auth disabled."""

    def __init__(self, store: KeyValueStore, hub: WatchHub) -> None:
        self._store, self._hub = store, hub

    @property
    def revision(self) -> int:
        return self._store.revision

    def watch(self, *args, callback):
        return self._hub.watch(*args, callback=callback)

    def authorize_read(self, token, key, range_end):
        return None

    def track_watch(self, user, key, range_end, watch):
        pass


class WatchStreamTests(SynchronousTestCase):
    """One stream of watches on one member."""

    def setUp(self):
        self.clock = task.Clock()
        engine = MemoryEngine()
        self.addCleanup(engine.close)
        self.store = KeyValueStore(engine)
        self.hub = WatchHub(self.store, self.clock, max_buffered_events=20, progress_interval=5)
        self.hub.startService()
        self.addCleanup(self.hub.stopService)
        self.index = 0
        self.sent = []
        self.service = WatchService(HubMember(self.store, self.hub), max_request_bytes=1024)
        self.stream = self.service.open(self.sent.append)

    def apply(self, *commands):
        self.index += 1
        self.store.apply(self.index, list(commands))

    def test_ids_from_zero_chosen_ids_and_duplicates(self):
        """Automatic ids count from 0 and skip ids clients chose; a taken id
        is refused with a created-and-canceled answer of watch -1."""
        self.assertEqual(self.stream.create(WatchCreateRequest(b"a", watch_id=1)), 1)
        self.assertEqual(self.stream.create(WatchCreateRequest(b"b")), 0)
        self.assertEqual(self.stream.create(WatchCreateRequest(b"c")), 2)
        self.assertEqual(self.stream.create(WatchCreateRequest(b"d", watch_id=2)), INVALID_WATCH_ID)
        self.assertEqual([(r.watch_id, r.created, r.canceled) for r in self.sent],
                         [(1, True, False), (0, True, False), (2, True, False), (-1, True, True)])  # fmt: skip
        self.assertEqual(self.sent[-1].cancel_reason, DUPLICATE_WATCH_ID)
        self.apply(PutRequest(b"b", b"x"))
        self.assertEqual((self.sent[-1].watch_id, self.sent[-1].events[0].kv.key), (0, b"b"))
        self.stream.cancel(0)
        self.assertEqual((self.sent[-1].watch_id, self.sent[-1].canceled), (0, True))
        self.assertEqual(self.stream.watch_ids, [1, 2])

    def test_fragments_only_when_asked(self):
        """A txn's events over the limit come in fragments for a watch that
        asked (all but the last marked), whole for one that did not."""
        self.stream.create(WatchCreateRequest(b"k", b"\0", fragment=True))
        self.stream.create(WatchCreateRequest(b"k", b"\0"))
        del self.sent[:]
        big = b"x" * (self.service.fragment_limit // 2)
        self.apply(TxnRequest(success=tuple(PutRequest(b"k%d" % i, big) for i in range(5))))
        fragmented = [r for r in self.sent if r.watch_id == 0]
        whole = [r for r in self.sent if r.watch_id == 1]
        self.assertEqual([len(r.events) for r in whole], [5])
        self.assertEqual([len(r.events) for r in fragmented], [1, 1, 1, 1, 1])
        self.assertEqual([r.fragment for r in fragmented], [True, True, True, True, False])
        self.assertEqual({r.revision for r in fragmented}, {whole[0].revision})

    def test_fragments_function(self):
        """Under the limit, or one event: whole; otherwise greedy parts each
        under the limit (a part holds at least one event)."""
        self.stream.create(WatchCreateRequest(b"k", b"\0"))
        self.apply(TxnRequest(success=tuple(PutRequest(b"k%d" % i, b"x" * n) for i, n in enumerate((3, 3, 9, 1)))))
        response = self.sent[-1]
        size = lambda event: len(event.kv.value)  # noqa: E731
        self.assertEqual(fragments(response, 17, size, envelope=0), [response])
        parts = fragments(response, 7, size, envelope=0)
        self.assertEqual([[len(e.kv.value) for e in p.events] for p in parts], [[3, 3], [9], [1]])
        self.assertEqual([p.fragment for p in parts], [True, True, False])

    def test_paused_stream_buffers_then_cancels_a_slow_watch(self):
        """While the reader is paused, every watch (even one created then)
        holds its events; resumed, they come in order; paused past the
        bound, the watch is cancelled with a reason."""
        self.stream.create(WatchCreateRequest(b"k"))
        self.stream.pause()
        self.stream.create(WatchCreateRequest(b"k", filters=(WatchFilter.NODELETE,)))
        for i in range(10):
            self.apply(PutRequest(b"k", b"%d" % i))
        self.assertEqual([r.created for r in self.sent], [True, True])
        self.stream.resume()
        values = [(r.watch_id, e.kv.value) for r in self.sent for e in r.events]
        self.assertEqual(values, [(0, b"%d" % i) for i in range(10)] + [(1, b"%d" % i) for i in range(10)])
        self.stream.pause()
        del self.sent[:]
        for i in range(21):
            self.apply(PutRequest(b"k", b"%d" % i))
        self.assertEqual([r.canceled for r in self.sent], [True, True])
        self.assertIn("too slow", self.sent[0].cancel_reason)
        self.assertEqual(self.stream.watch_ids, [])
        self.assertEqual(self.hub.watches(), [])

    def test_progress_notify_and_progress_request(self):
        """A watch with progress_notify gets an empty response at the
        store's revision every interval; a progress request answers watch -1."""
        self.stream.create(WatchCreateRequest(b"k", progress_notify=True))
        self.stream.create(WatchCreateRequest(b"j"))
        self.apply(PutRequest(b"other"))
        del self.sent[:]
        self.clock.advance(5)
        now = self.store.revision
        self.assertEqual([(r.watch_id, r.revision, r.is_progress_notify) for r in self.sent], [(0, now, True)])
        self.stream.request_progress()
        self.assertEqual((self.sent[-1].watch_id, self.sent[-1].revision), (INVALID_WATCH_ID, now))

    def test_close_cancels_every_watch_silently(self):
        """Closing (the client left) frees every watch and sends nothing."""
        self.stream.create(WatchCreateRequest(b"k"))
        self.stream.create(WatchCreateRequest(b"k", b"\0", start_revision=1))
        sent = len(self.sent)
        self.stream.close()
        self.assertEqual((len(self.sent), self.hub.watches(), self.stream.watch_ids), (sent, [], []))
        self.apply(PutRequest(b"k"))
        self.assertEqual(len(self.sent), sent)

    def test_compacted_start_is_not_kept(self):
        """A compacted start answers created then the compact cancel and
        leaves no watch on the stream."""
        for i in range(3):
            self.apply(PutRequest(b"k", b"%d" % i))
        self.apply(CompactionRequest(3))
        self.stream.create(WatchCreateRequest(b"k", start_revision=1))
        self.assertEqual([(r.created, r.canceled, r.compact_revision) for r in self.sent],
                         [(True, False, 0), (False, True, 3)])  # fmt: skip
        self.assertEqual(self.stream.watch_ids, [])


class WireSizeTests(SynchronousTestCase):
    """``event_wire_size`` is what protobuf encodes (etcd fragments by it)."""

    def test_equals_protobuf(self):
        """For puts and deletes, with and without prev_kv, small and large
        fields and negative leases: the size of the event inside a
        WatchResponse, as the generated protobuf classes encode it."""
        from metastore.api.grpc.proto import kv_pb2, rpc_pb2

        def proto(kv):
            return kv_pb2.KeyValue(key=kv.key, value=kv.value, create_revision=kv.create_revision,
                                   mod_revision=kv.mod_revision, version=kv.version, lease=kv.lease)  # fmt: skip

        kvs = [KeyValue(b"k", b"", 0, 7, 0), KeyValue(b"key" * 50, b"v" * 300, 2**40, 2**40 + 1, 3, 2**62),
               KeyValue(b"x", b"y" * 70000, 1, 1, 1, -5)]  # fmt: skip
        for kv in kvs:
            for prev in (None, kvs[1]):
                for kind in EventType:
                    event = WatchEvent(kind, kv, prev)
                    message = kv_pb2.Event(type=kind.value, kv=proto(kv), prev_kv=None if prev is None else proto(prev))
                    response = rpc_pb2.WatchResponse(events=[message])
                    self.assertEqual(event_wire_size(event), response.ByteSize(), (kind, kv, prev))
