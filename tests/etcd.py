"""Real etcd servers as child processes, the reference MetaStore is held to.

An ``EtcdCluster`` runs Debian's ``etcd`` (3.4.23 at ``/usr/bin/etcd``, or
``$METASTORE_ETCD``) on 127.0.0.1 free ports with data directories inside
the test's temporary directory.  It is stopped by PID at cleanup; every
wait polls a condition with a bound.  Tests that need etcd call
``skip_without_etcd`` first, so a machine without it skips them with the
reason instead of failing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass

import treq
from twisted.internet import reactor
from twisted.trial.unittest import SkipTest

from tests.process import free_port, wait_until

ETCD_BINARY = os.environ.get("METASTORE_ETCD", "/usr/bin/etcd")


def etcd_missing_reason() -> str | None:
    """Why no real etcd can run here, or None when one can."""
    if not os.path.isfile(ETCD_BINARY) or not os.access(ETCD_BINARY, os.X_OK):
        found = shutil.which("etcd")
        return (
            f"no etcd executable at {ETCD_BINARY}"
            + (f" (one is at {found}: set METASTORE_ETCD)" if found else "")
            + "; install Debian's etcd-server (.ci/run does where apt-get exists)"
        )
    return None


def skip_without_etcd() -> None:
    """Raise ``SkipTest`` with the reason when no real etcd can run here."""
    reason = etcd_missing_reason()
    if reason:
        raise SkipTest(reason)


class PortTaken(AssertionError):
    """An etcd member could not bind a port another process took meanwhile."""


@dataclass
class EtcdMember:
    """One etcd process: its name, ports, data directory and log file."""

    name: str
    client_port: int
    peer_port: int
    workdir: str
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The member's client URL (where the v3 JSON gateway answers)."""
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        """The member's peer URL."""
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def logfile(self) -> str:
        """Where the member's stdout and stderr go."""
        return os.path.join(self.workdir, f"{self.name}.log")

    def args(self, initial_cluster: str, token: str) -> list[str]:
        """The etcd command line of this member."""
        return [
            ETCD_BINARY,
            "--name", self.name,
            "--data-dir", os.path.join(self.workdir, f"{self.name}.etcd"),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-token", token,
            "--initial-cluster-state", "new",
            "--logger", "zap",
            "--log-level", "warn",
        ]

    def start(self, initial_cluster: str, token: str) -> None:
        """Spawn the process (it must not be running)."""
        os.makedirs(self.workdir, exist_ok=True)
        with open(self.logfile, "ab") as log:
            self.process = subprocess.Popen(
                self.args(initial_cluster, token), cwd=self.workdir, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )

    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM the process by its PID (SIGKILL if it hangs) and reap it."""
        if self.process is None:
            return None
        proc, self.process = self.process, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=timeout)

    def kill(self, timeout: float = 15) -> int | None:
        """SIGKILL the process by its PID, as a crash, and reap it."""
        if self.process is None:
            return None
        proc, self.process = self.process, None
        proc.kill()
        return proc.wait(timeout=timeout)

    def log_text(self) -> str:
        """What the member logged, for failure messages."""
        if not os.path.exists(self.logfile):
            return ""
        with open(self.logfile, errors="replace") as f:
            return f.read()


class EtcdCluster:
    """``size`` etcd members forming one new cluster for one test, always stopped."""

    def __init__(self, testcase, size: int = 1, name: str = "etcd") -> None:
        skip_without_etcd()
        self.workdir = os.path.abspath(testcase.mktemp())
        self.token = f"{name}-{os.getpid()}-{free_port()}"
        self.members = [
            EtcdMember(name=f"{name}{i}", client_port=free_port(), peer_port=free_port(), workdir=self.workdir)
            for i in range(1, size + 1)
        ]
        for member in self.members:
            testcase.addCleanup(member.stop)

    @property
    def urls(self) -> list[str]:
        """The members' client URLs, in member order."""
        return [m.url for m in self.members]

    async def start(self, timeout: float = 30, attempts: int = 3) -> None:
        """Start every member and wait until each reports itself healthy
        (which etcd does only once the cluster has a leader).  A port taken
        by another process between ``free_port`` and etcd's bind is retried
        on new ports, ``attempts`` times in all."""
        for attempt in range(1, attempts + 1):
            initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
            for member in self.members:
                member.start(initial, self.token)
            try:
                for member in self.members:
                    await wait_until(
                        lambda m=member: self._healthy(m), timeout=timeout, what=f"etcd {member.name} to be healthy"
                    )
                return
            except PortTaken:
                if attempt == attempts:
                    raise
                self._restart_on_new_ports()

    def _restart_on_new_ports(self) -> None:
        for member in self.members:
            member.stop()
            shutil.rmtree(os.path.join(self.workdir, f"{member.name}.etcd"), ignore_errors=True)
            member.client_port, member.peer_port = free_port(), free_port()
        self.token = f"{self.token}-again"

    async def _healthy(self, member: EtcdMember) -> bool:
        if not member.running():
            log = member.log_text()
            error = PortTaken if "address already in use" in log else AssertionError
            raise error(f"etcd {member.name} exited during start-up:\n{log[-4000:]}")
        try:
            d = treq.get(member.url + "/health", persistent=False)
            d.addTimeout(2, reactor)
            response = await d
            body = await treq.json_content(response)
            return response.code == 200 and body.get("health") == "true"
        except Exception:
            return False

    def logs(self) -> str:
        """Every member's log tail, for failure messages."""
        return "\n".join(f"--- etcd {m.name}\n{m.log_text()[-4000:]}" for m in self.members)
