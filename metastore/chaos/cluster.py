"""Real MetaStore members on 127.0.0.1 with a proxy on every directed peer link.

Member ``i`` listens for peers on its own real port and, in its own
``--cluster`` list, finds member ``j`` at the port of the proxy for the link
``i → j``.  Every message between members therefore crosses a ``LinkProxy``
that the chaos runner controls.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import treq
import treq.client
from twisted.internet import task

from metastore.chaos.proxy import PASS, LinkProxy
from metastore.ports import free_port

_TWISTD = "from twisted.scripts.twistd import run; run()"
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))




class MemberProcess:
    """One member: its ports, its flags, and its process (if running)."""

    def __init__(self, member_id: int, cluster_urls: list[str], http_port: int, data_dir: str,
                 extra: list[str], env: dict | None = None, scheme: str = "http") -> None:
        self.member_id = member_id
        self.scheme = scheme
        self.cluster_urls = cluster_urls
        self.http_port = http_port
        self.data_dir = data_dir
        self.extra = list(extra)
        self.env = env
        self.process: subprocess.Popen | None = None
        self.paused = False

    @property
    def url(self) -> str:
        """The member's HTTP base URL."""
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    @property
    def logfile(self) -> str:
        """The member's twistd log."""
        return os.path.join(self.data_dir, f"member-{self.member_id}.log")

    def start(self) -> None:
        """Spawn the member (no-op when it is running)."""
        if self.running():
            return
        env = dict(self.env if self.env is not None else os.environ)
        env["PYTHONPATH"] = _PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        argv = [
            sys.executable, "-c", _TWISTD, "--nodaemon", "--pidfile=", f"--logfile={self.logfile}", "metastore",
            "--id", str(self.member_id), "--cluster", ",".join(self.cluster_urls),
            "--port", str(self.http_port), "--data-dir", self.data_dir, *self.extra,
        ]
        stderr = open(os.path.join(self.data_dir, f"member-{self.member_id}.stderr"), "ab")
        try:
            self.process = subprocess.Popen(argv, cwd=self.data_dir, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        finally:
            stderr.close()
        self.paused = False

    def running(self) -> bool:
        """Whether the process is alive (paused counts as alive)."""
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` if the process is alive."""
        if self.running():
            self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL and reap (bounded)."""
        if self.process is None:
            return
        proc, self.process = self.process, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP."""
        self.signal(signal.SIGSTOP)
        self.paused = self.running()

    def resume(self) -> None:
        """SIGCONT."""
        self.signal(signal.SIGCONT)
        self.paused = False

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (after SIGCONT), SIGKILL if it does not exit in ``timeout``."""
        if self.process is None:
            return
        self.resume()
        proc, self.process = self.process, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


class ProxiedCluster:
    """``size`` members whose every peer link goes through a ``LinkProxy``."""

    def __init__(self, reactor, size: int, data_dir: str, extra: list[str] = (), env: dict | None = None,
                 *, scheme: str = "http", agent=None) -> None:
        """``scheme`` is ``https`` for members serving TLS (``extra`` has
        their flags), with ``agent`` a web ``Agent`` that trusts them."""
        self.reactor = reactor
        self._status_client = None if agent is None else treq.client.HTTPClient(agent)
        self.size = size
        self.data_dir = os.path.abspath(data_dir)
        os.makedirs(self.data_dir, exist_ok=True)
        ids = range(1, size + 1)
        peer_ports = {i: free_port() for i in ids}
        self.proxies: dict[tuple[int, int], LinkProxy] = {}
        for i in ids:
            for j in ids:
                if i != j:
                    self.proxies[(i, j)] = LinkProxy(reactor, i, j, free_port(), peer_ports[j])
        self.members: dict[int, MemberProcess] = {}
        for i in ids:
            urls = [
                f"{scheme}://127.0.0.1:{peer_ports[j] if j == i else self.proxies[(i, j)].listen_port}"
                for j in ids
            ]
            self.members[i] = MemberProcess(i, urls, free_port(), self.data_dir, list(extra), env, scheme)

    @property
    def ids(self) -> list[int]:
        """Every member id."""
        return sorted(self.members)

    async def start(self) -> None:
        """Start every proxy, then every member."""
        for proxy in self.proxies.values():
            await proxy.start()
        for member in self.members.values():
            member.start()

    async def stop(self) -> None:
        """Stop every member and every proxy."""
        for member in self.members.values():
            member.stop()
        for proxy in self.proxies.values():
            await proxy.stop()

    def set_link(self, source: int, target: int, mode: str) -> None:
        """Set the mode of the directed link ``source → target``."""
        self.proxies[(source, target)].set_mode(mode)

    def heal_links(self) -> None:
        """Every link back to ``pass``."""
        for proxy in self.proxies.values():
            proxy.set_mode(PASS)

    def cut_links(self) -> list[tuple[int, int]]:
        """The directed links that are not passing."""
        return sorted(k for k, p in self.proxies.items() if p.mode != PASS)

    async def status(self, member_id: int, timeout: float = 2) -> dict | None:
        """The member's ``/admin/status``, or None when it does not answer."""
        member = self.members[member_id]
        if not member.running() or member.paused:
            return None
        try:
            if self._status_client is None:
                response = await treq.get(member.url + "/admin/status", persistent=False, timeout=timeout)
            else:
                response = await self._status_client.get(member.url + "/admin/status", timeout=timeout)
            return json.loads(await treq.content(response))
        except Exception:
            return None

    async def leader(self) -> int | None:
        """The leader most answering members name, or None."""
        votes: dict[int, int] = {}
        for i in self.ids:
            status = await self.status(i)
            if status and status.get("leader"):
                votes[status["leader"]] = votes.get(status["leader"], 0) + 1
        if not votes:
            return None
        return max(votes, key=votes.get)

    async def wait_converged(self, timeout: float = 60) -> bool:
        """Poll until every member answers, is healthy, and all name one
        leader with equal applied indexes; False if ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.2) + 1):
            statuses = [await self.status(i) for i in self.ids]
            if all(statuses):
                leaders = {s.get("leader") for s in statuses}
                applied = {s.get("applied_index") for s in statuses}
                healthy = all(s.get("healthy", True) for s in statuses)
                if len(leaders) == 1 and None not in leaders and len(applied) == 1 and healthy:
                    return True
            if time.monotonic() > deadline:
                return False
            await task.deferLater(self.reactor, 0.2, lambda: None)
        return False
