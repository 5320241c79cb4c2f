"""The client's sans-IO core: calls, answers, the failover rule, streams,
the watch cursor, the queue recipes and etcdctl's txn text."""

from __future__ import annotations


from twisted.trial.unittest import SynchronousTestCase

from metastore.client import concurrency, wire
from metastore.client.failover import Endpoints, Outcome, Reconnects, may_retry, normalize, outcome_of_error
from metastore.client.stream import LineBuffer, WatchCanceled, WatchCompacted, WatchCursor
from metastore.ctl.output import table
from metastore.ctl.txn_text import TxnSyntaxError, parse_txn
from metastore.storage.engine import KeyValue


def _kv(key: bytes, create: int, mod: int | None = None) -> KeyValue:
    return KeyValue(key, b"", create, mod or create, 1)


def _event_message(*revisions: int, key: str = "k") -> dict:
    events = [{"kv": {"key": wire.b64(key.encode()), "create_revision": str(r), "mod_revision": str(r),
                      "version": "1", "value": wire.b64(b"v%d" % r)}} for r in revisions]
    return {"result": {"header": {"revision": str(max(revisions))}, "events": events}}


class CallTests(SynchronousTestCase):
    """Requests are etcd's JSON, with the options that were asked for only."""

    def test_range_of_a_prefix(self):
        """``prefix=True`` ends the range at the prefix with its last byte plus one."""
        call = wire.range_request("a/", prefix=True, limit=2, keys_only=True)
        self.assertEqual(call.path, "/v3/kv/range")
        self.assertEqual(call.body, {"key": wire.b64(b"a/"), "range_end": wire.b64(b"a0"), "limit": 2, "keys_only": True})
        self.assertTrue(call.idempotent)

    def test_empty_prefix_and_from_key_cover_every_key_after(self):
        """An empty prefix is every key; ``from_key`` ends at ``\\0``."""
        self.assertEqual(wire.range_request("", prefix=True).body, {"key": "AA==", "range_end": "AA=="})
        self.assertEqual(wire.range_request("m", from_key=True).body, {"key": wire.b64(b"m"), "range_end": "AA=="})

    def test_range_sort_enums_are_numbers(self):
        """Sort order and target go as etcd's enum numbers."""
        body = wire.range_request("k", sort_order="DESCEND", sort_target="MOD").body
        self.assertEqual((body["sort_order"], body["sort_target"]), (2, 3))

    def test_writes_are_not_idempotent(self):
        """Put, delete, grant, revoke and compaction are not sent twice."""
        for call in (wire.put_request("k", "v"), wire.delete_request("k"), wire.lease_grant_request(5),
                     wire.lease_revoke_request(1), wire.compaction_request(3), wire.member_add_request("http://x:1")):
            self.assertFalse(call.idempotent, call.path)
        self.assertTrue(wire.lease_keepalive_request(1).idempotent)

    def test_put_body_carries_lease_and_value(self):
        """A lease and an empty value are sent as etcd expects."""
        self.assertEqual(wire.put_request(b"k", b"", lease=7).body, {"key": "aw==", "value": "", "lease": 7})

    def test_txn_compares_put_the_operand_in_the_target_field(self):
        """A VALUE compare carries base64, the others a number; a read-only txn is idempotent."""
        call = wire.txn_request([wire.Compare("k", "VALUE", "EQUAL", "x"), wire.Compare("k", "MOD", "LESS", 9)],
                                [wire.op_range("k")], [wire.op_range("j")])
        self.assertEqual(call.body["compare"], [
            {"key": "aw==", "target": "VALUE", "result": "EQUAL", "value": "eA=="},
            {"key": "aw==", "target": "MOD", "result": "LESS", "mod_revision": 9},
        ])
        self.assertTrue(call.idempotent)
        self.assertFalse(wire.txn_request([], [wire.op_put("k", "v")]).idempotent)

    def test_watch_request(self):
        """A watch is one ``create_request`` with the start revision."""
        body = wire.watch_request("p", prefix=True, start_revision=12, prev_kv=True).body
        self.assertEqual(body, {"create_request": {"key": "cA==", "range_end": "cQ==", "start_revision": 12,
                                                   "prev_kv": True}})


