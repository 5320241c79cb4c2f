"""``twistd metastore --workers 2`` as operators run it: the core starts
two fronts, starts a dead one again, stops them with itself, and a front
whose core died answers 503 (never hangs) and exits."""

from __future__ import annotations

import os
import signal

import grpc
import treq
from twisted.internet import endpoints, protocol, reactor
from twisted.trial.unittest import TestCase

from metastore.api.grpc.proto import rpc_pb2, rpc_pb2_grpc
from metastore.config import Config
from metastore.workers import auto
from tests.process import Cluster, Member, free_port, wait_healthy, wait_until

FRONTS = 2
CALL_TIMEOUT = 10.0


def children(pid: int) -> set[int]:
    """The ids of the processes whose parent is ``pid``."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class WorkersProcessTests(TestCase):
    """One member with two fronts, as a real process."""

    timeout = 120

    async def start(self):
        self.cluster = Cluster(self, 1, extra=["--workers", str(FRONTS)])
        self.member = self.cluster.members[1]
        self.member.start()
        self.addCleanup(self._reap_fronts)
        await self.cluster.put_until_ok(1, "ready", b"yes")
        fronts = await wait_until(lambda: len(children(self.member.process.pid)) == FRONTS and
                                  children(self.member.process.pid), timeout=30, what="two fronts")
        return fronts

    def _reap_fronts(self):
        # A front outlives a killed core by about a second; never leave one behind.
        for pid in getattr(self, "_front_pids", set()):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

    async def request(self, method: str, path: str, body: bytes | None = None, timeout: float = 10):
        d = treq.request(method, self.member.url + path, data=body, persistent=False)
        d.addTimeout(timeout, reactor)
        response = await d
        return response.code, await treq.content(response)

    async def test_dead_front_is_started_again(self):
        """SIGKILL one front: the core starts a new one, and the member goes on answering."""
        fronts = await self.start()
        self._front_pids = set(fronts)
        victim = min(fronts)
        os.kill(victim, signal.SIGKILL)
        replaced = await wait_until(
            lambda: (lambda now: len(now) == FRONTS and victim not in now and now)(children(self.member.process.pid)),
            timeout=30, what="a new front")
        self._front_pids |= replaced
        for i in range(20):
            code, _ = await self.request("PUT", f"/k{i}", b"v")
            self.assertEqual(code, 204)
            code, body = await self.request("GET", f"/k{i}")
            self.assertEqual((code, body), (200, b"v"))
        self.assertIn("starting it again", self.member.log_text())

    async def test_a_second_member_on_the_same_port_does_not_start(self):
        """``SO_REUSEPORT`` would let two members share a port: the second
        core refuses to start instead, with one line saying why."""
        self._front_pids = set(await self.start())
        other = Cluster(self, 1, extra=["--workers", str(FRONTS)]).members[1]
        other.http_port = self.member.http_port
        other.start()
        self.assertEqual(other.process.wait(timeout=30), 1)
        self.assertIn("cannot listen for HTTP", other.log_text())

    async def test_stopping_the_core_stops_its_fronts(self):
        """SIGTERM the core: it stops both fronts and exits; the port is free."""
        fronts = await self.start()
        self._front_pids = set(fronts)
        # twistd ends by re-raising the signal it stopped on, after a clean shutdown.
        self.assertIn(self.member.stop(), (0, -signal.SIGTERM))
        self.assertIn("Server Shut Down", self.member.log_text())
        await wait_until(lambda: not any(alive(p) for p in fronts), timeout=15, what="the fronts to exit")
        with self.assertRaises(Exception):
            await self.request("GET", "/ready", timeout=3)

    async def test_fronts_of_a_dead_core_answer_503_and_exit(self):
        """SIGKILL the core while a blocking read waits in a front: the read
        ends at once (503 or a closed connection, never the 60 s wait), the
        fronts exit, and a restarted member still holds every acknowledged write."""
        fronts = await self.start()
        self._front_pids = set(fronts)
        for i in range(10):
            code, _ = await self.request("PUT", f"/d{i}", b"%d" % i)
            self.assertEqual(code, 204)
        # A raw connection: once it is established the request sits at a
        # front (only fronts listen), whatever that front has done with it yet.
        answer = _Answer()
        await endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.member.http_port), answer)
        answer.transport.write(b"GET /d0?index=100&wait=60s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.member.kill()
        await wait_until(lambda: answer.closed, timeout=10, what="the blocking read to end")
        status_line = bytes(answer.data).split(b"\r\n", 1)[0]
        self.assertIn(status_line, (b"", b"HTTP/1.1 503 Service Unavailable"), bytes(answer.data))
        await wait_until(lambda: not any(alive(p) for p in fronts), timeout=15, what="the orphaned fronts to exit")
        self.member.start()
        await self.cluster.put_until_ok(1, "after", b"restart")
        for i in range(10):
            code, body = await self.request("GET", f"/d{i}")
            self.assertEqual((code, body), (200, b"%d" % i))
        self._front_pids |= children(self.member.process.pid)

    async def test_a_restarted_core_kills_the_fronts_its_predecessor_left(self):
        """Fronts that cannot exit by themselves (stopped) when their core is
        killed would hold the client port for ever: the restarted core
        kills them, claims the port and serves."""
        fronts = await self.start()
        self._front_pids = set(fronts)
        code, _ = await self.request("PUT", "/before", b"1")
        self.assertEqual(code, 204)
        for pid in fronts:
            os.kill(pid, signal.SIGSTOP)
        self.member.kill()
        self.member.start()
        await self.cluster.put_until_ok(1, "after", b"restart")
        self.assertFalse(any(alive(p) for p in fronts))
        self.assertIn("left by this member's previous core", self.member.log_text())
        self._front_pids |= children(self.member.process.pid)


class _Answer(protocol.Protocol):
    """Collects what the server sends until it closes the connection."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason=protocol.connectionDone) -> None:
        self.closed = True


