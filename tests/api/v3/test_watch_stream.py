"""``WatchStream``: many watches on one client stream, as etcd 3.4 answers
them (ids per stream from 0, refusals with id -1, progress with id -1,
compacted starts), over a real watch hub on a memory store; time from
``task.Clock``."""

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from metastore.api.v3.watch_stream import DUPLICATE_ID, EMPTY_RANGE, WatchCreate, WatchStream
from metastore.kv.messages import CompactionRequest, PutRequest
from metastore.kv.store import KeyValueStore
from metastore.storage.memory import MemoryEngine
from metastore.watch import WatchFilter, WatchHub
from tests.api.v3.hub_member import HubMember


class WatchStreamTests(SynchronousTestCase):
    """The stream's answers, in order, as its writer gets them."""

    def setUp(self):
        self.clock = task.Clock()
        self.store = KeyValueStore(MemoryEngine())
        self.hub = WatchHub(self.store, self.clock, max_buffered_events=5)
        self.index = 0
        self.sent = []
        self.stream = WatchStream(HubMember(self.store, self.hub), self.sent.append)

    def put(self, key: bytes, value: bytes = b"v"):
        self.index += 1
        self.store.apply(self.index, [PutRequest(key, value)])

    def answers(self):
        """(watch_id, created, canceled, cancel_reason, keys of events) of each answer so far."""
        return [(r.watch_id, r.created, r.canceled, r.cancel_reason, [e.kv.key for e in r.events]) for r in self.sent]

    def test_ids_count_from_zero_per_stream_and_skip_chosen_ones(self):
        """Auto ids are 0, 1, ...; a chosen id is kept and an auto id never
        reuses a live one; another stream starts from 0 again."""
        self.stream.create(WatchCreate(b"a"))
        self.stream.create(WatchCreate(b"a", watch_id=2))
        self.stream.create(WatchCreate(b"a"))
        self.stream.create(WatchCreate(b"a"))
        self.assertEqual([r.watch_id for r in self.sent], [0, 2, 1, 3])
        other = []
        WatchStream(HubMember(self.store, self.hub), other.append).create(WatchCreate(b"a"))
        self.assertEqual(other[0].watch_id, 0)

    def test_refusals_are_created_and_canceled_with_id_minus_one(self):
        """A duplicate id and an empty range answer created+canceled, id -1,
        etcd's reasons, and make no watch."""
        self.stream.create(WatchCreate(b"a", watch_id=4))
        self.stream.create(WatchCreate(b"a", watch_id=4))
        self.stream.create(WatchCreate(b"b", range_end=b"a"))
        self.stream.create(WatchCreate(b"b", range_end=b"b"))
        self.assertEqual(self.answers()[1:], [
            (-1, True, True, DUPLICATE_ID, []),
            (-1, True, True, EMPTY_RANGE, []),
            (-1, True, True, EMPTY_RANGE, []),
        ])
        self.assertEqual(self.stream.watch_ids, [4])

    def test_events_reach_each_watch_under_its_stream_id(self):
        """Two watches on one stream get their own events; the empty key
        with range end \\0 watches every key; NOPUT filters puts."""
        self.stream.create(WatchCreate(b"a"))
        self.stream.create(WatchCreate(b"", range_end=b"\0"))
        self.stream.create(WatchCreate(b"a", filters=(WatchFilter.NOPUT,)))
        self.put(b"a")
        self.put(b"b")
        self.assertEqual([(r.watch_id, [e.kv.key for e in r.events]) for r in self.sent if r.events],
                         [(0, [b"a"]), (1, [b"a"]), (1, [b"b"])])

    def test_cancel_answers_once_and_unknown_ids_are_ignored(self):
        """A cancel answers canceled for that id; cancelling it again, or an
        id never made, answers nothing; no event reaches it after."""
        self.stream.create(WatchCreate(b"a"))
        self.stream.cancel(0)
        self.stream.cancel(0)
        self.stream.cancel(77)
        self.put(b"a")
        self.assertEqual(self.answers(), [(0, True, False, "", []), (0, False, True, "", [])])

    def test_progress_request_answers_id_minus_one_at_the_revision(self):
        """A progress request answers one response, watch id -1, at the store's revision."""
        self.put(b"x")
        self.put(b"y")
        self.stream.request_progress()
        [progress] = self.sent
        self.assertEqual((progress.watch_id, progress.revision, progress.events), (-1, 3, ()))

    def test_compacted_start_is_created_then_canceled_with_the_revision(self):
        """A watch from below the compacted revision answers created, then
        canceled with compact_revision, and is no longer on the stream."""
        for key in (b"a", b"b", b"c"):
            self.put(key)
        self.index += 1
        self.store.apply(self.index, [CompactionRequest(3)])
        self.stream.create(WatchCreate(b"a", start_revision=2))
        created, canceled = self.sent
        self.assertTrue(created.created)
        self.assertEqual((canceled.watch_id, canceled.canceled, canceled.compact_revision), (0, True, 3))
        self.assertEqual(self.stream.watch_ids, [])

    def test_paused_stream_cancels_a_watch_past_its_bound_with_a_reason(self):
        """While paused, events wait in the hub; past the hub's bound the
        watch is cancelled with a reason that still reaches the writer; a
        resumed stream first gets what was held."""
        self.stream.create(WatchCreate(b"slow"))
        self.stream.create(WatchCreate(b"calm"))
        self.stream.pause()
        for _ in range(3):
            self.put(b"calm")
        for _ in range(6):
            self.put(b"slow")
        self.assertEqual(self.answers()[2:], [(0, False, True, "watcher too slow: more than 5 events waiting to be read", [])])
        self.stream.resume()
        self.assertEqual([(r.watch_id, len(r.events)) for r in self.sent[3:]], [(1, 1)] * 3)
        self.assertEqual(self.stream.watch_ids, [1])

    def test_new_watch_on_a_paused_stream_starts_paused(self):
        """A watch created while the stream is paused holds its events too."""
        self.stream.pause()
        self.stream.create(WatchCreate(b"a"))
        self.put(b"a")
        self.assertEqual(len(self.sent), 1)
        self.stream.resume()
        self.assertEqual(self.answers()[1], (0, False, False, "", [b"a"]))

    def test_close_ends_every_watch_silently(self):
        """After close the hub has no watch of the stream and nothing more is sent."""
        self.stream.create(WatchCreate(b"a"))
        self.stream.create(WatchCreate(b"b"))
        self.stream.close()
        self.put(b"a")
        self.stream.create(WatchCreate(b"a"))
        self.assertEqual(len(self.sent), 2)
        self.assertEqual(self.hub.watches(), [])
