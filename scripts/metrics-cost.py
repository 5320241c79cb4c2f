"""The throughput cost of metrics (and JSON logs) on put at 64 clients.

Starts three one-member clusters from this checkout on free 127.0.0.1
ports: ``--metrics off``, ``--metrics on`` (the default) and ``--metrics
on --log-format json``.  Runs ``metastore-bench put --clients 64`` against
each in turn, round after round (so drift in the machine's load hits every
configuration alike), and prints each configuration's median requests/s
and server CPU ms per 1,000 requests, and the cost relative to ``off``.

    python scripts/metrics-cost.py --rounds 5 --duration 8

``--paired`` runs the configurations' benchmarks at the same time in each
round (each member gets its own load generator), so that they share
whatever else the machine is doing, and reports the median over rounds of
each one's rate relative to ``off`` in the same round.

``--hooks`` measures instead, in this process, the CPU time that metrics
add to one put in the worst case (every put its own group commit): the
request hook, the timestamps, two histogram observations and the
keyspace listener, by ``time.process_time`` (CPU time, so less moved by
other processes than a rate).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGURATIONS = {
    "metrics off": ["--metrics", "off"],
    "metrics on": [],
    "metrics on, JSON logs": ["--log-format", "json"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_member(workdir: str, flags: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT)
    command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--nodaemon", "--pidfile=",
               f"--logfile={workdir}/member.log", "metastore", "--id", "1",
               "--cluster", f"http://127.0.0.1:{free_port()}", "--port", str(port), "--data-dir", workdir, *flags]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"member with {flags} did not become healthy")


def bench(url: str, pid: int, duration: float) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run(
        [sys.executable, "-m", "metastore.bench", "put", "--api", "seed", "--endpoints", url, "--clients", "64",
         "--duration", str(duration), "--pid", str(pid), "--json"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--hooks", action="store_true", help="measure the per-put cost of the hooks only")
    parser.add_argument("--paired", action="store_true", help="run the configurations at the same time each round")
    args = parser.parse_args()
    if args.hooks:
        hooks_cost()
        return
    members = {}
    try:
        for name, flags in CONFIGURATIONS.items():
            members[name] = start_member(tempfile.mkdtemp(prefix="metrics-cost."), flags)
        if args.paired:
            paired(members, args.rounds, args.duration)
            return
        runs: dict[str, list[dict]] = {name: [] for name in CONFIGURATIONS}
        for round_number in range(args.rounds):
            names = list(members)
            for name in names[round_number % len(names):] + names[:round_number % len(names)]:  # rotate the order
                process, url = members[name]
                result = bench(url, process.pid, args.duration)
                runs[name].append(result)
                print(f"round {round_number + 1} {name}: {summary(result)}", file=sys.stderr)
        print(f"load average after: {os.getloadavg()}")
        base = statistics.median(rate(r) for r in runs["metrics off"])
        base_cpu = statistics.median(cpu(r) for r in runs["metrics off"])
        for name, results in runs.items():
            median_rate = statistics.median(rate(r) for r in results)
            median_cpu = statistics.median(cpu(r) for r in results)
            print(f"{name}: median {median_rate:,.0f} req/s ({100 * (median_rate / base - 1):+.1f}%), "
                  f"CPU {median_cpu:.0f} ms / 1,000 req ({100 * (median_cpu / base_cpu - 1):+.1f}%); "
                  f"runs {[round(rate(r)) for r in results]}")
    finally:
        for process, _ in members.values():
            process.terminate()
            process.wait(timeout=30)


def paired(members: dict, rounds: int, duration: float) -> None:
    """Each round, every configuration's benchmark at once; medians of the
    per-round ratios to ``metrics off``."""
    ratios: dict[str, list[float]] = {name: [] for name in members}
    cpu_ratios: dict[str, list[float]] = {name: [] for name in members}
    env = dict(os.environ, PYTHONPATH=ROOT)
    for round_number in range(rounds):
        running = {
            name: subprocess.Popen(
                [sys.executable, "-m", "metastore.bench", "put", "--api", "seed", "--endpoints", url, "--clients", "64",
                 "--duration", str(duration), "--pid", str(process.pid), "--json"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
            for name, (process, url) in members.items()
        }
        results = {name: json.loads(bench_process.communicate(timeout=duration + 120)[0])
                   for name, bench_process in running.items()}
        for name, result in results.items():
            ratios[name].append(rate(result) / rate(results["metrics off"]))
            cpu_ratios[name].append(cpu(result) / cpu(results["metrics off"]))
        print(f"round {round_number + 1}: " + ", ".join(f"{n} {summary(r)}" for n, r in results.items()),
              file=sys.stderr)
    print(f"load average after: {os.getloadavg()}")
    for name in members:
        print(f"{name}: median rate {100 * (statistics.median(ratios[name]) - 1):+.1f}% and CPU per request "
              f"{100 * (statistics.median(cpu_ratios[name]) - 1):+.1f}% against metrics off in the same round; "
              f"rate ratios {[round(r, 3) for r in ratios[name]]}")


def hooks_cost(calls: int = 200_000, repeats: int = 7) -> None:
    """Print the median CPU µs that metrics add to one seed put."""
    sys.path.insert(0, ROOT)
    from metastore.kv.store import AppliedChanges, KeyValueStore
    from metastore.metrics.histogram import HistogramFamily
    from metastore.metrics.http import RequestDurations
    from metastore.metrics.keyspace import KeyspaceCounts
    from metastore.metrics.member import DISK_BUCKETS, REQUEST_BUCKETS
    from metastore.storage.engine import Event, KeyValue
    from metastore.storage.memory import MemoryEngine

    class FinishedPut:
        method, path, code = b"PUT", b"/bench-key-000123", 204
        received_at = time.perf_counter()

    hook = RequestDurations(HistogramFamily("r", "", REQUEST_BUCKETS, ("method", "route", "code")),
                            {b"v3", b"admin"}.__contains__)
    disk = HistogramFamily("d", "", DISK_BUCKETS)
    keyspace = KeyspaceCounts(KeyValueStore(MemoryEngine()))
    keyspace.keys()
    change = AppliedChanges(0, 0, (Event(KeyValue(b"k", b"v", 1, 1, 2), 0),), (None,), ())
    request, clock = FinishedPut(), time.perf_counter

    def one_put() -> None:
        request.received_at = clock()  # the request's head
        hook(request)  # its answer
        started = clock()  # the WAL fsync
        disk.observe(clock() - started)
        started = clock()  # the engine commit
        keyspace._revision = 0
        keyspace.applied(change)
        disk.observe(clock() - started)

    samples = []
    for _ in range(repeats):
        begun = time.process_time()
        for _ in range(calls):
            one_put()
        samples.append((time.process_time() - begun) / calls * 1e6)
    print(f"metrics hooks: median {statistics.median(samples):.2f} µs CPU per put "
          f"(runs {[round(x, 2) for x in samples]}), load average {os.getloadavg()}")


def rate(result: dict) -> float:
    return result["requests_per_second"]


def cpu(result: dict) -> float:
    return result["servers"][0]["cpu_ms_per_1000_requests"]


def summary(result: dict) -> str:
    return f"{rate(result):,.0f} req/s, CPU {cpu(result):.0f} ms / 1,000"


if __name__ == "__main__":
    main()
