"""The worker link without processes: the codec, batching, the core's dump
and apply stream, and a front when its core goes away or hangs."""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from metastore.auth.errors import AuthNotEnabled, AuthOldRevision
from metastore.auth.messages import AuthInfo
from metastore.auth.state import AuthState
from metastore.facade import Consistency, MemberStatus, Restoring
from metastore.kv.errors import CompactedError
from metastore.kv.messages import (
    Compare, CompareResult, CompareTarget, PutRequest, RangeRequest, TxnRequest,
)
from metastore.kv.store import KeyValueStore
from metastore.membership import MembershipError
from metastore.storage.engine import ClusterState, KeyValue, MemberRecord
from metastore.storage.memory import MemoryEngine
from metastore.watch import EventType, WatchEvent, WatchResponse
from metastore.workers import codec
from metastore.workers.core import CoreLinkFactory
from metastore.workers.link import BatchedLink
from metastore.workers.remote import CoreUnavailable, FrontLink, RemoteFacade


class CodecTests(SynchronousTestCase):
    """``codec.pack`` / ``unpack`` carry the facade's vocabulary exactly."""

    def assertRoundTrip(self, value):
        back = codec.unpack(codec.pack(value))
        self.assertEqual(back, value)
        self.assertIs(type(back), type(value))
        return back

    def test_nested_requests_keep_their_types(self):
        """A txn with a compare and a put comes back equal, enums as enums."""
        txn = TxnRequest((Compare(CompareTarget.MOD, CompareResult.EQUAL, b"k", 3),), (PutRequest(b"k", b"\xff"),), ())
        back = self.assertRoundTrip(txn)
        self.assertIs(type(back.compare[0].target), CompareTarget)
        self.assertIs(self.assertRoundTrip(Consistency.SERIALIZABLE), Consistency.SERIALIZABLE)

    def test_membership_changes(self):
        """A membership call's answer (the ``ConfChange`` applied) crosses the link."""
        from metastore.raft.types import ConfChange, ConfChangeType

        self.assertRoundTrip(ConfChange(ConfChangeType.ConfChangeAddNode, 4, b"http://127.0.0.1:1"))

    def test_watch_responses_and_status(self):
        """Watch responses with events, and a member's status."""
        kv = KeyValue(b"a", b"1", 2, 3, 2, 0)
        self.assertRoundTrip(WatchResponse(7, 3, (WatchEvent(EventType.PUT, kv, kv),), created=False))
        self.assertRoundTrip(MemberStatus(1, 1, "leader", 2, 9, 9, 0, 0, 1, 3, "memory", 1, 4, True, None))
        self.assertRoundTrip(ClusterState(voters=(1,), members=(MemberRecord(1, "http://x:1"),), requests=((b"id", 3),)))

    def test_expected_errors_keep_type_message_and_attributes(self):
        """A ``MembershipError`` keeps its code; a ``KVError`` its etcd message."""
        error = codec.unpack(codec.pack(MembershipError("no_such_member", "member 9 is not in the cluster")))
        self.assertIsInstance(error, MembershipError)
        self.assertEqual((error.code, str(error)), ("no_such_member", "member 9 is not in the cluster"))
        error = codec.unpack(codec.pack(CompactedError()))
        self.assertIsInstance(error, CompactedError)
        self.assertEqual(str(error), CompactedError().message)

    def test_unknown_errors_become_remote_errors_and_unknown_types_refused(self):
        """An exception outside the vocabulary arrives as ``RemoteError``
        with its repr; any other foreign object cannot be packed."""
        error = codec.unpack(codec.pack(ZeroDivisionError("a bug")))
        self.assertIsInstance(error, codec.RemoteError)
        self.assertIn("ZeroDivisionError", str(error))
        self.assertRaises(TypeError, codec.pack, object())

    def test_garbage_does_not_decode(self):
        """Bytes codec did not make raise (the link then drops)."""
        self.assertRaises(Exception, codec.unpack, b"\xc1\xc1")


class _Recorder(BatchedLink):
    def __init__(self, clock):
        super().__init__(clock)
        self.received = []

    def message_received(self, message):
        self.received.append(message)


