"""MetaStore's ``.proto`` files against etcd itself.

A real etcd 3.4 is driven with the stubs generated from our ``.proto``
files.  A wrong field number would show as a field etcd ignores (the
assertions on what it did fail) or as a field we cannot decode (it lands
among a message's unknown fields, which every test checks are empty); a
wrong package, service or method name answers UNIMPLEMENTED.

The generated modules are also checked to be what ``make protos`` makes
from the ``.proto`` files now, so the two cannot drift apart.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, unknown_fields
from google.protobuf.message import Message
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from metastore.api.grpc import codegen
from metastore.api.grpc.proto import auth_pb2, kv_pb2, rpc_pb2, rpc_pb2_grpc
from metastore.bench.servers import start_etcd, wait_for

ETCD = "/usr/bin/etcd"
CALL_TIMEOUT = 10.0
"""Seconds any one call (or stream) may take before the test fails."""


def unknown_field_paths(message: Message, path: str = "") -> list[str]:
    """Where ``message`` (recursively) holds fields our descriptors do not
    know: each a path such as ``RangeResponse.kvs[0]#7``."""
    here = path or type(message).__name__
    found = [f"{here}#{field.field_number}" for field in unknown_fields.UnknownFieldSet(message)]
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        if descriptor.is_repeated:
            for i, item in enumerate(value):
                found += unknown_field_paths(item, f"{here}.{descriptor.name}[{i}]")
        else:
            found += unknown_field_paths(value, f"{here}.{descriptor.name}")
    return found


def without_json_names(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """``file`` without the ``json_name`` that protoc's descriptor sets add
    to every field and generated modules leave out (it is derived)."""
    file = descriptor_pb2.FileDescriptorProto.FromString(file.SerializeToString())
    messages = list(file.message_type)
    while messages:
        message = messages.pop()
        for field in message.field:
            field.ClearField("json_name")
        messages.extend(message.nested_type)
    return file


class RequestStream:
    """The request side of a bidirectional call, fed one message at a time;
    ``close`` ends it.  ``get`` waits at most ``CALL_TIMEOUT``."""

    _END = object()

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()

    def send(self, message: Message) -> None:
        """Queue ``message`` for the call."""
        self._queue.put(message)

    def close(self) -> None:
        """End the request stream (the client half-closes)."""
        self._queue.put(self._END)

    def __iter__(self):
        while True:
            item = self._queue.get(timeout=CALL_TIMEOUT)
            if item is self._END:
                return
            yield item


class GeneratedModulesTests(SynchronousTestCase):
    """The committed modules are what the ``.proto`` files generate."""

    def setUp(self):
        try:
            import grpc_tools  # noqa: F401
        except ImportError:
            raise SkipTest("grpcio-tools is not installed (pip install '.[test]')")
        self.out = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.out)

    def test_committed_modules_embed_the_proto_files(self):
        """Each committed module embeds exactly the descriptor protoc builds
        from its .proto file now (run ``make protos`` after editing one).
        Compared as descriptors, so another grpcio-tools version agrees."""
        built = descriptor_pb2.FileDescriptorSet.FromString(codegen.descriptor_set(self.out))
        committed = {module.DESCRIPTOR.name: module.DESCRIPTOR.serialized_pb for module in (kv_pb2, auth_pb2, rpc_pb2)}
        self.assertEqual(sorted(committed), sorted(f.name for f in built.file))
        for file in built.file:
            self.assertEqual(
                descriptor_pb2.FileDescriptorProto.FromString(committed[file.name]), without_json_names(file),
                f"{file.name}: the committed module is stale; run `make protos`",
            )

    def test_regeneration_writes_every_module(self):
        """``make protos`` writes the modules that are committed, and with
        the grpcio-tools that made them, the same bytes."""
        generated = codegen.generate(self.out)
        self.assertEqual(
            sorted(p.name for p in generated),
            ["auth_pb2.py", "auth_pb2.pyi", "kv_pb2.py", "kv_pb2.pyi", "rpc_pb2.py", "rpc_pb2.pyi", "rpc_pb2_grpc.py"],
        )
        if rpc_pb2_grpc.GRPC_GENERATED_VERSION != version("grpcio-tools"):
            raise SkipTest(
                f"modules generated by grpcio-tools {rpc_pb2_grpc.GRPC_GENERATED_VERSION}, "
                f"{version('grpcio-tools')} installed: bytes differ in their version stamps"
            )
        for path in generated:
            committed = codegen.PROTO_DIR / path.name
            self.assertEqual(path.read_bytes(), committed.read_bytes(), f"{committed} is stale: run `make protos`")

