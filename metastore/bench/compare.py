"""Side by side: one etcd member and one MetaStore member, the same load.

``python -m metastore.bench.compare [--runs 3] [--duration 8] [--members
1,3] [--workers 0,2] [--api seed|v3] [--baseline CHECKOUT]`` starts etcd
(``/usr/bin/etcd``, v3 JSON gateway) and one MetaStore cluster per
``--workers`` count (``twistd metastore``, memory engine, driven through
``--api``) of each size in ``--members``, and with ``--baseline`` one more
MetaStore cluster run from another checkout (to show what a change did, in
the same run), on free 127.0.0.1 ports with temporary data directories; runs each workload of issue 17's table
against each with ``metastore-bench`` (a separate process, as a user runs
it; to the leader of a cluster; runs of the servers interleaved), and
prints a Markdown table of the medians (by requests/s) with the p99 and
the CPU ms per 1,000 requests and RSS of the median run, summed over every
process of the server (members and fronts).  The servers are stopped at
the end, however it ends.
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
    """One ``metastore-bench`` run against ``server`` (its leader when it
    has several members); its JSON result."""
    pids = [arg for pid in server.pids() for arg in ("--pid", str(pid))]
    leader = ["--target-leader"] if len(server.urls) > 1 else []
    argv = [sys.executable, "-m", "metastore.bench", *arguments, "--api", server.api,
            "--endpoints", ",".join(server.urls), *leader, "--duration", str(duration), *pids, "--json"]
    output = subprocess.run(argv, cwd=CHECKOUT, capture_output=True, text=True, timeout=duration + 120)
    try:
        return json.loads(output.stdout)  # also when nothing succeeded (exit status 1): the figures say so
    except ValueError:
        raise RuntimeError(f"{' '.join(argv)} failed ({output.returncode}):\n{output.stderr}") from None


@dataclass(frozen=True)
class Figure:
    """The median run of one workload on one server (CPU and RSS summed
    over all its processes: every member, and their fronts)."""

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
        servers = median["servers"]
        latency = median["latency_ms"] or {"p99": float("nan")}
        return cls(median["requests_per_second"], latency["p99"],
                   sum(s["cpu_ms_per_1000_requests"] for s in servers), sum(s["rss_after_mb"] for s in servers),
                   median["errors"])


def _start(workdir: str, etcd: str, members: int, workers: tuple[int, ...], api: str,
           baseline: str | None) -> list[Server]:
    servers = [start_etcd(workdir, etcd, members)]
    if baseline is not None:
        servers.append(start_metastore(workdir, members, api=api, checkout=os.path.abspath(baseline), name="baseline"))
    servers += [start_metastore(workdir, members, w, api=api) for w in workers]
    for server in servers:
        for url in server.urls:
            wait_for(url + ("/version" if server.api == "v3" else "/livez"))
        wait_for(server.ready_url)
    return servers


def compare(runs: int, duration: float, etcd: str, out=sys.stdout, members: tuple[int, ...] = (1,),
            workers: tuple[int, ...] = (0,), workloads=WORKLOADS, api: str = "seed",
            baseline: str | None = None) -> None:
    """For each cluster size in ``members``: start etcd and a MetaStore
    cluster per ``workers`` count, measure every workload on each, print
    the table; stop them."""
    for size in members:
        workdir = tempfile.mkdtemp(prefix="metastore-compare-")
        servers: list[Server] = []
        try:
            servers = _start(workdir, etcd, size, workers, api, baseline)
            _measure(servers, size, runs, duration, workloads, out)
        finally:
            for server in servers:
                server.stop()
            shutil.rmtree(workdir, ignore_errors=True)


def _measure(servers: list[Server], size: int, runs: int, duration: float, workloads, out) -> None:
    load_before = os.getloadavg()
    figures: dict[tuple[str, str], Figure] = {}
    populated: set[str] = set()
    for label, arguments in workloads:
        # Interleaved, so that the machine's changing load falls on every server alike.
        documents: dict[str, list[dict]] = {server.name: [] for server in servers}
        for _ in range(runs):
            for server in servers:
                reads_populated = arguments[0] == "range" and server.name in populated
                documents[server.name].append(
                    bench(server, arguments + (["--no-populate"] if reads_populated else []), duration))
                if arguments[0] == "range":
                    populated.add(server.name)
        for server in servers:
            figures[label, server.name] = Figure.median_of(documents[server.name])
            print(f"{label} {server.name}: {figures[label, server.name]}", file=sys.stderr, flush=True)
    print_table(figures, [server.name for server in servers], out, size, workloads)
    load_after = os.getloadavg()
    print(f"\n{runs} runs of {duration:g} s each, median by requests/s; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} cores.\n", file=out, flush=True)
    errors = {f"{k[0]} {k[1]}": f.errors for k, f in figures.items() if f.errors}
    if errors:
        print(f"errors in the median runs: {errors}\n", file=out)


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def print_table(figures: dict, names: list[str], out, size: int = 1, workloads=WORKLOADS) -> None:
    """The Markdown table: per workload, each server's req/s (p99), the
    last server's ratio to the first's (etcd's) req/s, CPU per 1,000
    requests and RSS (summed over the server's processes)."""
    members = f"{size} member{'s' if size > 1 else ''}"
    print(f"| {members} | {' | '.join(f'{n} req/s (p99 ms)' for n in names)} | ratio {names[-1]} / etcd | "
          f"CPU ms / 1,000 req {' / '.join(names)} | RSS MB {' / '.join(names)} |", file=out)
    print("|---" * (len(names) + 4) + "|", file=out)
    for label, _ in workloads:
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
    parser.add_argument("--members", type=_numbers, default=(1,), help="cluster sizes, e.g. 1,3")
    parser.add_argument("--workers", type=_numbers, default=(0,), help="MetaStore --workers counts, e.g. 0,2")
    parser.add_argument("--api", choices=("seed", "v3"), default="seed", help="the API MetaStore is driven through")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also run a MetaStore cluster from this checkout (e.g. `git archive main | tar -x`)")
    parser.add_argument("--workloads", default="", help="only the workloads whose label contains one of these "
                        "comma-separated words (e.g. 64)")
    arguments = parser.parse_args()
    words = [w.strip() for w in arguments.workloads.split(",") if w.strip()]
    workloads = [w for w in WORKLOADS if not words or any(word in w[0] for word in words)]
    compare(arguments.runs, arguments.duration, arguments.etcd, members=arguments.members,
            workers=arguments.workers, workloads=workloads, api=arguments.api, baseline=arguments.baseline)


if __name__ == "__main__":
    main()