class AnswerTests(SynchronousTestCase):
    """Answers in etcd's JSON (strings for int64s, zeros left out) parse into dataclasses."""

    def test_range(self):
        """Keys, counts and the header are parsed; absent fields are zeros."""
        answer = wire.parse_range({"header": {"cluster_id": "9", "member_id": "2", "revision": "14", "raft_term": "3"},
                                   "kvs": [{"key": "YQ==", "create_revision": "5", "mod_revision": "6",
                                            "version": "2", "value": "MQ==", "lease": "77"}],
                                   "more": True, "count": "3"})
        self.assertEqual(answer.header, wire.Header(9, 2, 14, 3))
        self.assertEqual(answer.kvs, (KeyValue(b"a", b"1", 5, 6, 2, 77),))
        self.assertEqual((answer.more, answer.count), (True, 3))
        self.assertEqual(wire.parse_range({"header": {}}).kvs, ())

    def test_txn_with_nested_answers(self):
        """Each op answer becomes its own result; a failed txn has ``succeeded`` False."""
        answer = wire.parse_txn({"header": {"revision": "8"}, "responses": [
            {"response_put": {"header": {"revision": "8"}}},
            {"response_delete_range": {"header": {"revision": "8"}, "deleted": "2"}},
            {"response_range": {"header": {"revision": "8"}, "count": "1", "kvs": [{"key": "YQ=="}]}},
        ]})
        self.assertFalse(answer.succeeded)
        put, deleted, found = answer.responses
        self.assertIsInstance(put, wire.PutResult)
        self.assertEqual(deleted.deleted, 2)
        self.assertEqual(found.kvs[0].key, b"a")

    def test_lease_answers(self):
        """A keep-alive of a gone lease has no TTL: -1."""
        self.assertEqual(wire.parse_lease({"result": {"header": {}, "ID": "5"}}).ttl, -1)
        granted = wire.parse_lease({"header": {}, "ID": "5", "TTL": "10", "grantedTTL": "10", "keys": ["YQ=="]})
        self.assertEqual((granted.id, granted.ttl, granted.granted_ttl, granted.keys), (5, 10, 10, (b"a",)))

    def test_error_body(self):
        """etcd's error body gives the code and message; a non-JSON body its text."""
        error = wire.parse_error(404, b'{"error":"etcdserver: requested lease not found","code":5}')
        self.assertEqual((error.status, error.code, error.message), (404, 5, "etcdserver: requested lease not found"))
        self.assertEqual(wire.parse_error(502, b"bad gateway\n").message, "bad gateway")

    def test_members_and_status(self):
        """Member lists (with the added member) and status parse."""
        members = wire.parse_members({"header": {}, "member": {"ID": "4", "peerURLs": ["http://p:1"], "isLearner": True},
                                      "members": [{"ID": "1", "name": "member-1", "peerURLs": ["http://a:1"],
                                                   "clientURLs": ["http://a:2"]}]})
        self.assertEqual(members.added, wire.Member(4, "", ("http://p:1",), (), True))
        self.assertEqual(members.members[0].client_urls, ("http://a:2",))
        status = wire.parse_status({"header": {"member_id": "2"}, "leader": "2", "raftIndex": "9", "dbSize": "100"})
        self.assertEqual((status.leader, status.raft_index, status.db_size), (2, 9, 100))


