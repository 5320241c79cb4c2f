"""The throughput cost of metrics (and JSON logs) on put at 64 clients.

Starts three one-member clusters from this checkout on free 127.0.0.1
ports: ``--metrics off``, ``--metrics on`` (the default) and ``--metrics
on --log-format json``.  Runs ``metastore-bench put --clients 64`` against
each in turn, round after round (so drift in the machine's load hits every
configuration alike), and prints each configuration's median requests/s
and server CPU ms per 1,000 requests, and the cost relative to ``off``.

    python scripts/metrics-cost.py --rounds 5 --duration 8
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
    args = parser.parse_args()
    members = {}
    try:
        for name, flags in CONFIGURATIONS.items():
            members[name] = start_member(tempfile.mkdtemp(prefix="metrics-cost."), flags)
        runs: dict[str, list[dict]] = {name: [] for name in CONFIGURATIONS}
        for round_number in range(args.rounds):
            for name, (process, url) in members.items():
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


def rate(result: dict) -> float:
    return result["requests_per_second"]


def cpu(result: dict) -> float:
    return result["servers"][0]["cpu_ms_per_1000_requests"]


def summary(result: dict) -> str:
    return f"{rate(result):,.0f} req/s, CPU {cpu(result):.0f} ms / 1,000"


if __name__ == "__main__":
    main()
