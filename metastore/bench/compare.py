"""Side by side: one etcd member and one MetaStore member, the same load.

``python -m metastore.bench.compare [--runs 3] [--duration 8] [--api
seed|v3] [--baseline CHECKOUT]`` starts etcd (``/usr/bin/etcd``, v3 JSON
gateway) and a MetaStore member (``twistd metastore``, memory engine,
driven through ``--api``) on free 127.0.0.1 ports with temporary data
directories, and with ``--baseline`` a second MetaStore member run from
another checkout (to show what a change did, in the same run); it runs
each workload of issue 17's one-member table against each with
``metastore-bench`` (a separate process, as a user runs it), and prints a
Markdown table of the medians (by requests/s) with the p99 and server CPU
ms per 1,000 requests of the median run.  The servers are stopped at the
end, however it ends.
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


def compare(runs: int, duration: float, etcd: str, api: str = "seed", baseline: str | None = None,
            out=sys.stdout) -> None:
    """Start the servers, measure every workload, print the table."""
    workdir = tempfile.mkdtemp(prefix="metastore-compare-")
    servers: list[Server] = []
    try:
        servers.append(start_etcd(workdir, etcd))
        if baseline is not None:
            servers.append(start_metastore(workdir, api=api, checkout=os.path.abspath(baseline), name="baseline"))
        servers.append(start_metastore(workdir, api=api))
        for server in servers:
            wait_for(server.ready_url)
        load_before = os.getloadavg()
        figures: dict[tuple[str, str], Figure] = {}
        populated: set[str] = set()
        for label, arguments in WORKLOADS:
            documents: dict[str, list[dict]] = {server.name: [] for server in servers}
            for _ in range(runs):  # the servers take turns, so a busy spell of the machine hits all of them
                for server in servers:
                    reads_populated = arguments[0] == "range" and server.name in populated
                    documents[server.name].append(
                        bench(server, arguments + (["--no-populate"] if reads_populated else []), duration))
                    if arguments[0] == "range":
                        populated.add(server.name)
            for server in servers:
                figures[label, server.name] = Figure.median_of(documents[server.name])
                print(f"{label} {server.name}: {figures[label, server.name]}", file=sys.stderr, flush=True)
        print_table(figures, [server.name for server in servers], out)
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


def print_table(figures: dict, names: list[str], out) -> None:
    """The Markdown table: per workload, each server's req/s (p99), the
    last server's ratio to etcd's req/s, CPU per 1,000 requests and RSS."""
    print(f"| 1 member | {' | '.join(f'{n} req/s (p99 ms)' for n in names)} | ratio {names[-1]} / etcd | "
          f"CPU ms / 1,000 req {' / '.join(names)} | RSS MB {' / '.join(names)} |", file=out)
    print("|---" * (len(names) + 4) + "|", file=out)
    for label, _ in WORKLOADS:
        row = [figures[label, n] for n in names]
        rates = " | ".join(f"{f.requests_per_second:,.0f} ({f.p99_ms:.1f})" for f in row)
        ratio = row[-1].requests_per_second / row[0].requests_per_second
        print(f"| {label} | {rates} | {ratio:.2f} | {' / '.join(f'{f.cpu_ms_per_1000:.0f}' for f in row)} | "
              f"{' / '.join(f'{f.rss_mb:.0f}' for f in row)} |", file=out)


def main() -> None:
    """Parse the options and compare."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per workload and server (median taken)")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--etcd", default="/usr/bin/etcd", help="the etcd binary")
    parser.add_argument("--api", choices=("seed", "v3"), default="seed", help="the API MetaStore is driven through")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also run a MetaStore member from this checkout (e.g. `git archive main | tar -x`)")
    arguments = parser.parse_args()
    compare(arguments.runs, arguments.duration, arguments.etcd, arguments.api, arguments.baseline)


if __name__ == "__main__":
    main()
