"""Servers to benchmark, started as child processes on free 127.0.0.1 ports:
one etcd member, one MetaStore member from this checkout.

Used by :mod:`metastore.bench.compare` and by the tool's tests against a
real etcd; a started server is the caller's to stop (:meth:`Server.stop`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

from metastore.ports import free_port

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
"""The checkout this module is in; a MetaStore member runs its code."""


def wait_for(url: str, timeout: float = 30.0, method: str = "GET") -> None:
    """Poll ``url`` until it answers 200, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout}s")
        time.sleep(0.1)


@dataclass
class Server:
    """Started server processes (one per member): their name, URLs, API,
    processes, and the URL that answers 200 once the first serves."""

    name: str
    urls: list[str]
    api: str
    processes: list[subprocess.Popen]
    ready_url: str

    @property
    def url(self) -> str:
        """The first member's URL."""
        return self.urls[0]

    @property
    def process(self) -> subprocess.Popen:
        """The first member's process."""
        return self.processes[0]

    def pids(self) -> list[int]:
        """Every process serving: each member, and the fronts a MetaStore
        member with ``--workers`` started (its child processes)."""
        pids = [p.pid for p in self.processes]
        return pids + [child for pid in pids for child in child_pids(pid)]

    def stop(self) -> None:
        """SIGTERM each, then SIGKILL one that hangs."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def child_pids(pid: int) -> list[int]:
    """The ids of the processes whose parent is ``pid`` (from ``/proc``)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(name))
            except OSError:
                continue
    return found


def start_etcd(workdir: str, etcd: str, size: int = 1) -> Server:
    """An etcd cluster of ``size`` members on free ports (not yet waited for)."""
    clients = [f"http://127.0.0.1:{free_port()}" for _ in range(size)]
    peers = [f"http://127.0.0.1:{free_port()}" for _ in range(size)]
    names = ["compare"] if size == 1 else [f"compare-{i}" for i in range(1, size + 1)]
    initial = ",".join(f"{name}={peer}" for name, peer in zip(names, peers))
    processes = []
    for i, (name, url, peer_url) in enumerate(zip(names, clients, peers), start=1):
        with open(os.path.join(workdir, f"etcd-{i}.log"), "wb") as log:
            processes.append(subprocess.Popen(
                [etcd, "--name", name, "--data-dir", os.path.join(workdir, f"etcd-{i}"),
                 "--listen-client-urls", url, "--advertise-client-urls", url,
                 "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                 "--initial-cluster", initial],
                stdout=log, stderr=subprocess.STDOUT,
            ))
    return Server("etcd", clients, "v3", processes, clients[0] + "/version")


def start_metastore(workdir: str, size: int = 1, workers: int = 0, *, storage: str = "memory",
                    api: str = "seed", checkout: str = CHECKOUT, name: str | None = None) -> Server:
    """A MetaStore cluster of ``size`` members (engine ``storage``,
    ``--workers workers``) from ``checkout`` (by default this one), driven
    through ``api``, on free ports (not yet waited for)."""
    env = dict(os.environ, PYTHONPATH=checkout + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if name is None:
        name = "MetaStore" if not workers else f"MetaStore --workers {workers}"
    peers = [f"http://127.0.0.1:{free_port()}" for _ in range(size)]
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(size)]
    processes = []
    for i, url in enumerate(urls, start=1):
        data_dir = os.path.join(workdir, f"{name.replace(' ', '-')}-{i}")
        os.makedirs(data_dir)
        processes.append(subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--nodaemon", "--pidfile=",
             f"--logfile={data_dir}.log", "metastore", "--id", str(i),
             "--cluster", ",".join(peers), "--port", url.rsplit(":", 1)[1], "--storage", storage,
             "--data-dir", data_dir, "--workers", str(workers)],
            cwd=data_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    return Server(name, urls, api, processes, urls[0] + "/health")