class AutoAndGrpcProcessTests(TestCase):
    """``--workers auto`` as twistd resolves it, and fronts beside gRPC,
    which stays in the core."""

    timeout = 120

    def start_member(self, *extra: str) -> Member:
        """A member with ``extra`` flags; stopped (with its fronts) at cleanup."""
        member = Member(1, [f"http://127.0.0.1:{free_port()}"], free_port(), os.path.abspath(self.mktemp()),
                        extra=list(extra))
        member.start()
        self.addCleanup(member.stop)
        return member

    async def http(self, member: Member, method: str, path: str, body: bytes | None = None):
        d = treq.request(method, member.url + path, data=body, persistent=False)
        d.addTimeout(10, reactor)
        response = await d
        return response.code, await treq.content(response)

    async def test_auto_chooses_by_usable_cores_logs_why_and_serves_grpc(self):
        """``--workers auto --grpc-port P`` starts the fronts the rule gives
        this machine's usable cores (none on two), logs the choice in one
        line, and serves gRPC and HTTP."""
        grpc_port = free_port()
        member = self.start_member("--workers", "auto", "--grpc-port", str(grpc_port))
        choice = auto.choose(Config(grpc_port=grpc_port), auto.usable_cores())
        await wait_until(lambda: choice.reason in member.log_text(), timeout=30, what="the auto line")
        self.assertEqual(member.log_text().count("--workers auto:"), 1)
        await wait_healthy(member, 40)
        code, _ = await self.http(member, "PUT", "/k", b"v")
        self.assertEqual(code, 204)
        await wait_until(lambda: len(children(member.process.pid)) == choice.workers, timeout=30,
                         what=f"{choice.workers} fronts")
        self.assertEqual(grpc_range(grpc_port, b"k"), [b"v"])

    async def test_fronts_serve_http_beside_grpc_in_the_core(self):
        """``--workers 2 --grpc-port P``: a write through gRPC (the core) is
        read through a front, and a write through a front through gRPC."""
        grpc_port = free_port()
        member = self.start_member("--workers", str(FRONTS), "--grpc-port", str(grpc_port))
        await wait_until(lambda: member.log_text().count("front serving port") == FRONTS, timeout=60,
                         what="both fronts serving")
        await wait_healthy(member, 40)
        self.assertEqual(len(children(member.process.pid)), FRONTS)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=CALL_TIMEOUT)
            rpc_pb2_grpc.KVStub(channel).Put(rpc_pb2.PutRequest(key=b"from-grpc", value=b"1"), timeout=CALL_TIMEOUT)
        self.assertEqual(await self.http(member, "GET", "/from-grpc"), (200, b"1"))
        self.assertEqual((await self.http(member, "PUT", "/from-front", b"2"))[0], 204)
        self.assertEqual(grpc_range(grpc_port, b"from-front"), [b"2"])


def grpc_range(port: int, key: bytes) -> list[bytes]:
    """The values a gRPC KV Range of ``key`` answers."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=CALL_TIMEOUT)
        answer = rpc_pb2_grpc.KVStub(channel).Range(rpc_pb2.RangeRequest(key=key), timeout=CALL_TIMEOUT)
    return [kv.value for kv in answer.kvs]
