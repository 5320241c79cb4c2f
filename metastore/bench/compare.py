"""Side by side: one etcd member and one MetaStore member, the same load.

``python -m metastore.bench.compare [--runs 3] [--duration 8] [--members
1,3] [--workers 0,2] [--storage memory,rocksdb] [--api seed,v3] [--clients
1,16,64,256] [--baseline CHECKOUT] [--json FILE] [--plot PNG]`` starts
etcd (``/usr/bin/etcd``, v3 JSON gateway) and one MetaStore cluster per
``--workers`` count and ``--storage`` engine (``twistd metastore``) of
each size in ``--members``, and with ``--baseline`` one more MetaStore
cluster per engine run from another checkout (to show what a change did,
in the same run), on free 127.0.0.1 ports with temporary data directories.  Each
MetaStore cluster is driven through every API of ``--api`` in turn (one
column each).  It runs each workload (issue 17's table, or with
``--clients`` put, linearizable get and serializable get at each of those
client counts) against each with ``metastore-bench`` (a separate process,
as a user runs it; to the leader of a cluster; runs of the servers
interleaved), and prints a Markdown table of the medians (by requests/s)
with the p99 and the CPU ms per 1,000 requests and RSS of the median run,
summed over every process of the server (members and fronts); ``--json``
keeps every figure, ``--plot`` draws throughput against clients from them
(:mod:`metastore.bench.plot_throughput`).  The servers are stopped at the
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
import time
from dataclasses import dataclass, replace

from metastore.bench.servers import CHECKOUT, Server, start_etcd, start_metastore, wait_for

WORKLOADS = (
    ("put, 1 client", ["put", "--clients", "1"]),
    ("put, 64 clients", ["put", "--clients", "64"]),
    ("linearizable get, 64", ["range", "--consistency", "l", "--clients", "64"]),
    ("serializable get, 64", ["range", "--consistency", "s", "--clients", "64"]),
)
"""Issue 17's one-member rows: (label, metastore-bench arguments)."""

KINDS = (
    ("put", ["put"]),
    ("linearizable get", ["range", "--consistency", "l"]),
    ("serializable get", ["range", "--consistency", "s"]),
)
"""What a client-count sweep measures at each count: (kind, arguments)."""


def sweep_workloads(clients: tuple[int, ...]) -> tuple[tuple[str, list[str]], ...]:
    """Every kind of :data:`KINDS` at every client count, labelled as
    issue 17's rows are ("put, 64 clients", "linearizable get, 64")."""
    def label(kind: str, n: int) -> str:
        return f"{kind}, {n} client{'s' if n > 1 else ''}" if kind == "put" else f"{kind}, {n}"

    return tuple((label(kind, n), arguments + ["--clients", str(n)]) for kind, arguments in KINDS for n in clients)


def describe(arguments: list[str]) -> tuple[str, int]:
    """The kind (of :data:`KINDS`) and client count of a workload's arguments."""
    clients = int(arguments[arguments.index("--clients") + 1])
    for kind, kind_arguments in KINDS:
        if arguments[:len(kind_arguments)] == kind_arguments:
            return kind, clients
    raise ValueError(f"not a put or single-key range: {arguments}")


def bench_argv(server: Server, arguments: list[str], duration: float | None) -> list[str]:
    """The command line of one ``metastore-bench`` run against ``server``
    (its leader when it has several members) for ``duration`` seconds (or
    as ``arguments`` bound it), printing JSON, with every server
    process's CPU and RSS accounted."""
    pids = [arg for pid in server.pids() for arg in ("--pid", str(pid))]
    leader = ["--target-leader"] if len(server.urls) > 1 else []
    limit = ["--duration", str(duration)] if duration is not None else []
    return [sys.executable, "-m", "metastore.bench", *arguments, "--api", server.api,
            "--endpoints", ",".join(server.urls), *leader, *limit, *pids, "--json"]