class FailoverTests(SynchronousTestCase):
    """When a call may go to another member, and in what order members are asked."""

    def test_reads_retry_after_any_failure(self):
        """An idempotent call moves on after refused, lost and unavailable."""
        read = wire.range_request("k")
        for outcome in (Outcome.REFUSED, Outcome.LOST, Outcome.UNAVAILABLE):
            self.assertTrue(may_retry(read, outcome))
        self.assertFalse(may_retry(read, Outcome.ANSWERED))

    def test_writes_retry_only_when_never_sent(self):
        """A write moves on only after a refused connection."""
        write = wire.put_request("k", "v")
        self.assertTrue(may_retry(write, Outcome.REFUSED))
        self.assertFalse(may_retry(write, Outcome.LOST))
        self.assertFalse(may_retry(write, Outcome.UNAVAILABLE))

    def test_error_answers(self):
        """5xx is unavailable; 4xx is an answer, except "not leader", a refusal."""
        self.assertIs(outcome_of_error(wire.ClientError(503, 14, "etcdserver: no leader")), Outcome.UNAVAILABLE)
        self.assertIs(outcome_of_error(wire.ClientError(404, 5, "etcdserver: requested lease not found")), Outcome.ANSWERED)
        self.assertIs(outcome_of_error(wire.ClientError(412, 9, "etcdserver: not leader")), Outcome.REFUSED)

    def test_attempts_start_at_the_member_in_use_and_pause_between_rounds(self):
        """Rounds go around every member from the one that answered last."""
        endpoints = Endpoints(["a:1", "http://b:2/", "c:3"], rounds=2, pause=0.5)
        endpoints.answered("http://b:2")
        self.assertEqual(list(endpoints.attempts()), [
            ("http://b:2", 0.0), ("http://c:3", 0.0), ("http://a:1", 0.0),
            ("http://b:2", 0.5), ("http://c:3", 0.0), ("http://a:1", 0.0),
        ])
        self.assertEqual(normalize(" host:9 "), "http://host:9")
        self.assertRaises(ValueError, Endpoints, [" "])

    def test_reconnects_move_on_and_give_up_after_the_rounds(self):
        """A broken stream goes to the next member; a message forgives the failures."""
        endpoints = Endpoints(["a:1", "b:2"], rounds=1, pause=0.5)
        reconnects = Reconnects(endpoints)
        self.assertEqual((reconnects.broke(), reconnects.url), (0.0, "http://b:2"))
        reconnects.received()
        self.assertEqual((reconnects.broke(), reconnects.url), (0.5, "http://a:1"))
        self.assertEqual(reconnects.broke(), 0.0)
        self.assertIsNone(reconnects.broke())


class StreamTests(SynchronousTestCase):
    """JSON lines split anywhere, and a watch resumed without gap or duplicate."""

    def test_lines_split_across_chunks_and_sharing_a_chunk(self):
        """Fed one byte at a time or all at once, the same messages come out."""
        data = b'{"a":1}\n{"b":2}\n\n{"c":3}'
        one_by_one = LineBuffer()
        messages = [m for i in range(len(data)) for m in one_by_one.feed(data[i:i + 1])]
        self.assertEqual(messages + one_by_one.finish(), [{"a": 1}, {"b": 2}, {"c": 3}])
        whole = LineBuffer()
        self.assertEqual(whole.feed(data), [{"a": 1}, {"b": 2}])

    def test_cursor_starts_after_the_created_revision(self):
        """A watch from now resumes after the store revision it was created at."""
        cursor = WatchCursor()
        self.assertEqual(cursor.message({"result": {"header": {"revision": "41"}, "created": True}}), [])
        self.assertEqual(cursor.next_revision, 42)

    def test_cursor_drops_what_was_delivered_and_advances(self):
        """Events replayed by a resumed stream are not delivered twice."""
        cursor = WatchCursor(10)
        self.assertEqual([e.kv.mod_revision for e in cursor.message(_event_message(10, 11))], [10, 11])
        cursor.message({"result": {"header": {"revision": "11"}, "created": True}})
        self.assertEqual(cursor.next_revision, 12)
        self.assertEqual([e.kv.mod_revision for e in cursor.message(_event_message(11, 12, 13))], [12, 13])
        self.assertEqual(cursor.next_revision, 14)

    def test_cursor_raises_on_cancel(self):
        """A compacted start raises WatchCompacted; another cancel WatchCanceled."""
        cursor = WatchCursor(3)
        with self.assertRaises(WatchCompacted) as raised:
            cursor.message({"result": {"canceled": True, "compact_revision": "7"}})
        self.assertEqual(raised.exception.compact_revision, 7)
        self.assertRaises(WatchCanceled, cursor.message, {"result": {"canceled": True, "cancel_reason": "slow"}})


