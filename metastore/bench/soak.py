"""RSS over a long run at a fixed share of the maximum put rate, next to etcd.

``python scripts/rss-soak.py [--minutes 10] [--share 0.7] [--storage
memory]`` starts one etcd member (``/usr/bin/etcd``) and one MetaStore
member from this checkout on free 127.0.0.1 ports, finds each one's
maximum put rate (a short closed-loop run of ``metastore-bench put``
against both at once, so each is measured sharing the machine as it will
during the soak), then puts to both at the same time at ``share`` of their
own maximum (``metastore-bench --rate``, 256 clients) for ``minutes``,
reading both servers' RSS every ``--interval`` seconds.  It prints a Markdown table of
the samples, the least-squares RSS slope over the run but its first two
minutes, and each load generator's achieved rate and p99; writes the
figures as JSON (``--json``) and a PNG (``--plot``, when matplotlib is
installed).  The servers are stopped at the end, however it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

from metastore.bench.compare import bench_all_at_once
from metastore.bench.plotting import PlottingUnavailable, pyplot
from metastore.bench.proc import sample
from metastore.bench.servers import CHECKOUT, Server, start_etcd, start_metastore, wait_for

PUT = ["put", "--clients", "64"]
"""The probe: 64 closed-loop keep-alive clients, 256-byte values over 10,000 random keys."""

PACED_CLIENTS = 256
"""Clients of the paced run: more than the probe's, so that the rate, not
the clients, bounds it (at 64 a rate of 1,500/s needs every request
answered within 43 ms on average, which a loaded machine misses)."""


@dataclass
class RssSeries:
    """One server's RSS samples during the soak: (seconds since the paced
    load began, MB summed over its processes), its probed maximum and the
    rate it was held to, and the paced run's figures."""

    name: str
    maximum_per_second: float
    target_per_second: float
    samples: list[tuple[float, float]] = field(default_factory=list)
    achieved_per_second: float | None = None
    p99_ms: float | None = None
    errors: dict = field(default_factory=dict)


