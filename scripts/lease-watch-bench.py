#!/usr/bin/env python3
"""Watch fan-out, lease keepalive and idle-watcher memory: 3 etcd members next to 3 MetaStore members.

Starts a 3-member etcd 3.4 (/usr/bin/etcd) and a 3-member MetaStore (memory
engine, this checkout) on free 127.0.0.1 ports, one after the other, fresh
for every run; on each, measures the RSS per idle watcher, the watch
fan-out and the keepalive rate; ``--runs`` times.  Prints every run as a
JSON line, then the medians as a Markdown table.  Every process is stopped
by PID.

    .venv/bin/python scripts/lease-watch-bench.py --runs 3 --duration 8 --watchers 1000
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

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, body: bytes | None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def start_etcd(workdir: str, processes: list[subprocess.Popen]) -> tuple[list[subprocess.Popen], list[str]]:
    names = ["e1", "e2", "e3"]
    peers = {n: f"http://127.0.0.1:{free_port()}" for n in names}
    clients = {n: f"http://127.0.0.1:{free_port()}" for n in names}
    initial = ",".join(f"{n}={peers[n]}" for n in names)
    for n in names:
        log = open(os.path.join(workdir, f"{n}.log"), "wb")
        processes.append(subprocess.Popen(
            ["/usr/bin/etcd", "--name", n, "--data-dir", os.path.join(workdir, n), "--listen-client-urls", clients[n],
             "--advertise-client-urls", clients[n], "--listen-peer-urls", peers[n], "--initial-advertise-peer-urls",
             peers[n], "--initial-cluster", initial, "--initial-cluster-token", f"lwb-{os.getpid()}",
             "--log-level", "warn", "--logger", "zap"], stdout=log, stderr=subprocess.STDOUT))
    urls = [clients[n] for n in names]
    for url in urls:
        wait_ready(url + "/health", None)
    return processes, urls


def start_metastore(workdir: str, processes: list[subprocess.Popen]) -> tuple[list[subprocess.Popen], list[str]]:
    peers = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    ports = [free_port() for _ in range(3)]
    env = dict(os.environ, PYTHONPATH=CHECKOUT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for i in range(3):
        processes.append(subprocess.Popen(
            [PYTHON, "-c", "from twisted.scripts.twistd import run; run()", "--nodaemon", "--pidfile=",
             f"--logfile={os.path.join(workdir, f'm{i + 1}.log')}", "metastore", "--id", str(i + 1),
             "--cluster", ",".join(peers), "--port", str(ports[i]), "--storage", "memory",
             "--data-dir", workdir], cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    for url in urls:
        wait_ready(url + "/health", None)
    return processes, urls


def bench(args: list[str], urls: list[str], pids: list[int], timeout: float = 600) -> dict:
    command = [PYTHON, "-m", "metastore.bench", *args, "--api", "v3", "--json", "--endpoints", ",".join(urls)]
    command += [f"--pid={p}" for p in pids]
    env = dict(os.environ, PYTHONPATH=CHECKOUT)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}") from None


def figures(kind: str, result: dict) -> dict:
    if kind == "watch":
        latency = result.get("delivery_latency_ms") or {}
        client = result["puts"].get("client") or {}
        return {"events_per_second": result["events_per_second"], "delivery_p99_ms": latency.get("p99"),
                "delivery_p50_ms": latency.get("p50"), "events_missing": result["events_missing"],
                "watchers_created": result["watchers_created"],
                "puts_per_second": result["puts"]["succeeded_per_second"],
                "client_cpu_s": round(client.get("cpu_ms", 0) / 1000, 1),
                "elapsed_s": result["elapsed_seconds"]}
    if kind == "keepalive":
        return {"keepalives_per_second": result["succeeded_per_second"], "p99_ms": result["latency_ms"]["p99"],
                "errors": result["requests"] - result["succeeded"]}
    return {"bytes_per_watcher": result["bytes_per_watcher"], "watchers_created": result["watchers_created"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=1)
    parser.add_argument("--keepalive-clients", type=int, default=64)
    options = parser.parse_args()
    plan = [
        ("idle-watch-memory", ["watch-memory", "--watchers", str(options.watchers), "--settle", "3"]),
        ("watch", ["watch", "--watchers", str(options.watchers), "--clients", str(options.writers),
                   "--duration", str(options.duration), "--key-prefix", "fan/"]),
        ("keepalive", ["lease-keepalive", "--clients", str(options.keepalive_clients), "--duration",
                       str(options.duration)]),
    ]
    runs: dict[tuple[str, str], list[dict]] = {}
    for n in range(options.runs):
        # Fresh members every run, idle memory measured first: memory a
        # process freed earlier would otherwise be reused and hide the cost.
        for name, start in (("etcd", start_etcd), ("MetaStore", start_metastore)):
            workdir = tempfile.mkdtemp(prefix=f"lwbench-{name}-")
            processes: list[subprocess.Popen] = []
            try:
                processes, urls = start(workdir, processes)
                for kind, args in plan:
                    result = figures(kind, bench(args, urls, [p.pid for p in processes]))
                    runs.setdefault((kind, name), []).append(result)
                    print(json.dumps({"run": n + 1, "kind": kind, "system": name, **result}), flush=True)
            finally:
                stop(processes)
                shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()}")
    print("| measurement | system | median | runs |")
    print("|---|---|---|---|")
    for (kind, name), results in sorted(runs.items()):
        for field in results[0]:
            values = [r[field] for r in results if r[field] is not None]
            if values:
                print(f"| {kind} {field} | {name} | {statistics.median(values)} | {values} |")


def stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each by PID, SIGKILL any that hangs."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)

if __name__ == "__main__":
    main()
