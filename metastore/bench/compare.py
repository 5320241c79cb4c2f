"""Side by side: one etcd member and one MetaStore member, the same load.

``python -m metastore.bench.compare [--runs 3] [--duration 8]`` starts etcd
(``/usr/bin/etcd``, v3 JSON gateway) and a MetaStore member (``twistd
metastore``, memory engine, seed API) on free 127.0.0.1 ports with
temporary data directories, runs each workload of issue 17's one-member
table against each with ``metastore-bench`` (a separate process, as a user
runs it), and prints a Markdown table of the medians (by requests/s) with
the p99 and server CPU ms per 1,000 requests of the median run.  Both
servers are stopped at the end, however it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORKLOADS = (
    ("put, 1 client", ["put", "--clients", "1"]),
    ("put, 64 clients", ["put", "--clients", "64"]),
    ("linearizable get, 64", ["range", "--consistency", "l", "--clients", "64"]),
    ("serializable get, 64", ["range", "--consistency", "s", "--clients", "64"]),
)
"""Issue 17's one-member rows: (label, metastore-bench arguments)."""


def free_port() -> int:
    """A 127.0.0.1 port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    log = open(os.path.join(workdir, "etcd.log"), "wb")
    process = subprocess.Popen(
        [etcd, "--name", "compare", "--data-dir", os.path.join(workdir, "etcd"),
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", f"compare={peer_url}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    return Server("etcd", url, "v3", process, url + "/version")


def start_metastore(workdir: str) -> Server:
    """One MetaStore member (memory engine) from this checkout, on free
    ports (not yet waited for)."""
    peer, http = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=CHECKOUT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    data_dir = os.path.join(workdir, "metastore")
    os.makedirs(data_dir)
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--nodaemon", "--pidfile=",
         f"--logfile={os.path.join(workdir, 'metastore.log')}", "metastore", "--id", "1",
         "--cluster", f"http://127.0.0.1:{peer}", "--port", str(http), "--storage", "memory",
         "--data-dir", data_dir],
        cwd=data_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{http}"
    return Server("MetaStore", url, "seed", process, url + "/health")


def bench(server: Server, arguments: list[str], duration: float) -> dict:
    """One ``metastore-bench`` run against ``server``; its JSON result."""
    argv = [sys.executable, "-m", "metastore.bench", *arguments, "--api", server.api, "--endpoints", server.url,
            "--duration", str(duration), "--pid", str(server.process.pid), "--json"]
    output = subprocess.run(argv, cwd=CHECKOUT, capture_output=True, text=True, check=True, timeout=duration + 120)
    return json.loads(output.stdout)


@dataclass(frozen=True)
class Figure:
    """The median run of one workload on one server."""

    requests_per_second: float
    p99_ms: float
    cpu_ms_per_1000: float
    rss_mb: float
    errors: dict

    @classmethod
    def median_of(cls, documents: list[dict]) -> Figure:
        """The run whose requests/s is the median (the lower middle of an even count)."""
        ordered = sorted(documents, key=lambda d: d["requests_per_second"])
        median = ordered[(len(ordered) - 1) // 2]
        assert median["requests_per_second"] == statistics.median_low([d["requests_per_second"] for d in ordered])
        server = median["servers"][0]
        return cls(median["requests_per_second"], median["latency_ms"]["p99"],
                   server["cpu_ms_per_1000_requests"], server["rss_after_mb"], median["errors"])


def compare(runs: int, duration: float, etcd: str, out=sys.stdout) -> None:
    """Start both servers, measure every workload, print the table."""
    workdir = tempfile.mkdtemp(prefix="metastore-compare-")
    servers: list[Server] = []
    try:
        servers.append(start_etcd(workdir, etcd))
        servers.append(start_metastore(workdir))
        for server in servers:
            wait_for(server.ready_url)
        figures: dict[tuple[str, str], Figure] = {}
        populated: set[str] = set()
        for label, arguments in WORKLOADS:
            for server in servers:
                documents = []
                for _ in range(runs):
                    reads_populated = arguments[0] == "range" and server.name in populated
                    documents.append(bench(server, arguments + (["--no-populate"] if reads_populated else []),
                                           duration))
                    if arguments[0] == "range":
                        populated.add(server.name)
                figures[label, server.name] = Figure.median_of(documents)
                print(f"{label} {server.name}: {figures[label, server.name]}", file=sys.stderr, flush=True)
        print("| 1 member | etcd req/s (p99 ms) | MetaStore req/s (p99 ms) | ratio | CPU ms / 1,000 req "
              "etcd / MetaStore | RSS MB etcd / MetaStore |", file=out)
        print("|---|---|---|---|---|---|", file=out)
        for label, _ in WORKLOADS:
            e, m = figures[label, "etcd"], figures[label, "MetaStore"]
            print(f"| {label} | {e.requests_per_second:,.0f} ({e.p99_ms:.1f}) | "
                  f"{m.requests_per_second:,.0f} ({m.p99_ms:.1f}) | {m.requests_per_second / e.requests_per_second:.2f} | "
                  f"{e.cpu_ms_per_1000:.0f} / {m.cpu_ms_per_1000:.0f} | {e.rss_mb:.0f} / {m.rss_mb:.0f} |", file=out)
        errors = {f"{k[0]} {k[1]}": f.errors for k, f in figures.items() if f.errors}
        if errors:
            print(f"\nerrors in the median runs: {errors}", file=out)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    """Parse the options and compare."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per workload and server (median taken)")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--etcd", default="/usr/bin/etcd", help="the etcd binary")
    arguments = parser.parse_args()
    compare(arguments.runs, arguments.duration, arguments.etcd)


if __name__ == "__main__":
    main()
