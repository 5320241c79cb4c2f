"""Debian's ``etcdctl`` (v3 API, a Go gRPC client) against real MetaStore
members started with ``--grpc-port``, for process tests.

``GrpcCluster`` is a ``tests.process.Cluster`` whose members each serve
gRPC on a free port; ``etcdctl`` runs one command to its end,
``EtcdctlProcess`` one that runs until stopped (``watch``, ``lock``,
``elect``, ``lease keep-alive``), its output collected in a file and
polled with a bound.  Every process is stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

from twisted.internet import reactor, utils
from twisted.trial.unittest import SkipTest

from tests.process import Cluster, free_port, wait_until

ETCDCTL = os.environ.get("METASTORE_ETCDCTL", "/usr/bin/etcdctl")
ENV = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}


def skip_without_etcdctl() -> None:
    """``SkipTest`` with the reason when Debian's etcdctl is not installed."""
    if not os.access(ETCDCTL, os.X_OK):
        found = shutil.which("etcdctl")
        raise SkipTest(f"no etcdctl at {ETCDCTL}" + (f" (one is at {found}: set METASTORE_ETCDCTL)" if found else "")
                       + "; install Debian's etcd-client (.ci/run does where apt-get exists)")


class GrpcCluster(Cluster):
    """A cluster of real members, each serving gRPC on its own free port."""

    def __init__(self, testcase, size: int, extra: list[str] | None = None) -> None:
        self.grpc_ports = {i: free_port() for i in range(1, size + 1)}
        flags = {i: ["--grpc-port", str(port)] for i, port in self.grpc_ports.items()}
        super().__init__(testcase, size, extra=extra, member_flags=flags)

    def endpoints(self, *member_ids: int) -> str:
        """etcdctl's ``--endpoints`` for the given members (all when none)."""
        ids = member_ids or tuple(sorted(self.grpc_ports))
        return ",".join(f"127.0.0.1:{self.grpc_ports[i]}" for i in ids)


async def etcdctl(endpoints: str, *args: str, stdin: bytes | None = None, timeout: float = 30) -> tuple[int, str, str]:
    """Run ``etcdctl --endpoints ENDPOINTS ARGS`` to its end: (exit code, stdout, stderr)."""
    argv = ["--endpoints", endpoints, "--dial-timeout=5s", "--command-timeout=15s", *args]
    if stdin is None:
        d = utils.getProcessOutputAndValue(ETCDCTL, argv, env=ENV, reactor=reactor)
        d.addTimeout(timeout, reactor)
        out, err, code = await d
        return code, out.decode(), err.decode()
    done = subprocess.run([ETCDCTL, *argv], input=stdin, env=ENV, capture_output=True, timeout=timeout)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


class EtcdctlProcess:
    """A long-running etcdctl command whose output goes to a file."""

    def __init__(self, testcase, endpoints: str, *args: str) -> None:
        self.path = os.path.abspath(testcase.mktemp())
        with open(self.path, "wb") as out:
            self.process = subprocess.Popen(
                [ETCDCTL, "--endpoints", endpoints, "--dial-timeout=5s", *args],
                env=ENV, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE,
            )
        testcase.addCleanup(self.stop)

    def output(self) -> str:
        """Everything it printed so far (stdout and stderr)."""
        with open(self.path, errors="replace") as f:
            return f.read()

    def lines(self) -> list[str]:
        """Its output, line by line."""
        return self.output().splitlines()

    async def wait_for(self, condition, timeout: float = 30, what: str = "output") -> str:
        """Poll until ``condition(output)`` holds; the output.  Fails with the
        output when it does not within ``timeout`` seconds."""
        try:
            await wait_until(lambda: condition(self.output()), timeout=timeout, interval=0.1, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}; etcdctl printed:\n{self.output()[-3000:]}") from None
        return self.output()

    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop it by its PID (SIGTERM, then SIGKILL after 10 s); its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                return self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout=10)
