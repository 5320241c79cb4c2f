"""``GrpcService``: grpc.aio served on the asyncio reactor's loop.

The servicers here are test doubles (a fixed Maintenance.Status that
awaits a Deferred, a Watch that echoes creates and cancels); they prove
the bridge, not etcd's semantics.  Most tests need the asyncio reactor:

    python -m twisted.trial --reactor=asyncio tests.api.grpc.test_server

(the Makefile's ``test`` target runs them so); under another reactor
they are skipped with that command as the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading

import grpc
from twisted.internet import reactor, task, utils
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from metastore.api.grpc.proto import rpc_pb2, rpc_pb2_grpc
from metastore.errors import NoLeader, StartupError
from metastore.api.grpc.server import GrpcService, WrongReactor, as_deferred, as_future, asyncio_loop
from metastore.api.grpc.status import answers_etcd_errors

ASYNCIO_ONLY = "needs the asyncio reactor: python -m twisted.trial --reactor=asyncio tests.api.grpc.test_server"
STREAMS = 1000
ETCDCTL = "/usr/bin/etcdctl"
CALL_TIMEOUT = 10.0


def os_threads() -> int:
    """Threads of this process as the kernel counts them (C threads too)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads: line in /proc/self/status")


class FixedStatus(rpc_pb2_grpc.MaintenanceServicer):
    """Answers Status with fixed fields, after awaiting a Deferred that the
    reactor fires later: the path a servicer awaiting the node takes."""

    async def Status(self, request, context):
        applied = await as_future(task.deferLater(reactor, 0.01, lambda: 42), reactor)
        return rpc_pb2.StatusResponse(
            header=rpc_pb2.ResponseHeader(cluster_id=7, member_id=1, revision=5, raft_term=2),
            version="3.4.23",
            leader=1,
            raftAppliedIndex=applied,
            raftIndex=applied,
        )


class EchoWatch(rpc_pb2_grpc.WatchServicer):
    """Answers every create with ``created`` and its watch id, and every
    cancel with ``canceled``: many watches on one stream."""

    async def Watch(self, request_iterator, context):
        async for request in request_iterator:
            if request.HasField("create_request"):
                yield rpc_pb2.WatchResponse(watch_id=request.create_request.watch_id, created=True)
            elif request.HasField("cancel_request"):
                yield rpc_pb2.WatchResponse(watch_id=request.cancel_request.watch_id, canceled=True)


class LeaderlessKV(rpc_pb2_grpc.KVServicer):
    """A KV whose Range fails as a member without a leader does."""

    @answers_etcd_errors
    async def Range(self, request, context):
        raise NoLeader("no leader known")


def register_doubles(server: grpc.aio.Server) -> None:
    """The registration the tests start the service with."""
    rpc_pb2_grpc.add_KVServicer_to_server(LeaderlessKV(), server)
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(FixedStatus(), server)
    rpc_pb2_grpc.add_WatchServicer_to_server(EchoWatch(), server)


def create(watch_id: int) -> rpc_pb2.WatchRequest:
    """A WatchRequest creating watch ``watch_id``."""
    return rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"k", watch_id=watch_id))