class BatchingTests(SynchronousTestCase):
    """Messages of one reactor turn go out as one frame, in order."""

    def test_one_frame_per_turn(self):
        """A hundred sends, one write; the other end gets them in order."""
        clock = task.Clock()
        sender, receiver = _Recorder(clock), _Recorder(clock)
        transport = StringTransport()
        sender.makeConnection(transport)
        receiver.makeConnection(StringTransport())
        for i in range(100):
            sender.send(("m", i))
        self.assertEqual(transport.value(), b"")
        clock.advance(0)
        self.assertEqual((sender.frames_sent, sender.messages_sent), (1, 100))
        for byte in transport.value():
            receiver.dataReceived(bytes([byte]))
        self.assertEqual(receiver.received, [("m", i) for i in range(100)])

    def test_garbage_frame_drops_the_link(self):
        """A frame that does not decode closes the connection."""
        receiver = _Recorder(task.Clock())
        transport = StringTransport()
        receiver.makeConnection(transport)
        receiver.dataReceived(b"\x00\x00\x00\x02\xc1\xc1")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(receiver.received, [])


def _frame(messages) -> bytes:
    """``messages`` as one frame of the link."""
    packed = codec.pack(messages)
    return len(packed).to_bytes(4, "big") + packed


class _FakeFacade:
    """Just what the core's link asks of a facade, over a real store."""

    member_id = 1
    quota_bytes = 100

    def __init__(self, store):
        self.store = store
        self.proposals: list[tuple[object, defer.Deferred]] = []
        self.proposed_auth = []
        self.watches = []
        self.auth_listeners = []

    def __getattr__(self, name):
        return lambda *args: defer.fail(RuntimeError(name))

    def status(self):
        return MemberStatus(1, 1, "leader", 2, 9, self.store.applied_index, 0, 0, 1, 3, "memory", 1,
                            self.store.revision, True, None)

    def members(self):
        return [MemberRecord(1, "http://127.0.0.1:1")]

    def alarms(self):
        return []

    def db_size(self):
        return 0

    auth_enabled = False
    auth_revision = 1

    def auth_state(self):
        return AuthState(enabled=self.auth_enabled, revision=self.auth_revision)

    def change_auth(self, enabled):
        """Apply an auth change: a new revision, the listeners told."""
        self.auth_enabled, self.auth_revision = enabled, self.auth_revision + 1
        for listener in self.auth_listeners:
            listener()

    def add_member(self, member_id, peer_url, learner=False):
        raise MembershipError("member_exists", f"member {member_id} exists")

    def propose(self, command, auth=None):
        d = defer.Deferred()
        self.proposals.append((command, d))
        self.proposed_auth.append(auth)
        return d

    def read(self, consistency):
        return defer.succeed(None)

    def watch(self, key, range_end, start_revision, filters, prev_kv, progress_notify, *, callback):
        self.watches.append(callback)
        callback(WatchResponse(5, self.store.revision, created=True))
        return _Cancelable()


class _Cancelable:
    canceled = False

    def cancel(self, reason=""):
        self.canceled = True