def slope_mb_per_minute(samples: list[tuple[float, float]], since_seconds: float = 0.0) -> float | None:
    """The least-squares slope of RSS (MB per minute) over the samples
    taken at or after ``since_seconds``; None with fewer than two."""
    points = [(t / 60.0, mb) for t, mb in samples if t >= since_seconds]
    if len(points) < 2:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_mb = sum(mb for _, mb in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return None
    return sum((t - mean_t) * (mb - mean_mb) for t, mb in points) / spread


def rss_mb(pids: list[int]) -> float:
    """The RSS of ``pids`` summed, in MB (a process that has gone counts 0)."""
    total = 0
    for pid in pids:
        try:
            total += sample(pid).rss_bytes
        except OSError:
            pass
    return total / 2**20


def format_soak(series: list[RssSeries], since_seconds: float) -> str:
    """The samples side by side as a Markdown table, then one summary row per server."""
    names = [s.name for s in series]
    lines = [f"| seconds | {' | '.join(f'{n} RSS MB' for n in names)} |", "|---" * (len(names) + 1) + "|"]
    for row in zip(*(s.samples for s in series)):
        lines.append(f"| {row[0][0]:.0f} | {' | '.join(f'{mb:.1f}' for _, mb in row)} |")
    lines += ["", "| server | maximum put/s | held to put/s | achieved put/s (p99 ms) | RSS MB first / last / max | "
                  f"slope after {since_seconds:.0f} s, MB/min |", "|---" * 6 + "|"]
    for s in series:
        mbs = [mb for _, mb in s.samples]
        slope = slope_mb_per_minute(s.samples, since_seconds)
        achieved = "-" if s.achieved_per_second is None else f"{s.achieved_per_second:,.0f} ({s.p99_ms:.1f})"
        lines.append(f"| {s.name} | {s.maximum_per_second:,.0f} | {s.target_per_second:,.0f} | {achieved} | "
                     f"{mbs[0]:.1f} / {mbs[-1]:.1f} / {max(mbs):.1f} | "
                     f"{'-' if slope is None else f'{slope:+.2f}'} |" if mbs else f"| {s.name} | no samples |")
    return "\n".join(lines)


def plot_soak(series: list[RssSeries], path: str, title: str) -> None:
    """RSS against minutes, one line per server, to the PNG ``path``
    (:class:`PlottingUnavailable` without matplotlib)."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for s in series:
        axes.plot([t / 60 for t, _ in s.samples], [mb for _, mb in s.samples], marker=".",
                  label=f"{s.name} at {s.target_per_second:,.0f} put/s")
    axes.set_xlabel("minutes at the held rate")
    axes.set_ylabel("RSS (MB)")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend()
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def soak(servers: list[Server], minutes: float, share: float, interval: float, probe_seconds: float,
         log=sys.stderr) -> list[RssSeries]:
    """Probe each server's maximum put rate, then hold both at ``share``
    of it for ``minutes`` while sampling their RSS every ``interval`` s."""
    probed = bench_all_at_once(servers, {s.name: PUT for s in servers}, probe_seconds, probe_seconds + 120)
    series = {s.name: RssSeries(s.name, probed[s.name]["succeeded_per_second"],
                                round(probed[s.name]["succeeded_per_second"] * share, 1)) for s in servers}
    for s in series.values():
        print(f"{s.name}: maximum {s.maximum_per_second:,.0f} put/s, holding {s.target_per_second:,.0f}",
              file=log, flush=True)
    start = time.monotonic()
    next_sample = [start]

    def take_sample() -> float:
        now = time.monotonic()
        if now >= next_sample[0]:
            for server in servers:
                series[server.name].samples.append((round(now - start, 1), round(rss_mb(server.pids()), 1)))
            print("  ".join(f"{n} {s.samples[-1][1]:.1f} MB" for n, s in series.items()),
                  f"at {now - start:.0f} s", file=log, flush=True)
            next_sample[0] += interval
        return max(0.0, min(1.0, next_sample[0] - time.monotonic()))

    paced = {name: ["put", "--clients", str(PACED_CLIENTS), "--rate", str(s.target_per_second)]
             for name, s in series.items()}
    results = bench_all_at_once(servers, paced, minutes * 60, 120, during=take_sample)
    for name, result in results.items():
        series[name].achieved_per_second = result["succeeded_per_second"]
        series[name].p99_ms = (result["latency_ms"] or {}).get("p99")
        series[name].errors = result["errors"]
    return list(series.values())


def main(argv: list[str] | None = None) -> None:
    """Parse the options, start the servers, soak, report; stop the servers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes at the held rate")
    parser.add_argument("--share", type=float, default=0.7, help="the share of each server's maximum to hold")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between RSS samples")
    parser.add_argument("--probe-seconds", type=float, default=8.0, help="the closed-loop run that finds the maximum")
    parser.add_argument("--storage", choices=("memory", "rocksdb"), default="memory", help="MetaStore's engine")
    parser.add_argument("--etcd", default="/usr/bin/etcd", help="the etcd binary")
    parser.add_argument("--json", metavar="FILE", help="write the samples and summary as JSON")
    parser.add_argument("--plot", metavar="PNG", default=os.path.join(CHECKOUT, "docs", "images", "rss-soak.png"),
                        help="the PNG to draw (default: docs/images/rss-soak.png)")
    options = parser.parse_args(argv)
    if not 0 < options.share <= 1 or options.minutes <= 0 or options.interval <= 0:
        parser.error("--share must be within (0, 1], --minutes and --interval positive")
    workdir = tempfile.mkdtemp(prefix="metastore-soak-")
    servers: list[Server] = []
    try:
        servers = [start_etcd(workdir, options.etcd), start_metastore(workdir, storage=options.storage, api="v3")]
        for server in servers:
            wait_for(server.url + "/version")
            wait_for(server.ready_url)
        load_before = os.getloadavg()[0]
        series = soak(servers, options.minutes, options.share, options.interval, options.probe_seconds)
        load_after = os.getloadavg()[0]
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    since = min(120.0, options.minutes * 60 / 5)
    print(format_soak(series, since))
    print(f"\nv3 puts, 256-byte values, 10,000 keys; maximum with 64 closed-loop clients; {options.share:.0%} of it "
          f"with {PACED_CLIENTS} clients for "
          f"{options.minutes:g} min; MetaStore --storage {options.storage}; load average {load_before:.1f} "
          f"before, {load_after:.1f} after, on {os.cpu_count()} cores.")
    for s in series:
        if s.errors:
            print(f"errors {s.name}: {s.errors}")
    if options.json:
        with open(options.json, "w") as f:
            json.dump({"minutes": options.minutes, "share": options.share, "storage": options.storage,
                       "probe_clients": 64, "paced_clients": PACED_CLIENTS,
                       "slope_since_seconds": since, "load_average": [load_before, load_after],
                       "series": [asdict(s) | {"slope_mb_per_minute": slope_mb_per_minute(s.samples, since)}
                                  for s in series]}, f, indent=1)
    try:
        plot_soak(series, options.plot, f"RSS at {options.share:.0%} of the maximum put rate "
                                        f"(MetaStore {options.storage})")
        print(f"plot: {options.plot}")
    except PlottingUnavailable as e:
        print(e, file=sys.stderr)


if __name__ == "__main__":
    main()