class GrpcServiceTests(TestCase):
    """The service on the running asyncio reactor, with a grpc.aio client
    on the same loop."""

    def setUp(self):
        try:
            asyncio_loop(reactor)
        except WrongReactor:
            raise SkipTest(ASYNCIO_ONLY)
        self.service = GrpcService(reactor, "127.0.0.1", 0, [register_doubles])
        self.service.startService()
        self.addCleanup(self.stop_service)
        return self.service.listening

    def stop_service(self):
        """Stop the service if a test left it running."""
        if self.service.running:
            return self.service.stopService()

    def channel(self) -> grpc.aio.Channel:
        """A client channel to the service, closed after the test."""
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.service.port}")
        self.addCleanup(lambda: as_deferred(channel.close(), reactor))
        return channel

    async def test_unary_call_awaits_a_deferred(self):
        """A unary call reaches the servicer, which awaits a Deferred the
        reactor fires, and answers its fields."""
        stub = rpc_pb2_grpc.MaintenanceStub(self.channel())
        status = await as_deferred(stub.Status(rpc_pb2.StatusRequest(), timeout=CALL_TIMEOUT), reactor)
        self.assertEqual(
            (status.version, status.leader, status.raftIndex, status.raftAppliedIndex), ("3.4.23", 1, 42, 42)
        )

    async def test_etcdctl_reads_status(self):
        """Debian's etcdctl (a Go gRPC client) reads Maintenance.Status from
        the service: ``endpoint status -w json`` prints its fields."""
        if not os.access(ETCDCTL, os.X_OK):
            raise SkipTest(f"{ETCDCTL} is missing: install Debian's etcd-client")
        args = ["--endpoints", f"127.0.0.1:{self.service.port}", "--command-timeout=5s",
                "endpoint", "status", "-w", "json"]
        d = utils.getProcessOutputAndValue(ETCDCTL, args, env={"ETCDCTL_API": "3"}, reactor=reactor)
        d.addTimeout(30, reactor)
        out, err, code = await d
        self.assertEqual(code, 0, err)
        [endpoint] = json.loads(out)
        status = endpoint["Status"]
        self.assertEqual(
            (status["header"]["member_id"], status["version"], status["leader"], status["raftIndex"]),
            (1, "3.4.23", 1, 42),
        )

    async def test_failure_answers_etcds_status(self):
        """A servicer that raises NoLeader ends the call with etcd's
        UNAVAILABLE and "etcdserver: no leader", which clients retry on."""
        stub = rpc_pb2_grpc.KVStub(self.channel())

        async def call_range():
            try:
                await stub.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as e:
                return e.code(), e.details()
            return None

        self.assertEqual(
            await as_deferred(call_range(), reactor), (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
        )

    async def test_many_watches_on_one_stream(self):
        """Creates and cancels on one bidirectional stream are answered in
        order, each with its own watch id."""
        stub = rpc_pb2_grpc.WatchStub(self.channel())

        async def converse():
            call = stub.Watch(timeout=CALL_TIMEOUT)
            answers = []
            for watch_id in (1, 2, 3):
                await call.write(create(watch_id))
                answers.append(await call.read())
            await call.write(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=2)))
            answers.append(await call.read())
            await call.done_writing()
            end = await call.read()
            return [(a.watch_id, a.created, a.canceled) for a in answers], end

        answers, end = await as_deferred(converse(), reactor)
        self.assertEqual(answers, [(1, True, False), (2, True, False), (3, True, False), (2, False, True)])
        self.assertIs(end, grpc.aio.EOF)

    async def test_streams_cost_no_thread(self):
        """A thousand open Watch streams add no thread to the process: the
        streams are coroutines on the one loop.  (A thread per stream would
        add a thousand; gRPC's own pool is fixed.)"""
        stub = rpc_pb2_grpc.WatchStub(self.channel())

        async def open_streams(count: int, first_id: int) -> list:
            calls = []
            for watch_id in range(first_id, first_id + count):
                call = stub.Watch(timeout=60)
                await call.write(create(watch_id))
                answer = await call.read()
                assert answer.watch_id == watch_id and answer.created, answer
                calls.append(call)
            return calls

        warm = await as_deferred(open_streams(1, 0), reactor)
        before = (os_threads(), threading.active_count())
        calls = await as_deferred(open_streams(STREAMS, 1), reactor)
        after = (os_threads(), threading.active_count())
        for call in warm + calls:
            call.cancel()
        self.assertEqual(len(calls), STREAMS)
        self.assertEqual(after[1], before[1], "Python threads grew with the streams")
        self.assertLessEqual(after[0] - before[0], 4, f"OS threads {before[0]} -> {after[0]} for {STREAMS} streams")

    async def test_stop_closes_the_port(self):
        """After stopService the port refuses calls (UNAVAILABLE)."""
        port = self.service.port
        await self.service.stopService()
        self.assertIsNone(self.service.port)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.addCleanup(lambda: as_deferred(channel.close(), reactor))
        stub = rpc_pb2_grpc.MaintenanceStub(channel)

        async def call_status():
            try:
                await stub.Status(rpc_pb2.StatusRequest(), timeout=2)
            except grpc.aio.AioRpcError as e:
                return e.code()
            return None

        self.assertEqual(await as_deferred(call_status(), reactor), grpc.StatusCode.UNAVAILABLE)

    async def test_request_size_limit(self):
        """A request above max_request_bytes plus the 512 KiB envelope is
        refused with RESOURCE_EXHAUSTED before the servicer; one below it
        reaches the servicer (which answers "no leader")."""
        small = GrpcService(reactor, "127.0.0.1", 0, [register_doubles], max_request_bytes=1024)
        small.startService()
        self.addCleanup(small.stopService)
        port = await small.listening
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.addCleanup(lambda: as_deferred(channel.close(), reactor))
        stub = rpc_pb2_grpc.KVStub(channel)

        async def range_code(key_bytes: int):
            try:
                await stub.Range(rpc_pb2.RangeRequest(key=b"k" * key_bytes), timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as e:
                return e.code()
            return None

        limit = 1024 + 512 * 1024
        self.assertEqual(await as_deferred(range_code(limit + 1), reactor), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(await as_deferred(range_code(limit - 64), reactor), grpc.StatusCode.UNAVAILABLE)

    async def test_busy_port_is_a_startup_error(self):
        """A port another socket holds is a StartupError naming gRPC and the
        address, raised by ``bind`` before anything starts (twistd turns it
        into one line); it is not shared through SO_REUSEPORT.  Started
        without binding first, the same failure fails ``listening``."""
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        second = GrpcService(reactor, "127.0.0.1", port, [register_doubles])
        with self.assertRaises(StartupError) as caught:
            second.privilegedStartService()
        self.assertEqual(str(caught.exception), f"cannot listen for gRPC on 127.0.0.1:{port}: Address already in use")
        self.assertIsNone(second.port)
        third = GrpcService(reactor, "127.0.0.1", port, [register_doubles])
        third.startService()
        self.addCleanup(third.stopService)
        with self.assertRaises(StartupError):
            await third.listening


class WrongReactorTests(SynchronousTestCase):
    """Any reactor but the asyncio reactor is refused with a clear message."""

    def test_start_on_another_reactor_raises(self):
        """startService on a non-asyncio reactor raises ``WrongReactor``
        naming the reactor and the twistd flag, and does not run."""
        service = GrpcService(MemoryReactorClock(), "127.0.0.1", 0)
        with self.assertRaises(WrongReactor) as caught:
            service.startService()
        self.assertIn("--reactor=asyncio", str(caught.exception))
        self.assertIn("MemoryReactorClock", str(caught.exception))
        self.assertFalse(service.running)

    def test_loop_of_the_asyncio_reactor(self):
        """``asyncio_loop`` finds the loop an asyncio reactor wraps."""
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        self.assertIs(asyncio_loop(AsyncioSelectorReactor(loop)), loop)
