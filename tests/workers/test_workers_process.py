"""``twistd metastore --workers 2`` as operators run it: the core starts
two fronts, starts a dead one again, stops them with itself, and a front
whose core died answers 503 (never hangs) and exits."""

from __future__ import annotations

import os
import signal

import treq
from twisted.internet import endpoints, protocol, reactor
from twisted.trial.unittest import TestCase

from tests.process import Cluster, wait_until

FRONTS = 2


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