class NamesTests(SynchronousTestCase):
    """The generated descriptors carry etcd's package and service names."""

    def test_service_names_are_etcds(self):
        """The services live in package etcdserverpb under etcd's names,
        which is what makes their method paths ``/etcdserverpb.KV/Range``."""
        services = rpc_pb2.DESCRIPTOR.services_by_name
        self.assertEqual(
            {name: services[name].full_name for name in services},
            {n: f"etcdserverpb.{n}" for n in ("KV", "Watch", "Lease", "Cluster", "Maintenance", "Auth")},
        )
        self.assertEqual(kv_pb2.DESCRIPTOR.package, "mvccpb")


class EtcdWireContractTests(SynchronousTestCase):
    """Our stubs against a real etcd 3.4.23 on free 127.0.0.1 ports."""

    def setUp(self):
        if not os.access(ETCD, os.X_OK):
            raise SkipTest(f"{ETCD} is missing: install Debian's etcd-server to check the wire contract")
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        self.etcd = start_etcd(workdir, ETCD)
        self.addCleanup(self.etcd.stop)
        wait_for(self.etcd.url + "/health", timeout=30)
        target = self.etcd.url.removeprefix("http://")
        self.channel = grpc.insecure_channel(target)
        self.addCleanup(self.channel.close)
        grpc.channel_ready_future(self.channel).result(timeout=CALL_TIMEOUT)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.watch = rpc_pb2_grpc.WatchStub(self.channel)
        self.cluster = rpc_pb2_grpc.ClusterStub(self.channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(self.channel)

    def decoded(self, response: Message) -> Message:
        """``response``, after checking that we decoded every field etcd sent."""
        self.assertEqual(unknown_field_paths(response), [])
        return response

    def put(self, key: bytes, value: bytes, **fields) -> rpc_pb2.PutResponse:
        """One Put, decoded and checked."""
        request = rpc_pb2.PutRequest(key=key, value=value, **fields)
        return self.decoded(self.kv.Put(request, timeout=CALL_TIMEOUT))

    def test_put_and_range(self):
        """Put answers the new revision and, asked for, the previous kv;
        Range answers the kv with its revisions, version and value, honours
        range_end, limit, sort, keys_only and count_only."""
        first = self.put(b"a/1", b"one")
        self.assertGreater(first.header.revision, 1)
        self.assertNotEqual(first.header.cluster_id, 0)
        self.assertNotEqual(first.header.member_id, 0)
        self.assertGreater(first.header.raft_term, 0)
        self.assertFalse(first.HasField("prev_kv"))
        second = self.put(b"a/1", b"uno", prev_kv=True)
        self.assertEqual(second.header.revision, first.header.revision + 1)
        self.assertEqual(second.prev_kv.value, b"one")
        self.assertEqual(second.prev_kv.mod_revision, first.header.revision)
        self.put(b"a/2", b"two")
        self.put(b"b", b"other")

        one = self.decoded(self.kv.Range(rpc_pb2.RangeRequest(key=b"a/1"), timeout=CALL_TIMEOUT))
        self.assertEqual(one.count, 1)
        kv = one.kvs[0]
        self.assertEqual(
            (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease),
            (b"a/1", b"uno", first.header.revision, second.header.revision, 2, 0),
        )
        prefix = rpc_pb2.RangeRequest(
            key=b"a/", range_end=b"a0", limit=1,
            sort_order=rpc_pb2.RangeRequest.DESCEND, sort_target=rpc_pb2.RangeRequest.KEY,
        )
        page = self.decoded(self.kv.Range(prefix, timeout=CALL_TIMEOUT))
        self.assertEqual(([kv.key for kv in page.kvs], page.more, page.count), ([b"a/2"], True, 2))
        keys = self.decoded(self.kv.Range(rpc_pb2.RangeRequest(key=b"a/", range_end=b"a0", keys_only=True),
                                          timeout=CALL_TIMEOUT))
        self.assertEqual([(kv.key, kv.value) for kv in keys.kvs], [(b"a/1", b""), (b"a/2", b"")])
        counted = self.decoded(self.kv.Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", count_only=True),
                                             timeout=CALL_TIMEOUT))
        self.assertEqual((counted.count, len(counted.kvs)), (3, 0))
        old = self.decoded(self.kv.Range(rpc_pb2.RangeRequest(key=b"a/1", revision=first.header.revision),
                                         timeout=CALL_TIMEOUT))
        self.assertEqual(old.kvs[0].value, b"one")

    def test_txn_compares_and_branches(self):
        """A Txn whose compare holds runs its success ops and reports each
        op's response in its oneof; one that fails runs the failure ops."""
        put = self.put(b"k", b"v1")
        compare = rpc_pb2.Compare(
            key=b"k", result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.MOD, mod_revision=put.header.revision
        )
        txn = rpc_pb2.TxnRequest(
            compare=[compare],
            success=[
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k", value=b"v2", prev_kv=True)),
                rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"k")),
            ],
            failure=[rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"k"))],
        )
        won = self.decoded(self.kv.Txn(txn, timeout=CALL_TIMEOUT))
        self.assertTrue(won.succeeded)
        self.assertEqual([r.WhichOneof("response") for r in won.responses], ["response_put", "response_range"])
        self.assertEqual(won.responses[0].response_put.prev_kv.value, b"v1")
        self.assertEqual(won.responses[1].response_range.kvs[0].value, b"v2")
        # Inside a txn etcd sends each response's revision alone.
        self.assertEqual(won.responses[0].response_put.header, rpc_pb2.ResponseHeader(revision=won.header.revision))
        self.assertEqual(won.responses[1].response_range.header,
                         rpc_pb2.ResponseHeader(revision=won.header.revision))
        lost = self.decoded(self.kv.Txn(txn, timeout=CALL_TIMEOUT))
        self.assertFalse(lost.succeeded)
        self.assertEqual(lost.responses[0].response_delete_range.deleted, 1)
        value_compare = rpc_pb2.Compare(
            key=b"missing", result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.VALUE, value=b""
        )
        nested = rpc_pb2.TxnRequest(
            compare=[value_compare],
            failure=[rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(
                success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"n", value=b"x"))]))],
        )
        inner = self.decoded(self.kv.Txn(nested, timeout=CALL_TIMEOUT))
        self.assertFalse(inner.succeeded)
        self.assertTrue(inner.responses[0].response_txn.succeeded)
        # A nested txn's header is present and empty.
        self.assertTrue(inner.responses[0].response_txn.HasField("header"))
        self.assertEqual(inner.responses[0].response_txn.header, rpc_pb2.ResponseHeader())

    def test_txn_with_an_empty_operation(self):
        """etcd 3.4 refuses an operation that names no request with
        INVALID_ARGUMENT "etcdserver: key not found"."""
        with self.assertRaises(grpc.RpcError) as caught:
            self.kv.Txn(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp()]), timeout=CALL_TIMEOUT)
        self.assertEqual(
            (caught.exception.code(), caught.exception.details()),
            (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key not found"),
        )

    def test_delete_range_and_compact(self):
        """DeleteRange counts and returns what it removed; after Compact a
        read below the compacted revision fails with etcd's error."""
        first = self.put(b"d/1", b"x")
        self.put(b"d/2", b"y")
        deleted = self.decoded(self.kv.DeleteRange(
            rpc_pb2.DeleteRangeRequest(key=b"d/", range_end=b"d0", prev_kv=True), timeout=CALL_TIMEOUT))
        self.assertEqual(deleted.deleted, 2)
        self.assertEqual(sorted(kv.value for kv in deleted.prev_kvs), [b"x", b"y"])
        compacted = self.decoded(self.kv.Compact(
            rpc_pb2.CompactionRequest(revision=deleted.header.revision, physical=True), timeout=CALL_TIMEOUT))
        self.assertEqual(compacted.header.revision, deleted.header.revision)
        with self.assertRaises(grpc.RpcError) as caught:
            self.kv.Range(rpc_pb2.RangeRequest(key=b"d/1", revision=first.header.revision), timeout=CALL_TIMEOUT)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.OUT_OF_RANGE)
        self.assertEqual(caught.exception.details(), "etcdserver: mvcc: required revision has been compacted")

    def test_lease_grant_keepalive_and_attach(self):
        """LeaseGrant answers the id and TTL; LeaseKeepAlive is a
        bidirectional stream answering each request; a key put with the
        lease carries it; TimeToLive and Leases list it."""
        granted = self.decoded(self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30, ID=4242),
                                                     timeout=CALL_TIMEOUT))
        self.assertEqual((granted.ID, granted.TTL, granted.error), (4242, 30, ""))
        self.put(b"leased", b"v", lease=4242)
        requests = RequestStream()
        responses = self.lease.LeaseKeepAlive(iter(requests), timeout=CALL_TIMEOUT)
        for _ in range(2):
            requests.send(rpc_pb2.LeaseKeepAliveRequest(ID=4242))
            kept = self.decoded(next(responses))
            self.assertEqual((kept.ID, kept.TTL), (4242, 30))
        requests.close()
        self.assertEqual(list(responses), [])
        ttl = self.decoded(self.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=4242, keys=True),
                                                      timeout=CALL_TIMEOUT))
        self.assertEqual((ttl.ID, ttl.grantedTTL, list(ttl.keys)), (4242, 30, [b"leased"]))
        self.assertTrue(0 < ttl.TTL <= 30)
        leases = self.decoded(self.lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=CALL_TIMEOUT))
        self.assertEqual([s.ID for s in leases.leases], [4242])
        range_ = self.decoded(self.kv.Range(rpc_pb2.RangeRequest(key=b"leased"), timeout=CALL_TIMEOUT))
        self.assertEqual(range_.kvs[0].lease, 4242)
        self.decoded(self.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=4242), timeout=CALL_TIMEOUT))
        gone = self.decoded(self.kv.Range(rpc_pb2.RangeRequest(key=b"leased"), timeout=CALL_TIMEOUT))
        self.assertEqual(gone.count, 0)

    def test_watch_stream(self):
        """One Watch stream carries a create (answered ``created`` with the
        chosen id), the history replayed from ``start_revision`` with
        ``prev_kv``, live events, a progress response, and a cancel."""
        first = self.put(b"w/1", b"a")
        self.put(b"w/1", b"b")
        requests = RequestStream()
        responses = self.watch.Watch(iter(requests), timeout=CALL_TIMEOUT)
        requests.send(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=b"w/", range_end=b"w0", start_revision=first.header.revision, prev_kv=True, watch_id=7)))
        created = self.decoded(next(responses))
        self.assertEqual((created.watch_id, created.created, list(created.events)), (7, True, []))
        replayed = self.decoded(next(responses))
        self.assertEqual(
            [(e.type, e.kv.value, e.prev_kv.value) for e in replayed.events],
            [(kv_pb2.Event.PUT, b"a", b""), (kv_pb2.Event.PUT, b"b", b"a")],
        )
        self.decoded(self.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"w/1"), timeout=CALL_TIMEOUT))
        live = self.decoded(next(responses))
        self.assertEqual([(e.type, e.kv.key, e.prev_kv.value) for e in live.events],
                         [(kv_pb2.Event.DELETE, b"w/1", b"b")])
        requests.send(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))
        progress = self.decoded(next(responses))
        self.assertEqual((list(progress.events), progress.header.revision), ([], live.header.revision))
        requests.send(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=7)))
        canceled = self.decoded(next(responses))
        self.assertEqual((canceled.watch_id, canceled.canceled), (7, True))
        requests.close()

    def test_member_list_and_status(self):
        """MemberList names this member with its peer and client URLs;
        Status answers the version, the leader (itself), the Raft indexes
        and term, and that it is not a learner."""
        members = self.decoded(self.cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=CALL_TIMEOUT))
        self.assertEqual(len(members.members), 1)
        member = members.members[0]
        self.assertEqual((member.name, list(member.clientURLs), member.isLearner),
                         ("compare", [self.etcd.url], False))
        self.assertEqual(len(member.peerURLs), 1)
        self.assertEqual(member.ID, members.header.member_id)
        status = self.decoded(self.maintenance.Status(rpc_pb2.StatusRequest(), timeout=CALL_TIMEOUT))
        self.assertEqual((status.version, status.leader, status.isLearner), ("3.4.23", member.ID, False))
        self.assertGreater(status.raftIndex, 0)
        self.assertGreater(status.raftTerm, 0)
        self.assertGreater(status.raftAppliedIndex, 0)
        self.assertGreater(status.dbSize, 0)
        self.assertGreater(status.dbSizeInUse, 0)
        alarms = self.decoded(self.maintenance.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET),
                                                     timeout=CALL_TIMEOUT))
        self.assertEqual(list(alarms.alarms), [])
        hashed = self.decoded(self.maintenance.HashKV(rpc_pb2.HashKVRequest(), timeout=CALL_TIMEOUT))
        self.assertNotEqual(hashed.hash, 0)
