"""The KV, Cluster and Maintenance servicers on a real in-process member.

A member started with a gRPC port, driven by a ``grpc.aio`` client on the
same loop.  Needs the asyncio reactor:

    python -m twisted.trial --reactor=asyncio tests.api.grpc.test_servicers

(skipped with that command as the reason under another reactor).
"""

from __future__ import annotations

import base64
import json

import grpc
from twisted.internet import reactor
from twisted.trial.unittest import SkipTest

from metastore.api.grpc.proto import rpc_pb2, rpc_pb2_grpc
from metastore.api.grpc.server import WrongReactor, as_deferred, asyncio_loop
from metastore.snapshots import stream
from metastore.snapshots.format import read_snapshot
from tests.api.test_rest import SingleMemberTestCase
from tests.process import free_port, wait_until

ASYNCIO_ONLY = "needs the asyncio reactor: python -m twisted.trial --reactor=asyncio tests.api.grpc.test_servicers"
CALL_TIMEOUT = 10.0


class GrpcMemberTestCase(SingleMemberTestCase):
    """One member serving gRPC; ``call`` makes one RPC."""

    async def setUp(self):
        try:
            asyncio_loop(reactor)
        except WrongReactor:
            raise SkipTest(ASYNCIO_ONLY)
        await self.start_member(grpc_port=0)
        port = await self.member.grpc.listening
        self.grpc_url = f"http://127.0.0.1:{port}"
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.addCleanup(lambda: as_deferred(channel.close(), reactor))
        self.kv = rpc_pb2_grpc.KVStub(channel)
        self.cluster = rpc_pb2_grpc.ClusterStub(channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(channel)

    async def call(self, method, request):
        """The response of one unary call."""
        return await as_deferred(method(request, timeout=CALL_TIMEOUT), reactor)

    async def failure(self, method, request) -> tuple[grpc.StatusCode, str]:
        """The code and message of a call that must fail."""

        async def attempt():
            try:
                await method(request, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as e:
                return e.code(), e.details()
            return None

        failed = await as_deferred(attempt(), reactor)
        self.assertIsNotNone(failed, "the call succeeded")
        return failed

    async def put(self, key: bytes, value: bytes) -> int:
        """Put through gRPC; the revision."""
        return (await self.call(self.kv.Put, rpc_pb2.PutRequest(key=key, value=value))).header.revision


class KVServicerTests(GrpcMemberTestCase):
    """``KV`` answers as etcd does and shares revisions with the JSON API."""

    async def test_put_range_delete_share_revisions_with_json(self):
        """A put through gRPC is read through JSON at the same revision and
        the other way round; the header names cluster, member and term."""
        revision = await self.put(b"a", b"1")
        _, body = await self.request("POST", "/v3/kv/range", json.dumps({"key": "YQ=="}).encode())
        self.assertEqual(json.loads(body)["kvs"][0]["mod_revision"], str(revision))
        await self.request("POST", "/v3/kv/put", json.dumps({"key": "Yg==", "value": "Mg=="}).encode())
        answer = await self.call(self.kv.Range, rpc_pb2.RangeRequest(key=b"a", range_end=b"c"))
        self.assertEqual([(kv.key, kv.value) for kv in answer.kvs], [(b"a", b"1"), (b"b", b"2")])
        self.assertEqual((answer.header.revision, answer.header.member_id), (revision + 1, 1))
        self.assertEqual(answer.header.raft_term, self.member.api.term)
        self.assertNotEqual(answer.header.cluster_id, 0)
        deleted = await self.call(self.kv.DeleteRange, rpc_pb2.DeleteRangeRequest(key=b"a", prev_kv=True))
        self.assertEqual((deleted.deleted, deleted.prev_kvs[0].value), (1, b"1"))

    async def test_range_options(self):
        """Limit, sort, keys-only and count-only reach the store."""
        for key in (b"k1", b"k2", b"k3"):
            await self.put(key, b"v" + key)
        answer = await self.call(self.kv.Range, rpc_pb2.RangeRequest(
            key=b"k", range_end=b"l", limit=2, sort_order=rpc_pb2.RangeRequest.DESCEND, keys_only=True))
        self.assertEqual(([kv.key for kv in answer.kvs], [kv.value for kv in answer.kvs]), ([b"k3", b"k2"], [b"", b""]))
        self.assertEqual((answer.more, answer.count), (True, 3))
        counted = await self.call(self.kv.Range, rpc_pb2.RangeRequest(key=b"k", range_end=b"l", count_only=True))
        self.assertEqual((len(counted.kvs), counted.count), (0, 3))

    async def test_txn_and_nested_headers(self):
        """A txn takes its branch by its compares; operations' responses carry the revision alone."""
        first = await self.put(b"k", b"v")
        answer = await self.call(self.kv.Txn, rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=b"k", target=rpc_pb2.Compare.MOD, mod_revision=first)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k", value=b"w"))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"k"))],
        ))  # fmt: skip
        self.assertTrue(answer.succeeded)
        put = answer.responses[0].response_put
        self.assertEqual((put.header.revision, put.header.member_id), (first + 1, 0))

    async def test_errors_are_etcds(self):
        """Compacted and future revisions, too many operations and an empty
        key answer etcd 3.4's codes and messages."""
        for value in (b"1", b"2", b"3"):
            revision = await self.put(b"k", value)
        await self.call(self.kv.Compact, rpc_pb2.CompactionRequest(revision=revision - 1, physical=True))
        self.assertEqual(
            await self.failure(self.kv.Range, rpc_pb2.RangeRequest(key=b"k", revision=revision - 2)),
            (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"),
        )
        self.assertEqual(
            await self.failure(self.kv.Range, rpc_pb2.RangeRequest(key=b"k", revision=revision + 5)),
            (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"),
        )
        ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k%d" % i)) for i in range(129)]
        self.assertEqual(
            await self.failure(self.kv.Txn, rpc_pb2.TxnRequest(success=ops)),
            (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: too many operations in txn request"),
        )
        self.assertEqual(
            await self.failure(self.kv.Put, rpc_pb2.PutRequest(key=b"")),
            (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided"),
        )


class ClusterServicerTests(GrpcMemberTestCase):
    """``Cluster`` lists the gRPC URL as a member's client URL."""

    async def test_member_list_names_the_grpc_url(self):
        """Once published, MemberList over gRPC lists the member's gRPC URL
        (where a gRPC client can dial it); the JSON API its HTTP URL."""
        await wait_until(lambda: self.member.node.membership.members[1].grpc_url, timeout=10,
                         what="the gRPC URL published")
        answer = await self.call(self.cluster.MemberList, rpc_pb2.MemberListRequest())
        [me] = answer.members
        self.assertEqual((me.ID, me.name, list(me.clientURLs), me.isLearner), (1, "member-1", [self.grpc_url], False))
        self.assertEqual(answer.header.revision, 0)
        _, body = await self.request("POST", "/v3/cluster/member/list", b"{}")
        self.assertEqual(json.loads(body)["members"][0]["clientURLs"], [self.url])

    async def test_add_learner_promote_refused_remove(self):
        """A learner is added with the next id, cannot be promoted before it
        caught up, and is removed; an unknown id is NOT_FOUND."""
        url = f"http://127.0.0.1:{free_port()}"
        added = await self.call(self.cluster.MemberAdd, rpc_pb2.MemberAddRequest(peerURLs=[url], isLearner=True))
        self.assertEqual((added.member.ID, list(added.member.peerURLs), added.member.isLearner), (2, [url], True))
        self.assertEqual([m.ID for m in added.members], [1, 2])
        self.assertEqual(
            await self.failure(self.cluster.MemberPromote, rpc_pb2.MemberPromoteRequest(ID=2)),
            (grpc.StatusCode.FAILED_PRECONDITION,
             "etcdserver: can only promote a learner member which is in sync with leader"),
        )  # fmt: skip
        removed = await self.call(self.cluster.MemberRemove, rpc_pb2.MemberRemoveRequest(ID=2))
        self.assertEqual([m.ID for m in removed.members], [1])
        self.assertEqual(
            await self.failure(self.cluster.MemberRemove, rpc_pb2.MemberRemoveRequest(ID=9)),
            (grpc.StatusCode.NOT_FOUND, "etcdserver: member not found"),
        )
        self.assertEqual(
            (await self.failure(self.cluster.MemberAdd, rpc_pb2.MemberAddRequest(peerURLs=[url, url])))[0],
            grpc.StatusCode.INVALID_ARGUMENT,
        )


class MaintenanceServicerTests(GrpcMemberTestCase):
    """``Maintenance`` answers this member's view, as the JSON API does."""

    async def test_status_hashkv_alarm_defragment(self):
        """Status names the leader and indexes; HashKV equals the JSON
        API's; no alarm is raised; Defragment is accepted."""
        revision = await self.put(b"k", b"v")
        status = await self.call(self.maintenance.Status, rpc_pb2.StatusRequest())
        self.assertEqual((status.version, status.leader, status.header.revision), ("3.4.23", 1, revision))
        self.assertGreater(status.raftAppliedIndex, 0)
        hashed = await self.call(self.maintenance.HashKV, rpc_pb2.HashKVRequest())
        _, body = await self.request("POST", "/v3/maintenance/hashkv", b"{}")
        self.assertEqual(str(hashed.hash), json.loads(body)["hash"])
        alarms = await self.call(self.maintenance.Alarm, rpc_pb2.AlarmRequest())
        self.assertEqual(list(alarms.alarms), [])
        await self.call(self.maintenance.Defragment, rpc_pb2.DefragmentRequest())

    async def test_move_leader_to_a_stranger_is_refused(self):
        """MoveLeader to an id that is no voter: etcd's "bad leader transferee"."""
        self.assertEqual(
            await self.failure(self.maintenance.MoveLeader, rpc_pb2.MoveLeaderRequest(targetID=7)),
            (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: bad leader transferee"),
        )

    async def test_snapshot_stream(self):
        """The stream is aligned as etcdctl wants it, counts down to 0, and
        holds a snapshot with the keys; the JSON API streams the same form."""
        await self.put(b"k", b"v")

        async def read_all():
            return [r async for r in self.maintenance.Snapshot(rpc_pb2.SnapshotRequest(), timeout=CALL_TIMEOUT)]

        responses = await as_deferred(read_all(), reactor)
        data = b"".join(r.blob for r in responses)
        self.assertEqual(responses[-1].remaining_bytes, 0)
        self.assertEqual(responses[0].remaining_bytes, len(data) - len(responses[0].blob))
        self.assertEqual((len(data) - 32) % 512, 0)
        saved, inner = self.mktemp(), self.mktemp()
        with open(saved, "wb") as out:
            out.write(data)
        self.assertTrue(stream.unwrap(saved, inner))
        _, events = read_snapshot(inner)
        self.assertIn(b"k", [event.kv.key for event in events])
        _, body = await self.request("POST", "/v3/maintenance/snapshot", b"{}")
        blobs = [base64.b64decode(json.loads(line)["result"].get("blob", "")) for line in body.splitlines()]
        self.assertEqual((len(b"".join(blobs)) - 32) % 512, 0)
