"""``Lease`` over gRPC on an in-process member: the answers etcd 3.4 gives
(checked against /usr/bin/etcd), the keepalive stream, and the code a
member without a leader answers.

    python -m twisted.trial --reactor=asyncio tests.api.grpc.test_lease_servicer
"""

from __future__ import annotations

import grpc
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from metastore.api.grpc.proto import rpc_pb2, rpc_pb2_grpc
from metastore.config import Config
from metastore.service import open_member
from metastore.kv.messages import PutRequest
from tests.api.grpc.member import open_channel, require_asyncio, run, start_member
from tests.process import free_port

CALL_TIMEOUT = 10.0


async def status_of_call(call):
    """``(code, details)`` of a failed call, or ``("OK", response)``."""
    try:
        return "OK", await call
    except grpc.aio.AioRpcError as e:
        return e.code(), e.details()


class LeaseServicerTests(TestCase):
    """Grant, revoke, time-to-live, list and keepalive on one member."""

    async def setUp(self):
        require_asyncio(__name__)
        self.member, port = await start_member(self)
        self.lease = rpc_pb2_grpc.LeaseStub(open_channel(self, port))

    async def test_grant_list_time_to_live_revoke(self):
        """A granted lease is listed, its TTL and keys read back; revoking
        it deletes its key and it is gone (TTL -1, as etcd answers)."""
        granted = await run(self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60, ID=77), timeout=CALL_TIMEOUT))
        self.assertEqual((granted.ID, granted.TTL, granted.header.member_id), (77, 60, 1))
        await self.member.api.propose(PutRequest(b"leased", b"v", lease=77))
        listed = await run(self.lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=CALL_TIMEOUT))
        self.assertEqual([lease.ID for lease in listed.leases], [77])
        ttl = await run(self.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=77, keys=True),
                                                   timeout=CALL_TIMEOUT))
        self.assertEqual((ttl.ID, ttl.grantedTTL, list(ttl.keys)), (77, 60, [b"leased"]))
        self.assertTrue(55 <= ttl.TTL <= 60, ttl.TTL)
        revoked = await run(self.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=77), timeout=CALL_TIMEOUT))
        self.assertEqual(revoked.header.revision, self.member.api.revision)
        self.assertIsNone(self.member.api.get(b"leased"))
        gone = await run(self.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=77), timeout=CALL_TIMEOUT))
        self.assertEqual((gone.ID, gone.TTL, gone.grantedTTL), (77, -1, 0))

    async def test_errors_are_etcds(self):
        """Revoking an unknown lease is NOT_FOUND, granting an id in use
        FAILED_PRECONDITION, a TTL above etcd's largest OUT_OF_RANGE, each
        with etcd's message; a TTL below the minimum gets the minimum."""
        await run(self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60, ID=5), timeout=CALL_TIMEOUT))
        answers = [
            await run(status_of_call(self.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=99), timeout=CALL_TIMEOUT))),
            await run(status_of_call(self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=9, ID=5),
                                                           timeout=CALL_TIMEOUT))),
            await run(status_of_call(self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=10**12, ID=6),
                                                           timeout=CALL_TIMEOUT))),
        ]
        self.assertEqual(answers, [
            (grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found"),
            (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: lease already exists"),
            (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: too large lease TTL"),
        ])
        short = await run(self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=-5), timeout=CALL_TIMEOUT))
        self.assertNotEqual(short.ID, 0)
        self.assertEqual(short.TTL, 2)  # 1.5 election timeouts of 1 s, rounded up, as etcd

    async def test_keepalive_stream_answers_each_request_and_survives_an_unknown_lease(self):
        """On one stream: a keepalive of a live lease answers its TTL, one
        of an unknown lease answers TTL 0 and the stream goes on."""
        await run(self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30, ID=8), timeout=CALL_TIMEOUT))

        async def converse():
            call = self.lease.LeaseKeepAlive(timeout=CALL_TIMEOUT)
            answers = []
            for lease_id in (8, 99, 8):
                await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=lease_id))
                answer = await call.read()
                answers.append((answer.ID, answer.TTL, answer.header.member_id))
            await call.done_writing()
            return answers, await call.read()

        answers, end = await run(converse())
        self.assertEqual(answers, [(8, 30, 1), (99, 0, 1), (8, 30, 1)])
        self.assertIs(end, grpc.aio.EOF)


class NoLeaderTests(TestCase):
    """A member that knows no leader answers with the code clients retry on."""

    async def test_grant_and_keepalive_without_a_leader_are_unavailable(self):
        """One member of a three-member cluster, alone: LeaseGrant and a
        keepalive stream end with UNAVAILABLE and an ``etcdserver:`` message
        (clientv3 retries on the code) within the request timeout."""
        require_asyncio(__name__)
        cluster = tuple(f"http://127.0.0.1:{free_port()}" for _ in range(3))
        config = Config(cluster=cluster, port=0, grpc_port=0, data_dir=self.mktemp(), request_timeout=1.0)
        member = open_member(config.validate(), reactor)
        member.privilegedStartService()
        member.startService()
        self.addCleanup(member.stopService)
        lease = rpc_pb2_grpc.LeaseStub(open_channel(self, await member.grpc.listening))
        grant = await run(status_of_call(lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=10), timeout=CALL_TIMEOUT)))

        async def keepalive():
            call = lease.LeaseKeepAlive(timeout=CALL_TIMEOUT)
            await call.write(rpc_pb2.LeaseKeepAliveRequest(ID=1))
            return await status_of_call(call.read())

        kept = await run(keepalive())
        for code, message in (grant, kept):
            self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
            self.assertIn(message, ("etcdserver: no leader", "etcdserver: request timed out"))
