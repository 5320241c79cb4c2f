"""RSS idle and after 1,000,000 puts, one etcd member next to one MetaStore member.

``python scripts/memory-1m.py [--puts 1000000] [--keys 10000] [--clients
64] [--storage memory]`` starts both on free 127.0.0.1 ports (etcd with
its defaults: no compaction; MetaStore with its own: 10,000 revisions
kept), waits until each serves and its RSS has settled, reads the idle
RSS, sends each ``--puts`` ``/v3/kv/put`` requests over ``--keys`` keys at
the same time (``metastore-bench put --total``), then reads the RSS, the
peak RSS (VmHWM), the data directory's size and each load generator's
rate and p99, and prints them as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from metastore.bench.compare import bench_all_at_once
from metastore.bench.proc import parse_status_bytes
from metastore.bench.servers import Server, start_etcd, start_metastore, wait_for

SETTLED_MB = 0.5
"""RSS within this of the previous second's reading counts as settled."""


def read_status_mb(pid: int, field: str) -> float:
    """A ``/proc/PID/status`` memory field (VmRSS, VmHWM) in MB; 0 if the process has gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return parse_status_bytes(f.read(), field) / 2**20
    except OSError:
        return 0.0


def settled_rss_mb(pid: int, timeout: float = 30.0, reading=read_status_mb, clock=time.monotonic,
                   pause=time.sleep) -> float:
    """The RSS once two readings a second apart differ by at most
    :data:`SETTLED_MB` (or the last reading after ``timeout`` seconds)."""
    deadline = clock() + timeout
    previous = reading(pid, "VmRSS")
    while True:
        pause(1.0)
        current = reading(pid, "VmRSS")
        if abs(current - previous) <= SETTLED_MB or clock() > deadline:
            return current
        previous = current


def directory_mb(path: str) -> float:
    """The bytes of every file under ``path``, in MB."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total / 2**20


def main(argv: list[str] | None = None) -> None:
    """Parse the options, measure, print the table; stop the servers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puts", type=int, default=1_000_000, help="puts sent to each server")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct keys")
    parser.add_argument("--clients", type=int, default=64, help="closed-loop clients per server")
    parser.add_argument("--storage", choices=("memory", "rocksdb"), default="memory", help="MetaStore's engine")
    parser.add_argument("--etcd", default="/usr/bin/etcd", help="the etcd binary")
    options = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="metastore-memory-")
    servers: list[Server] = []
    try:
        servers = [start_etcd(workdir, options.etcd), start_metastore(workdir, storage=options.storage, api="v3")]
        data_dirs = {"etcd": os.path.join(workdir, "etcd-1"), "MetaStore": os.path.join(workdir, "MetaStore-1")}
        for server in servers:
            wait_for(server.url + "/version")
            wait_for(server.ready_url)
        idle = {s.name: settled_rss_mb(s.process.pid) for s in servers}
        print(f"idle RSS: {idle}; sending {options.puts:,} puts to each", file=sys.stderr, flush=True)
        arguments = ["put", "--total", str(options.puts), "--key-space-size", str(options.keys),
                     "--clients", str(options.clients)]
        results = bench_all_at_once(servers, {s.name: arguments for s in servers}, None, timeout=4 * 3600)
        after = {s.name: (read_status_mb(s.process.pid, "VmRSS"), read_status_mb(s.process.pid, "VmHWM"))
                 for s in servers}
        disk = {name: directory_mb(path) for name, path in data_dirs.items()}
        load = os.getloadavg()[0]
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("| | idle RSS MB | RSS MB after the puts | peak RSS MB | data on disk MB | put req/s (p99 ms) | errors |")
    print("|---" * 7 + "|")
    for name in ("etcd", "MetaStore"):
        result = results[name]
        p99 = (result["latency_ms"] or {}).get("p99", float("nan"))
        print(f"| {name} | {idle[name]:.0f} | {after[name][0]:.0f} | {after[name][1]:.0f} | {disk[name]:.0f} | "
              f"{result['requests_per_second']:,.0f} ({p99:.0f}) | {result['errors'] or 'none'} |")
    print(f"\n{options.puts:,} v3 puts over {options.keys:,} keys, {options.clients} clients each, 256-byte values, "
          f"both at once; MetaStore --storage {options.storage}; load average {load:.1f} at the end, "
          f"on {os.cpu_count()} cores.")


if __name__ == "__main__":
    main()
