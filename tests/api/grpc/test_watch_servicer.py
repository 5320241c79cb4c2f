"""``Watch`` over gRPC: one bidirectional stream carrying many watches on
an in-process member; fragments; and the client that stops reading.

    python -m twisted.trial --reactor=asyncio tests.api.grpc.test_watch_servicer
"""

from __future__ import annotations

import asyncio

import grpc
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from metastore.api.grpc.convert import HeaderStamp
from metastore.api.grpc.proto import kv_pb2, rpc_pb2, rpc_pb2_grpc
from metastore.api.grpc.server import GrpcService
from metastore.api.grpc.watch import WatchServicer
from metastore.api.v3.watch import WatchService
from metastore.kv.messages import CompactionRequest, DeleteRangeRequest, PutRequest, TxnRequest
from metastore.kv.store import KeyValueStore
from metastore.storage.memory import MemoryEngine
from metastore.watch import WatchHub
from tests.api.grpc.member import open_channel, require_asyncio, run, start_member
from tests.api.v3.test_watch_stream import HubMember
from tests.process import wait_until

CALL_TIMEOUT = 20.0


def create(key: bytes, **fields) -> rpc_pb2.WatchRequest:
    """A WatchRequest creating a watch on ``key``."""
    return rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key, **fields))


def cancel(watch_id: int) -> rpc_pb2.WatchRequest:
    """A WatchRequest cancelling ``watch_id``."""
    return rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=watch_id))


PROGRESS = rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())


class WatchServicerMemberTests(TestCase):
    """The Watch stream against a real member's watch hub."""

    async def setUp(self):
        require_asyncio(__name__)
        self.member, port = await start_member(self)
        self.watch = rpc_pb2_grpc.WatchStub(open_channel(self, port))

    async def put(self, key: bytes, value: bytes = b"v", **fields):
        """Write through raft, as any API does; the revision."""
        return (await self.member.api.propose(PutRequest(key, value, **fields))).header.revision

    async def test_many_watches_on_one_stream(self):
        """Two watches on one stream, one with prev_kv, get their own
        events under their own ids; a progress request answers id -1 at
        the revision; a cancel answers canceled and stops the events; every
        response has a full header."""
        call = self.watch.Watch(timeout=CALL_TIMEOUT)
        await run(call.write(create(b"a", prev_kv=True)))
        first = await run(call.read())
        await run(call.write(create(b"p/", range_end=b"p0")))
        second = await run(call.read())
        self.assertEqual([(r.watch_id, r.created) for r in (first, second)], [(0, True), (1, True)])
        await self.put(b"a", b"1")
        revision = await self.put(b"p/x", b"2")
        await self.put(b"a", b"3")
        events = [await run(call.read()) for _ in range(3)]
        self.assertEqual(
            [(r.watch_id, [(e.kv.key, e.kv.value, e.prev_kv.value) for e in r.events]) for r in events],
            [(0, [(b"a", b"1", b"")]), (1, [(b"p/x", b"2", b"")]), (0, [(b"a", b"3", b"1")])],
        )
        self.assertEqual(events[1].header.revision, revision)
        self.assertEqual((events[1].header.member_id, events[1].header.raft_term), (1, self.member.api.term))
        await run(call.write(PROGRESS))
        progress = await run(call.read())
        self.assertEqual((progress.watch_id, progress.header.revision, len(progress.events)),
                         (-1, self.member.api.revision, 0))
        await run(call.write(cancel(0)))
        canceled = await run(call.read())
        self.assertEqual((canceled.watch_id, canceled.canceled), (0, True))
        await self.put(b"a", b"4")
        await self.put(b"p/y", b"5")
        after = await run(call.read())
        self.assertEqual((after.watch_id, [e.kv.key for e in after.events]), (1, [b"p/y"]))
        call.cancel()

    async def test_history_replay_and_compacted_start(self):
        """A watch from an old revision replays the history then goes
        live; one from a compacted revision is created, then canceled
        with compact_revision."""
        first = await self.put(b"h", b"1")
        await self.put(b"h", b"2")
        await self.member.api.propose(DeleteRangeRequest(b"h"))
        call = self.watch.Watch(timeout=CALL_TIMEOUT)
        await run(call.write(create(b"h", start_revision=first)))
        created = await run(call.read())
        replay = await run(call.read())
        self.assertTrue(created.created)
        self.assertEqual([(e.type, e.kv.value) for e in replay.events],
                         [(kv_pb2.Event.PUT, b"1"), (kv_pb2.Event.PUT, b"2"), (kv_pb2.Event.DELETE, b"")])
        await self.member.api.propose(CompactionRequest(first + 1))
        await run(call.write(create(b"h", start_revision=first)))
        created, canceled = await run(call.read()), await run(call.read())
        self.assertEqual((created.watch_id, created.created), (1, True))
        self.assertEqual((canceled.watch_id, canceled.canceled, canceled.compact_revision), (1, True, first + 1))
        call.cancel()

    async def test_fragmented_response(self):
        """A txn-sized revision of many events, for a watch that asked for
        fragments, comes in pieces under the request limit plus gRPC's
        envelope (etcd's rule), all but the
        last flagged ``fragment``; together they hold every event."""
        value = b"x" * (300 * 1024)
        call = self.watch.Watch(timeout=CALL_TIMEOUT)
        await run(call.write(create(b"f/", range_end=b"f0", fragment=True)))
        await run(call.read())
        puts = tuple(PutRequest(b"f/%d" % i, value) for i in range(12))
        await self.member.api.propose(TxnRequest(success=puts))
        pieces = []
        while not pieces or pieces[-1].fragment:
            pieces.append(await run(call.read()))
            self.assertLess(len(pieces), 13)
        self.assertGreater(len(pieces), 1)
        self.assertEqual([p.fragment for p in pieces], [True] * (len(pieces) - 1) + [False])
        self.assertEqual([e.kv.key for p in pieces for e in p.events], [b"f/%d" % i for i in range(12)])
        limit = self.member.config.max_request_bytes + 512 * 1024
        self.assertTrue(all(p.ByteSize() <= limit for p in pieces))
        call.cancel()


    async def test_filters(self):
        """A watch with the NOPUT filter sees only deletes, one with
        NODELETE only puts."""
        call = self.watch.Watch(timeout=CALL_TIMEOUT)
        noput, nodelete = rpc_pb2.WatchCreateRequest.NOPUT, rpc_pb2.WatchCreateRequest.NODELETE
        await run(call.write(create(b"f", filters=[noput])))
        await run(call.read())
        await run(call.write(create(b"f", filters=[nodelete])))
        await run(call.read())
        await self.put(b"f")
        await self.member.api.propose(DeleteRangeRequest(b"f"))
        answers = [await run(call.read()) for _ in range(2)]
        self.assertEqual(sorted((r.watch_id, [e.type for e in r.events]) for r in answers),
                         [(0, [kv_pb2.Event.DELETE]), (1, [kv_pb2.Event.PUT])])
        call.cancel()

    async def test_half_closed_stream_keeps_its_watches(self):
        """A client that half-closes (done writing) still gets its watches'
        events, as from etcd."""
        call = self.watch.Watch(timeout=CALL_TIMEOUT)
        await run(call.write(create(b"half")))
        await run(call.read())
        await run(call.done_writing())
        await self.put(b"half", b"still")
        answer = await run(call.read())
        self.assertEqual([e.kv.value for e in answer.events], [b"still"])
        call.cancel()

    async def test_member_stop_ends_the_stream_unavailable(self):
        """When the member stops, an open watch stream fails with
        UNAVAILABLE "etcdserver: server stopped" (clientv3 resumes it at
        another endpoint), not a ``canceled`` answer (which it takes as final)."""
        call = self.watch.Watch(timeout=CALL_TIMEOUT)
        await run(call.write(create(b"a")))
        await run(call.read())
        await self.member.stopService()

        async def next_answer():
            try:
                return await call.read()
            except grpc.aio.AioRpcError as e:
                return e.code(), e.details()

        self.assertEqual(await run(next_answer()), (grpc.StatusCode.UNAVAILABLE, "etcdserver: server stopped"))


