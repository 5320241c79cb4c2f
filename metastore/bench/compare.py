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
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from metastore.bench.servers import CHECKOUT, Server, start_etcd, start_metastore, wait_for

WORKLOADS = (
    ("put, 1 client", ["put", "--clients", "1"]),
    ("put, 64 clients", ["put", "--clients", "64"]),
    ("linearizable get, 64", ["range", "--consistency", "l", "--clients", "64"]),
    ("serializable get, 64", ["range", "--consistency", "s", "--clients", "64"]),
)
"""Issue 17's one-member rows: (label, metastore-bench arguments)."""


def bench(server: Server, arguments: list[str], duration: float) -> dict:
    """One ``metastore-bench`` run against ``server``; its JSON result."""
    argv = [sys.executable, "-m", "metastore.bench", *arguments, "--api", server.api, "--endpoints", server.url,
            "--duration", str(duration), "--pid", str(server.process.pid), "--json"]
    output = subprocess.run(argv, cwd=CHECKOUT, capture_output=True, text=True, timeout=duration + 120)
    try:
        return json.loads(output.stdout)  # also when nothing succeeded (exit status 1): the figures say so
    except ValueError:
        raise RuntimeError(f"{' '.join(argv)} failed ({output.returncode}):\n{output.stderr}") from None


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
        latency = median["latency_ms"] or {"p99": float("nan")}
        return cls(median["requests_per_second"], latency["p99"],
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
        load_before = os.getloadavg()
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
        load_after = os.getloadavg()
        print(f"\n{runs} runs of {duration:g} s each, median by requests/s; load average "
              f"{load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} cores.", file=out)
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