class CoreAndFrontTests(SynchronousTestCase):
    """A core's link and a front's link joined by in-memory transports."""

    def setUp(self):
        self.clock = task.Clock()
        self.store = KeyValueStore(MemoryEngine())
        self.store.apply(1, [PutRequest(b"old", b"1")])
        self.facade = _FakeFacade(self.store)
        self.factory = CoreLinkFactory(self.facade, self.store, self.clock, wait_physical=lambda r: defer.succeed(None))
        self.core = self.factory.buildProtocol(None)
        self.front = FrontLink(self.clock, call_timeout=30)
        self.core_transport, self.front_transport = StringTransport(), StringTransport()
        self.core.makeConnection(self.core_transport)
        self.front.makeConnection(self.front_transport)
        self.remote = RemoteFacade(self.front)
        self.pump()
        self.assertTrue(self.front.ready.called)

    def pump(self):
        """Deliver everything queued, both ways, until quiet (bounded)."""
        for _ in range(20):
            self.clock.advance(0)
            to_core, to_front = self.front_transport.value(), self.core_transport.value()
            self.front_transport.clear()
            self.core_transport.clear()
            if not to_core and not to_front:
                return
            self.core.dataReceived(to_core)
            self.front.dataReceived(to_front)
        raise AssertionError("the link did not go quiet")

    def test_auth_changes_reach_the_front_at_once_and_stale_checks_fail(self):
        """With auth off a front's checks pass and its writes carry the auth
        revision they were let in at; an auth change is pushed at once (no
        tick passes); a request let in before it learns of it then fails
        with "revision of auth store is old": its read barrier, a check,
        authenticate, and a watch the core refuses (created and canceled)."""
        self.assertIsNone(self.remote.authorize(None, PutRequest(b"k")))
        self.remote.propose(PutRequest(b"k", b"v"))
        self.pump()
        self.assertEqual(self.facade.proposed_auth, [AuthInfo("", 1)])
        read = self.remote.read()  # let in while auth was off; the barrier answers after the change
        self.facade.change_auth(enabled=True)
        self.pump()
        self.assertEqual(self.remote.auth_state(), AuthState(enabled=True, revision=2))
        self.failureResultOf(read, AuthOldRevision)
        for check in (lambda: self.remote.authorize("t", PutRequest(b"k")), lambda: self.remote.authorize_admin("t"),
                      lambda: self.remote.authorize_user("t"), lambda: self.remote.authorize_read("t", b"k", b"")):
            self.assertRaises(AuthOldRevision, check)
        self.failureResultOf(self.remote.authenticate("u", "p"), AuthOldRevision)
        seen = []
        self.remote.watch(b"k", callback=seen.append)
        self.pump()
        self.assertEqual(seen, [WatchResponse(0, 0, created=True, canceled=True,
                                              cancel_reason="etcdserver: revision of auth store is old")])
        self.assertEqual(self.facade.watches, [])
        self.facade.change_auth(enabled=False)
        self.pump()
        self.assertEqual(self.remote.auth_state(), AuthState(enabled=False, revision=3))
        self.successResultOf(self.remote.authenticate("u", "p").addErrback(lambda f: f.trap(AuthNotEnabled)))

    def test_the_dump_gives_the_front_the_store(self):
        """The replica holds what the store held, at the same revision and index."""
        self.assertEqual(self.remote.get(b"old").value, b"1")
        self.assertEqual((self.remote.revision, self.front.replica.applied_index), (2, 1))
        self.assertEqual(self.remote.status().leader, 1)

    def test_applies_follow_and_an_answer_comes_after_the_write(self):
        """A write's answer reaches the front after the apply that made it:
        in the answer's callback the replica already holds the write."""
        seen = []
        d = self.remote.propose(PutRequest(b"k", b"v"))
        d.addCallback(lambda result: seen.append((result.header.revision, self.remote.get(b"k"))))
        self.pump()
        command, waiting = self.facade.proposals[0]
        self.assertEqual(command, PutRequest(b"k", b"v"))
        [result] = self.store.apply(2, [command])
        waiting.callback(result)
        self.pump()
        self.assertEqual(seen[0][0], 3)
        self.assertEqual(seen[0][1].value, b"v")
        self.assertEqual(self.remote.range_request(RangeRequest(b"", b"\0")).count, 2)

    def test_a_write_answered_by_the_latest_apply_goes_by_position(self):
        """The answer to a write applied by the latest apply names the
        result's position (the front applied the same command and holds
        the same result); the front hands over its own, equal, result."""
        d = self.remote.propose(PutRequest(b"k", b"v", prev_kv=True))
        self.pump()
        command, waiting = self.facade.proposals[0]
        [result] = self.store.apply(2, [command])
        waiting.callback(result)
        self.clock.advance(0)
        kinds = [m[0] for m in codec.unpack(self.core_transport.value()[4:])]
        self.assertEqual(kinds, ["a", "p"])
        self.pump()
        self.assertEqual(self.successResultOf(d), result)

    def test_a_refused_write_by_position_fails_with_the_same_error(self):
        """A command the store refused (a ``KVError`` result) fails the call
        with that error, by position too."""
        from metastore.kv.errors import LeaseNotFoundError

        d = self.remote.propose(PutRequest(b"k", b"v", lease=77))
        self.pump()
        command, waiting = self.facade.proposals[0]
        [result] = self.store.apply(2, [command])
        self.assertIsInstance(result, LeaseNotFoundError)
        waiting.errback(result)
        self.pump()
        self.failureResultOf(d, LeaseNotFoundError)

    def test_an_answer_from_an_older_apply_goes_whole(self):
        """When another apply came between a write's apply and its answer,
        the answer carries the result itself."""
        d = self.remote.propose(PutRequest(b"k", b"v"))
        self.pump()
        command, waiting = self.facade.proposals[0]
        [result] = self.store.apply(2, [command])
        self.store.apply(3, [PutRequest(b"other", b"x")])
        waiting.callback(result)
        self.clock.advance(0)
        kinds = [m[0] for m in codec.unpack(self.core_transport.value()[4:])]
        self.assertEqual(kinds, ["a", "a", "r"])
        self.pump()
        self.assertEqual(self.successResultOf(d).header.revision, 3)

    def test_the_apply_stream_is_packed_once_for_every_front(self):
        """Two fronts get the same packed bytes of an apply."""
        second = self.factory.buildProtocol(None)
        second.makeConnection(StringTransport())
        second.dataReceived(_frame([("hello", codec.SCHEMA)]))
        self.store.apply(2, [PutRequest(b"k", b"v")])
        self.assertIs(self.core._queue[-1], second._queue[-1])
        self.assertEqual(codec.unpack(second._queue[-1]), ("a", 2, (PutRequest(b"k", b"v"),)))

    def test_space_is_checked_in_the_front_while_the_view_allows_it(self):
        """Within the quota and without alarms a write's space check passes
        without a call; past the quota (as last pushed) the core decides."""
        from metastore.kv.errors import NoSpaceError

        self.successResultOf(self.remote.check_space(PutRequest(b"k", b"v")))
        self.clock.advance(0)
        self.assertEqual(self.front_transport.value(), b"")
        self.facade.db_size = lambda: 101
        self.factory.calls["check_space"] = lambda request: defer.fail(NoSpaceError())
        self.core.send_view()
        self.pump()
        d = self.remote.check_space(PutRequest(b"k", b"v"))
        self.pump()
        self.failureResultOf(d, NoSpaceError)

    def test_a_replaced_store_is_dumped_again_before_a_read_answers(self):
        """A store restored wholesale (a snapshot from the leader) reaches
        the front as a new dump, before the answer to its read barrier."""
        engine = self.store.engine
        engine.restore([], 9, 40, ClusterState(voters=(1,)))
        d = self.remote.read(Consistency.LINEARIZABLE)
        self.pump()
        self.successResultOf(d)
        self.assertIsNone(self.remote.get(b"old"))
        self.assertEqual((self.remote.revision, self.front.replica.applied_index), (9, 40))

    def test_no_read_answers_while_the_store_is_being_replaced(self):
        """While a snapshot is installed the front's replica cannot follow:
        its read barrier fails with ``Restoring`` (503) instead of answering."""
        installing = [True]
        self.factory.fanout.restoring = lambda: installing[0]
        d = self.remote.read(Consistency.LINEARIZABLE)
        self.pump()
        self.failureResultOf(d, Restoring)
        installing[0] = False
        d = self.remote.read(Consistency.LINEARIZABLE)
        self.pump()
        self.successResultOf(d)

    def test_a_lost_core_fails_calls_reads_and_watches(self):
        """Losing the link: the pending call fails 503-style, watches get a
        last canceled response, reads and new calls fail at once."""
        responses = []
        self.remote.watch(b"k", callback=responses.append)
        pending = self.remote.propose(PutRequest(b"k", b"v"))
        self.pump()
        self.assertTrue(responses[0].created)
        self.front.connectionLost(None)
        self.failureResultOf(pending, CoreUnavailable)
        self.assertTrue(responses[-1].canceled)
        self.assertRaises(CoreUnavailable, self.remote.get, b"old")
        self.failureResultOf(self.remote.read(), CoreUnavailable)
        self.assertTrue(self.front.lost.called)

    def test_a_watch_that_fails_to_end_does_not_keep_the_front_alive(self):
        """A watch callback that raises on the last response is logged; the
        front still learns its link is lost (and so exits)."""
        def broken(response):
            if response.canceled:
                raise RuntimeError("broken watcher")

        self.remote.watch(b"k", callback=broken)
        self.pump()
        self.front.connectionLost(None)
        self.assertTrue(self.front.lost.called)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_a_hung_core_times_calls_out(self):
        """A call unanswered for ``call_timeout`` fails with ``CoreUnavailable``."""
        pending = self.remote.propose(PutRequest(b"k", b"v"))
        self.pump()
        self.clock.advance(29)
        self.front.expire_calls()
        self.assertNoResult(pending)
        self.clock.advance(2)
        self.front.expire_calls()
        self.failureResultOf(pending, CoreUnavailable)

    def test_errors_come_back_as_failures(self):
        """An error the core's facade raises arrives as the same failure."""
        d = self.remote.add_member(9, "http://x:1")
        self.pump()
        error = self.failureResultOf(d, MembershipError).value
        self.assertEqual((error.code, str(error)), ("member_exists", "member 9 exists"))