class SlowReaderTests(TestCase):
    """A client that stops reading is cut off with a reason."""

    def setUp(self):
        require_asyncio(__name__)
        self.store = KeyValueStore(MemoryEngine())
        self.hub = WatchHub(self.store, reactor, max_buffered_events=100)
        self.index = 0
        servicer = WatchServicer(WatchService(HubMember(self.store, self.hub), 1024), lambda: HeaderStamp(1, 1, 1),
                                 high_water_bytes=64 * 1024, low_water_bytes=16 * 1024)
        self.service = GrpcService(
            reactor, "127.0.0.1", 0, [lambda server: rpc_pb2_grpc.add_WatchServicer_to_server(servicer, server)]
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)
        return self.service.listening

    def put(self, key: bytes, value: bytes) -> None:
        self.index += 1
        self.store.apply(self.index, [PutRequest(key, value)])

    async def test_watch_of_a_client_that_stops_reading_is_canceled_with_a_reason(self):
        """The client creates a watch and stops reading while 20 MB of
        events arrive: the watch is cancelled once its bound is passed
        (the hub keeps no watch), and when the client reads again it gets
        what was written before, then ``canceled`` with the reason; another
        watch on the same member is unaffected."""
        channel = open_channel(self, self.service.port)
        call = rpc_pb2_grpc.WatchStub(channel).Watch(timeout=60)
        await run(call.write(create(b"slow")))
        await run(call.read())
        value = b"s" * 10_000
        for i in range(2000):
            self.put(b"slow", value)
            if i % 100 == 99:
                await run(_yield())
        await wait_until(lambda: not self.hub.watches(), timeout=30, what="the slow watch to be cancelled")
        responses = []
        while not (responses and responses[-1].canceled):
            responses.append(await run(call.read()))
            self.assertLessEqual(len(responses), 2001)
        last = responses[-1]
        self.assertEqual(last.cancel_reason, "watcher too slow: more than 100 events waiting to be read")
        delivered = sum(len(r.events) for r in responses)
        self.assertLess(delivered, 2000)
        revisions = [e.kv.mod_revision for r in responses for e in r.events]
        self.assertEqual(revisions, list(range(2, 2 + delivered)), "a prefix of the history, no gap")
        call.cancel()


async def _yield():
    """Let the loop run gRPC's callbacks for a moment."""
    await asyncio.sleep(0.01)