def bench_all_at_once(servers: list[Server], arguments_of: dict[str, list[str]], duration: float | None,
                      timeout: float, during=None) -> dict[str, dict]:
    """Run ``metastore-bench`` against every server at the same time (a
    process each, ``arguments_of[server.name]``), calling ``during()``
    until they have all finished (it returns how long to wait before the
    next call); each one's JSON result.  None ends after ``timeout`` s."""
    processes = {s.name: subprocess.Popen(bench_argv(s, arguments_of[s.name], duration), cwd=CHECKOUT,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for s in servers}
    try:
        while during is not None and any(p.poll() is None for p in processes.values()):
            time.sleep(during())
        results = {}
        for name, process in processes.items():
            out, err = process.communicate(timeout=timeout)
            try:
                results[name] = json.loads(out)
            except ValueError:
                raise RuntimeError(f"metastore-bench against {name} failed ({process.returncode}):\n{err}") from None
        return results
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def bench(server: Server, arguments: list[str], duration: float) -> dict:
    """One ``metastore-bench`` run against ``server``; its JSON result."""
    argv = bench_argv(server, arguments, duration)
    output = subprocess.run(argv, cwd=CHECKOUT, capture_output=True, text=True, timeout=duration + 300)
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
    runs: tuple[float, ...] = ()
    """Every run's requests/s, in the order run."""
    runs_p99_ms: tuple[float, ...] = ()
    """Every run's p99 in ms, in the order run (a tail moves more from run to run than a rate)."""

    @classmethod
    def median_of(cls, documents: list[dict]) -> Figure:
        """The run whose requests/s is the median (the lower middle of an even count)."""
        ordered = sorted(documents, key=lambda d: d["requests_per_second"])
        median = ordered[(len(ordered) - 1) // 2]
        assert median["requests_per_second"] == statistics.median_low([d["requests_per_second"] for d in ordered])
        servers = median["servers"]
        latency = median["latency_ms"] or {"p99": float("nan")}
        return cls(median["requests_per_second"], latency["p99"],
                   sum(s["cpu_ms_per_1000_requests"] or 0 for s in servers), sum(s["rss_after_mb"] for s in servers),
                   median["errors"], tuple(d["requests_per_second"] for d in documents),
                   tuple((d["latency_ms"] or {"p99": float("nan")})["p99"] for d in documents))


@dataclass(frozen=True)
class Column:
    """One column of the table: a server driven through one API, and what it is."""

    server: Server
    software: str
    """etcd, MetaStore or baseline."""
    storage: str
    workers: int

    @property
    def name(self) -> str:
        """The column's heading."""
        return self.server.name


def columns_of(servers: list[tuple[Server, str, str, int]], apis: tuple[str, ...],
               storages: tuple[str, ...]) -> list[Column]:
    """The columns for started ``servers`` (each with its software,
    storage and workers): etcd's one, and one per API for each MetaStore
    cluster, named by what sets it apart from the others."""
    columns = []
    for server, software, storage, workers in servers:
        if software == "etcd":
            columns.append(Column(server, software, "", 0))
            continue
        for api in apis:
            parts = [software] + ([api] if len(apis) > 1 else []) + \
                    ([storage] if len(storages) > 1 or storage != "memory" else []) + \
                    ([f"--workers {workers}"] if workers else [])
            columns.append(Column(replace(server, name=" ".join(parts), api=api), software, storage, workers))
    return columns


def _start(workdir: str, etcd: str, members: int, workers: tuple[int, ...], storages: tuple[str, ...],
           baseline: str | None, started: list[Server]) -> list[tuple[Server, str, str, int]]:
    """Start the servers (each also appended to ``started``, to be stopped
    however this ends) and wait until they serve."""
    def keep(server: Server, *what) -> tuple:
        started.append(server)
        return (server, *what)

    servers = [keep(start_etcd(workdir, etcd, members), "etcd", "", 0)]
    if baseline is not None:  # one baseline cluster per engine measured: a change is compared on its own engine
        for storage in storages:
            name = "baseline" if storage == "memory" else f"baseline {storage}"
            servers.append(keep(start_metastore(workdir, members, storage=storage,
                                                checkout=os.path.abspath(baseline), name=name),
                                "baseline", storage, 0))
    for storage in storages:
        for w in workers:
            name = " ".join(["MetaStore", storage] + ([f"--workers {w}"] if w else []))
            servers.append(keep(start_metastore(workdir, members, w, storage=storage, name=name),
                                "MetaStore", storage, w))
    for server in started:
        for url in server.urls:
            wait_for(url + ("/version" if server.name == "etcd" else "/livez"))
        wait_for(server.ready_url)
    return servers


def compare(runs: int, duration: float, etcd: str, out=sys.stdout, members: tuple[int, ...] = (1,),
            workers: tuple[int, ...] = (0,), workloads=WORKLOADS, api: str | tuple[str, ...] = "seed",
            baseline: str | None = None, storages: tuple[str, ...] = ("memory",),
            json_path: str | None = None) -> dict:
    """For each cluster size in ``members``: start etcd and a MetaStore
    cluster per ``workers`` count and engine in ``storages``, measure
    every workload on each (each MetaStore cluster through each API in
    ``api``), print the table; stop them.  Returns every figure as
    :func:`figures_as_json` does, also written to ``json_path`` after
    each cluster size (so a long sweep that fails keeps what it measured)."""
    apis = (api,) if isinstance(api, str) else tuple(api)
    if json_path is not None:  # before measuring: a missing folder must not cost the sweep
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    document = {"settings": {"runs": runs, "duration": duration, "members": list(members), "workers": list(workers),
                             "storage": list(storages), "api": list(apis), "cores": os.cpu_count(),
                             "etcd": etcd, "baseline": baseline},
                "sizes": []}
    for size in members:
        workdir = tempfile.mkdtemp(prefix="metastore-compare-")
        started: list[Server] = []
        try:
            columns = columns_of(_start(workdir, etcd, size, workers, storages, baseline, started), apis, storages)
            document["sizes"].append(_measure(columns, size, runs, duration, workloads, out))
        finally:
            for server in started:
                server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
        if json_path is not None:
            with open(json_path, "w") as f:
                json.dump(document, f, indent=1)
    return document


def _measure(columns: list[Column], size: int, runs: int, duration: float, workloads, out) -> dict:
    load_before = os.getloadavg()
    figures: dict[tuple[str, str], Figure] = {}
    populated: set[str] = set()
    for label, arguments in workloads:
        # Interleaved, so that the machine's changing load falls on every server alike.
        documents: dict[str, list[dict]] = {column.name: [] for column in columns}
        for _ in range(runs):
            for column in columns:
                reads_populated = arguments[0] == "range" and column.name in populated
                documents[column.name].append(
                    bench(column.server, arguments + (["--no-populate"] if reads_populated else []), duration))
                if arguments[0] == "range":
                    populated.add(column.name)
        for column in columns:
            figures[label, column.name] = Figure.median_of(documents[column.name])
            print(f"{label} {column.name}: {figures[label, column.name]}", file=sys.stderr, flush=True)
    print_table(figures, [column.name for column in columns], out, size, workloads)
    load_after = os.getloadavg()
    print(f"\n{runs} runs of {duration:g} s each, median by requests/s; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} cores.\n", file=out, flush=True)
    errors = {f"{k[0]} {k[1]}": f.errors for k, f in figures.items() if f.errors}
    if errors:
        print(f"errors in the median runs: {errors}\n", file=out)
    return figures_as_json(figures, columns, size, workloads, (load_before[0], load_after[0]))


def figures_as_json(figures: dict[tuple[str, str], Figure], columns: list[Column], size: int, workloads,
                    load_average: tuple[float, float]) -> dict:
    """One cluster size's figures as JSON-ready data: a row per workload and column."""
    rows = []
    for label, arguments in workloads:
        kind, clients = describe(arguments)
        for column in columns:
            figure = figures[label, column.name]
            rows.append({
                "workload": label, "kind": kind, "clients": clients,
                "column": column.name, "software": column.software, "api": column.server.api,
                "storage": column.storage, "workers": column.workers,
                "requests_per_second": figure.requests_per_second, "p99_ms": figure.p99_ms,
                "cpu_ms_per_1000_requests": figure.cpu_ms_per_1000, "rss_mb": figure.rss_mb,
                "errors": figure.errors, "runs_requests_per_second": list(figure.runs),
                "runs_p99_ms": list(figure.runs_p99_ms),
            })
    return {"members": size, "columns": [c.name for c in columns], "load_average": list(load_average), "rows": rows}


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _choices(allowed: tuple[str, ...]):
    """An argparse type: a comma-separated list of names from ``allowed``."""
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(part.strip() for part in text.split(",") if part.strip())
        wrong = [n for n in names if n not in allowed]
        if wrong or not names:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(allowed)} (comma-separated)")
        return names
    return parse


def print_table(figures: dict, names: list[str], out, size: int = 1, workloads=WORKLOADS) -> None:
    """The Markdown table: per workload, each server's req/s (p99), each
    later server's ratio to the first's (etcd's) req/s, CPU per 1,000
    requests and RSS (summed over the server's processes)."""
    members = f"{size} member{'s' if size > 1 else ''}"
    print(f"| {members} | {' | '.join(f'{n} req/s (p99 ms)' for n in names)} | "
          f"ratio {' / '.join(names[1:])} / etcd | "
          f"CPU ms / 1,000 req {' / '.join(names)} | RSS MB {' / '.join(names)} |", file=out)
    print("|---" * (len(names) + 4) + "|", file=out)
    for label, _ in workloads:
        row = [figures[label, n] for n in names]
        rates = " | ".join(f"{f.requests_per_second:,.0f} ({f.p99_ms:.1f})" for f in row)
        ratios = " / ".join(f"{f.requests_per_second / row[0].requests_per_second:.2f}"
                            if row[0].requests_per_second else "-" for f in row[1:])
        print(f"| {label} | {rates} | {ratios} | {' / '.join(f'{f.cpu_ms_per_1000:.0f}' for f in row)} | "
              f"{' / '.join(f'{f.rss_mb:.0f}' for f in row)} |", file=out)


def main(argv: list[str] | None = None) -> None:
    """Parse the options, compare, and draw the plot if asked."""
    arguments = parse_arguments(argv)
    words = [w.strip() for w in arguments.workloads.split(",") if w.strip()]
    all_workloads = sweep_workloads(arguments.clients) if arguments.clients else WORKLOADS
    workloads = [w for w in all_workloads if not words or any(word in w[0] for word in words)]
    document = compare(arguments.runs, arguments.duration, arguments.etcd, members=arguments.members,
                       workers=arguments.workers, workloads=workloads, api=arguments.api,
                       baseline=arguments.baseline, storages=arguments.storage, json_path=arguments.json)
    if arguments.plot:
        from metastore.bench.plot_throughput import plot_throughput
        from metastore.bench.plotting import PlottingUnavailable

        try:
            plot_throughput(document, arguments.plot)
            print(f"plot: {arguments.plot}", file=sys.stderr)
        except PlottingUnavailable as e:
            print(e, file=sys.stderr)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``sys.argv`` by default)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per workload and server (median taken)")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--etcd", default="/usr/bin/etcd", help="the etcd binary")
    parser.add_argument("--members", type=_numbers, default=(1,), help="cluster sizes, e.g. 1,3")
    parser.add_argument("--workers", type=_numbers, default=(0,), help="MetaStore --workers counts, e.g. 0,2")
    parser.add_argument("--api", type=_choices(("seed", "v3")), default=("seed",),
                        help="the APIs MetaStore is driven through, e.g. seed,v3 (a column each)")
    parser.add_argument("--storage", type=_choices(("memory", "rocksdb")), default=("memory",),
                        help="MetaStore's engines, e.g. memory,rocksdb (a cluster each)")
    parser.add_argument("--clients", type=_numbers, default=(),
                        help="instead of issue 17's rows: put, linearizable and serializable get at each of "
                             "these client counts, e.g. 1,16,64,256")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    parser.add_argument("--plot", metavar="PNG", help="draw requests/s against clients to PNG (needs --clients "
                        "with several counts, and matplotlib: pip install 'metastore[plot]')")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also run a MetaStore cluster from this checkout (e.g. `git archive main | tar -x`)")
    parser.add_argument("--workloads", default="", help="only the workloads whose label contains one of these "
                        "comma-separated words (e.g. 64)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