class QueueTests(SynchronousTestCase):
    """The lock and election rule: first created holds; each waits on the one just ahead."""

    def test_first_in_line_and_predecessor(self):
        """The oldest holds; the predecessor is the newest older one."""
        queue = [_kv(b"q/c", 9), _kv(b"q/a", 3), _kv(b"q/b", 5)]
        self.assertEqual(concurrency.first_in_line(queue).key, b"q/a")
        self.assertEqual(concurrency.predecessor(queue, 9).key, b"q/b")
        self.assertIsNone(concurrency.predecessor(queue, 3))
        self.assertIsNone(concurrency.first_in_line([]))

    def test_join_queue_claims_then_waits_on_the_predecessor(self):
        """The steps: claim, list, wait for the deletion of the one ahead, list, done."""
        run = concurrency.QueueRun(b"locks/", b"", 0xAB)
        claim = run.next()
        self.assertEqual(claim.call.path, "/v3/kv/txn")
        self.assertEqual(claim.call.body["compare"][0]["key"], wire.b64(b"locks/ab"))
        listing = run.next(wire.TxnResult(wire.Header(revision=7), succeeded=True))
        self.assertEqual(listing.call.path, "/v3/kv/range")
        mine, ahead = _kv(b"locks/ab", 7), _kv(b"locks/01", 4)
        wait = run.next(wire.RangeResult(wire.Header(revision=8), (ahead, mine)))
        self.assertEqual(wait, concurrency.WaitDeleted(b"locks/01", 9))
        self.assertIsInstance(run.next(None), concurrency.Send)
        self.assertIsNone(run.next(wire.RangeResult(wire.Header(revision=10), (mine,))))
        self.assertEqual(run.result, (b"locks/ab", 7))

    def test_join_queue_finds_its_own_key_again(self):
        """A claim that finds the key already there takes its create revision."""
        run = concurrency.QueueRun(b"l", b"", 1)
        run.next()
        found = wire.RangeResult(wire.Header(), (_kv(b"l/1", 4),))
        run.next(wire.TxnResult(wire.Header(revision=9), succeeded=False, responses=(found,)))
        self.assertIsNone(run.next(wire.RangeResult(wire.Header(revision=9), (_kv(b"l/1", 4),))))
        self.assertEqual(run.result, (b"l/1", 4))

    def test_join_queue_fails_when_the_key_vanishes(self):
        """Its key gone from the listing (lease expired): NotLeader."""
        run = concurrency.QueueRun(b"l", b"", 1)
        run.next()
        run.next(wire.TxnResult(wire.Header(revision=3), succeeded=True))
        self.assertRaises(concurrency.NotLeader, run.next, wire.RangeResult(wire.Header(revision=4), ()))

    def test_leader_view_reports_changes_only(self):
        """A new value of the leader or a new leader is a change; a follower joining is not."""
        view = concurrency.LeaderView([_kv(b"e/1", 2)])
        self.assertFalse(view.apply(wire.Event("PUT", _kv(b"e/2", 5))))
        self.assertTrue(view.apply(wire.Event("PUT", KeyValue(b"e/1", b"new", 2, 6, 2))))
        self.assertTrue(view.apply(wire.Event("DELETE", KeyValue(b"e/1", b"", 0, 7, 0))))
        self.assertEqual(view.leader.key, b"e/2")


class TxnTextTests(SynchronousTestCase):
    """etcdctl's txn text."""

    def test_compares_success_and_failure(self):
        """Three sections separated by blank lines."""
        call = parse_txn('mod("key1") > "0"\nvalue("k 2") = "a b"\n\nput key1 "new value"\ndel k --prefix\n\nget key1\n')
        self.assertEqual(call.body["compare"], [
            {"key": wire.b64(b"key1"), "target": "MOD", "result": "GREATER", "mod_revision": 0},
            {"key": wire.b64(b"k 2"), "target": "VALUE", "result": "EQUAL", "value": wire.b64(b"a b")},
        ])
        self.assertEqual(call.body["success"], [wire.op_put("key1", "new value"), wire.op_delete("k", prefix=True)])
        self.assertEqual(call.body["failure"], [wire.op_range("key1")])

    def test_no_compares(self):
        """An empty first section always succeeds."""
        self.assertEqual(parse_txn("\nput a b\n").body, {"compare": [], "success": [wire.op_put("a", "b")], "failure": []})

    def test_bad_text_names_the_line(self):
        """A line that is not a compare or a request is refused with itself in the message."""
        with self.assertRaises(TxnSyntaxError) as raised:
            parse_txn('mod(key1) > 0\n\nput a b\n')
        self.assertIn("mod(key1)", str(raised.exception))
        self.assertRaises(TxnSyntaxError, parse_txn, "\nfrobnicate a\n")
        self.assertRaises(TxnSyntaxError, parse_txn, '\nput a\n')


class OutputTests(SynchronousTestCase):
    """metastorectl's table."""

    def test_table_is_boxed_and_aligned(self):
        """Every line is as wide as the others."""
        lines = table(["key", "value"], [["a", "longer value"]]).splitlines()
        self.assertEqual(len({len(line) for line in lines}), 1)
        self.assertEqual(lines[1].split("|")[1].strip(), "KEY")
        self.assertEqual(lines[3].split("|")[2].strip(), "longer value")
