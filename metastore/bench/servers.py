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
    """A started server process: its name, URL, API, process, and the URL
    that answers 200 once it serves."""

    name: str
    url: str
    api: str
    process: subprocess.Popen
    ready_url: str

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def start_etcd(workdir: str, etcd: str) -> Server:
    """One etcd member on free ports (not yet waited for)."""
    client, peer = free_port(), free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    with open(os.path.join(workdir, "etcd.log"), "wb") as log:
        process = subprocess.Popen(
            [etcd, "--name", "compare", "--data-dir", os.path.join(workdir, "etcd"),
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"compare={peer_url}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    return Server("etcd", url, "v3", process, url + "/version")


def start_metastore(workdir: str, storage: str = "memory", api: str = "seed", checkout: str = CHECKOUT,
                    name: str = "MetaStore") -> Server:
    """One MetaStore member (``storage``: its engine) from ``checkout`` (by
    default this one), driven through ``api``, on free ports (not yet
    waited for)."""
    peer, http = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=checkout + os.pathsep + os.environ.get("PYTHONPATH", ""))
    data_dir = os.path.join(workdir, name.replace(" ", "-"))
    os.makedirs(data_dir)
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--nodaemon", "--pidfile=",
         f"--logfile={data_dir}.log", "metastore", "--id", "1",
         "--cluster", f"http://127.0.0.1:{peer}", "--port", str(http), "--storage", storage,
         "--data-dir", data_dir],
        cwd=data_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{http}"
    return Server(name, url, api, process, url + "/health")
