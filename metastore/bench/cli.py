"""``metastore-bench`` (also ``python -m metastore.bench``): the command line.

Subcommands, as etcd's ``benchmark`` tool: ``put``, ``range``,
``txn-mixed``, ``watch``, ``lease-keepalive``; and ``watch-memory`` (RSS
per idle watcher).  Each takes the common
options (endpoints, API, clients, connections, total or duration, key and
value sizes, key space, server PIDs for CPU accounting, ``--json``).
"""

from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import replace
from typing import Sequence, TextIO

from twisted.internet.task import react
from twisted.python import usage

from metastore.bench.apis import API_NAMES, SEED, UnsupportedRequest
from metastore.bench.lease import grant_leases, keepalive_run, require_leases
from metastore.bench.leader import find_leader
from metastore.bench.load import BenchConfig, LoadRun, Operation, benchmark_run, populate_keys
from metastore.bench.proc import CostMeter
from metastore.bench.report import (
    ProgressBar,
    format_report,
    format_watch_report,
    result_as_json,
    watch_result_as_json,
)
from metastore.bench.watch import WatchRun
from metastore.bench.watch_memory import IdleWatchers, format_idle_watch_report, idle_watch_result_as_json


def _common_parameters(clients: int = 64) -> list:
    return [
        ["api", None, SEED, f"Client API: {' | '.join(API_NAMES)} (seed: MetaStore's REST API; "
                            "v3: etcd's JSON gateway; grpc: not yet)."],
        ["clients", "c", clients, "Concurrent closed-loop clients.", int],
        ["conns", None, None, "Connections the clients share (default: one per client; "
                              "clients on one connection pipeline their requests).", int],
        ["duration", "d", None, "Measured seconds (default 10 unless --total).", float],
        ["total", "n", None, "Total measured requests, instead of --duration.", int],
        ["value-size", None, 256, "Bytes per written value.", int],
        ["key-size", None, 0, "Pad key numbers with zeros to this many bytes per key (0: no padding).", int],
        ["key-space-size", "k", 10000, "Number of distinct keys.", int],
        ["key-prefix", None, "bench/", "Prefix of every key."],
        ["warmup", "w", 0.0, "Seconds of unmeasured load first.", float],
        ["rate", None, None, "Total requests/s the clients may send together (default: closed loop, "
                             "each client sends as soon as answered).", float],
        ["timeout", None, 10.0, "Seconds before a request counts as timed out.", float],
        ["seed", None, None, "Random seed, for a repeatable key sequence.", int],
        ["cacert", None, "", "CA file (PEM) for https:// endpoints (default: the system's roots)."],
        ["cert", None, "", "Client certificate (PEM) for https:// endpoints that ask for one."],
        ["key", None, "", "Private key (PEM) of --cert."],
    ]


_COMMON_FLAGS = [
    ["sequential-keys", None, "Use keys 0, 1, 2 … in order instead of at random."],
    ["random-values", None, "Send a different, incompressible value with every write."],
    ["target-leader", None, "Send everything to whichever endpoint is the leader."],
    ["json", None, "Print the result as JSON."],
]


class _CommonOptions(usage.Options):
    """The options every subcommand takes; ``self.config`` after parsing."""

    operation = Operation.PUT
    optParameters = _common_parameters()
    optFlags = _COMMON_FLAGS

    def __init__(self) -> None:
        super().__init__()
        self.longdesc = type(self).__doc__
        self["urls"] = []
        self["pids"] = []

    def opt_endpoints(self, value: str) -> None:
        """Member base URL (repeatable or comma-separated; clients round-robin over them)."""
        self["urls"].extend(u.strip() for u in value.split(",") if u.strip())

    def opt_url(self, value: str) -> None:
        """The same as --endpoints."""
        self.opt_endpoints(value)

    opt_u = opt_url

    def opt_pid(self, value: str) -> None:
        """A server process to account CPU time and RSS for (repeatable; Linux /proc)."""
        try:
            self["pids"].extend(int(p) for p in value.split(",") if p.strip())
        except ValueError:
            raise usage.UsageError(f"--pid takes process ids, not {value!r}") from None

    def operation_settings(self) -> dict:
        """Subcommand-specific fields of :class:`BenchConfig`."""
        return {"operation": self.operation}

    def postOptions(self) -> None:
        """Validate, and build ``self.config``."""
        if not self["urls"]:
            raise usage.UsageError("at least one --endpoints URL is required")
        if self["api"] not in API_NAMES:
            raise usage.UsageError(f"--api must be one of {', '.join(API_NAMES)}")
        if self["duration"] is not None and self["total"] is not None:
            raise usage.UsageError("give --duration or --total, not both")
        duration = self["duration"] if self["duration"] is not None else 10.0
        checks = [
            (self["clients"] >= 1, "--clients must be at least 1"),
            (self["conns"] is None or 1 <= self["conns"] <= self["clients"], "--conns must be within [1, --clients]"),
            (duration > 0, "--duration must be positive"),
            (self["total"] is None or self["total"] >= 1, "--total must be at least 1"),
            (self["value-size"] >= 0, "--value-size must not be negative"),
            (self["key-size"] >= 0, "--key-size must not be negative"),
            (self["key-space-size"] >= 1, "--key-space-size must be at least 1"),
            (self["warmup"] >= 0, "--warmup must not be negative"),
            (self["timeout"] > 0, "--timeout must be positive"),
            (self["rate"] is None or self["rate"] > 0, "--rate must be positive"),
        ] + [(os.path.exists(f"/proc/{pid}"), f"--pid {pid}: no such process") for pid in self["pids"]]
        for ok, message in checks:
            if not ok:
                raise usage.UsageError(message)
        try:
            self.config = BenchConfig(
                urls=tuple(self["urls"]),
                api=self["api"],
                clients=self["clients"],
                conns=self["conns"],
                value_size=self["value-size"],
                key_size=self["key-size"],
                keys=self["key-space-size"],
                key_prefix=self["key-prefix"],
                sequential_keys=bool(self["sequential-keys"]),
                duration=duration,
                requests=self["total"],
                warmup=self["warmup"],
                random_values=bool(self["random-values"]),
                request_timeout=self["timeout"],
                seed=self["seed"],
                rate=self["rate"],
                cacert=self["cacert"],
                cert=self["cert"],
                key=self["key"],
                **self.operation_settings(),
            )
            self.check_api()
        except (ValueError, UnsupportedRequest) as e:
            raise usage.UsageError(str(e)) from None

    def check_api(self) -> None:
        """Refuse (UnsupportedRequest) an API that cannot run this subcommand."""
        self.config.builders(random.Random(0))


class PutOptions(_CommonOptions):
    """``put``: write keys (PUT /{key}, or POST /v3/kv/put)."""

    synopsis = "--endpoints URL[,URL…] [options]"


class _ReadingOptions(_CommonOptions):
    """A workload that reads, so the key space is written first."""

    optFlags = _COMMON_FLAGS + [["no-populate", None, "Do not write every key before a reading run."]]

    def operation_settings(self) -> dict:
        """Reads populate unless told not to."""
        return {**super().operation_settings(), "populate": not self["no-populate"]}


class RangeOptions(_ReadingOptions):
    """``range``: read single keys, linearizable (l) or serializable (s)."""

    synopsis = "--endpoints URL [--consistency l|s] [options]"
    optParameters = _common_parameters() + [
        ["consistency", None, "l", "l: linearizable reads; s: serializable (local) reads."]
    ]

    def operation_settings(self) -> dict:
        """The read's consistency picks the op."""
        if self["consistency"] not in ("l", "s"):
            raise usage.UsageError("--consistency must be l or s")
        op = Operation.GET if self["consistency"] == "l" else Operation.GET_SERIALIZABLE
        return {**super().operation_settings(), "operation": op}


class TxnMixedOptions(_ReadingOptions):
    """``txn-mixed``: a mix of writes and reads (txn put / txn range through v3,
    PUT / GET through the seed API, which has no transactions)."""

    synopsis = "--endpoints URL [--read-ratio R] [options]"
    optParameters = _common_parameters() + [["read-ratio", None, 0.5, "Fraction of reads.", float]]

    def operation_settings(self) -> dict:
        """The mix and its read ratio."""
        if not 0 <= self["read-ratio"] <= 1:
            raise usage.UsageError("--read-ratio must be within [0, 1]")
        return {**super().operation_settings(), "operation": Operation.MIXED, "read_ratio": self["read-ratio"]}


class WatchOptions(_CommonOptions):
    """``watch``: N watchers on the key prefix, writers putting under it;
    events/s delivered and the delivery latency."""

    synopsis = "--api v3 --endpoints URL [--watchers N] [options]"
    optParameters = _common_parameters(clients=1) + [
        ["watchers", None, 64, "Watch streams (one connection each) on the key prefix.", int]
    ]

    def check_api(self) -> None:
        """Watches need the v3 API."""
        if self["watchers"] < 1:
            raise usage.UsageError("--watchers must be at least 1")
        super().check_api()
        WatchRun(None, self.config, self["watchers"])


class WatchMemoryOptions(_CommonOptions):
    """``watch-memory``: open N idle watchers (one key each) and report the
    servers' RSS growth per watcher (needs ``--pid``)."""

    synopsis = "--api v3 --endpoints URL --pid PID [--watchers N] [--settle S] [options]"
    optParameters = _common_parameters(clients=1) + [
        ["watchers", None, 1000, "Idle watch streams (one connection each, one key each).", int],
        ["settle", None, 2.0, "Seconds to wait after the last watch is created before reading RSS.", float],
    ]

    def check_api(self) -> None:
        """Watches need the v3 API; memory needs the server processes."""
        if self["watchers"] < 1:
            raise usage.UsageError("--watchers must be at least 1")
        if self["settle"] < 0:
            raise usage.UsageError("--settle must not be negative")
        try:
            IdleWatchers(None, self.config, self["watchers"], tuple(self["pids"]))
        except ValueError as e:
            raise usage.UsageError(str(e)) from None


class LeaseKeepaliveOptions(_CommonOptions):
    """``lease-keepalive``: grant leases, then refresh them in a closed loop."""

    synopsis = "--api v3 --endpoints URL [--leases N] [options]"
    operation = Operation.KEEPALIVE
    optParameters = _common_parameters() + [
        ["leases", None, None, "Leases to grant and refresh (default: one per client).", int],
        ["ttl", None, 60, "TTL of the granted leases, in seconds.", int],
    ]

    def operation_settings(self) -> dict:
        """The lease TTL."""
        return {**super().operation_settings(), "lease_ttl": self["ttl"]}

    def check_api(self) -> None:
        """Leases need the v3 API."""
        if self.config.api == SEED:
            require_leases(self.config)
        super().check_api()
        if self["leases"] is not None and self["leases"] < 1:
            raise usage.UsageError("--leases must be at least 1")


class BenchOptions(usage.Options):
    """Command line of ``metastore-bench``: one subcommand and its options."""

    synopsis = "metastore-bench put|range|txn-mixed|watch|watch-memory|lease-keepalive --endpoints URL [options]"
    longdesc = (
        "Drive closed-loop keep-alive HTTP/1.1 clients against MetaStore (--api seed) or etcd's JSON "
        "gateway (--api v3) and print requests/s, p50/p90/p99/p99.9/max latency, errors by kind and a "
        "latency histogram (or --json).  With --pid, the server processes' CPU ms per 1,000 requests "
        "and RSS.  Exits 1 if no request succeeded.  Run a subcommand with --help for its options."
    )
    subCommands = [
        ["put", None, PutOptions, "Write keys."],
        ["range", None, RangeOptions, "Read keys (--consistency l|s)."],
        ["txn-mixed", None, TxnMixedOptions, "Mixed writes and reads (--read-ratio)."],
        ["watch", None, WatchOptions, "Watch fan-out: events/s and delivery latency."],
        ["watch-memory", None, WatchMemoryOptions, "RSS per idle watcher (with --pid)."],
        ["lease-keepalive", None, LeaseKeepaliveOptions, "Lease keepalives."],
    ]

    def postOptions(self) -> None:
        """A subcommand is required."""
        if self.subCommand is None:
            raise usage.UsageError("name a subcommand: " + ", ".join(c[0] for c in self.subCommands))

    @property
    def config(self) -> BenchConfig:
        """The subcommand's configuration."""
        return self.subOptions.config


async def _measured(reactor, run: LoadRun, out: TextIO):
    """Start ``run`` (with a progress bar on a terminal) and await its result."""
    finished = run.start()
    progress = ProgressBar(reactor, run, out) if out.isatty() else None
    if progress is not None:
        progress.start()
    try:
        return await finished
    finally:
        if progress is not None:
            progress.stop()


async def run_command(reactor, options: BenchOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the parsed command, print the report; returns the exit status
    (1 if no measured request succeeded)."""
    sub = options.subOptions
    config = sub.config
    as_json = bool(sub["json"])
    if sub["target-leader"]:
        config = replace(config, urls=(await find_leader(config.api, config.urls),))
        print(f"leader: {config.urls[0]}", file=err)
    servers, client = CostMeter(tuple(sub["pids"])), CostMeter((os.getpid(),))
    hooks = {
        "on_measure_start": lambda: (servers.start(), client.start()),
        "on_measure_end": lambda: (servers.stop(), client.stop()),
    }
    if options.subCommand == "watch":
        watched = await WatchRun(reactor, config, sub["watchers"]).run(**hooks)
        requests = watched.puts.overall.requests
        costs = (servers.costs(requests), next(iter(client.costs(requests)), None))
        print(json.dumps(watch_result_as_json(config, sub["watchers"], watched, *costs), indent=2) if as_json
              else format_watch_report(config, sub["watchers"], watched, *costs), file=out)
        return 1 if watched.delivered == 0 else 0
    if options.subCommand == "watch-memory":
        idle = await IdleWatchers(reactor, config, sub["watchers"], tuple(sub["pids"]), sub["settle"]).run()
        print(json.dumps(idle_watch_result_as_json(idle), indent=2) if as_json else format_idle_watch_report(idle),
              file=out)
        return 1 if idle.created == 0 else 0
    if options.subCommand == "lease-keepalive":
        lease_ids, granted = await grant_leases(reactor, config, sub["leases"] or config.clients)
        print(f"granted {len(lease_ids)} leases in {granted.elapsed:.2f}s {granted.overall.outcomes}", file=err)
        if not lease_ids:
            return 1
        run = keepalive_run(reactor, config, lease_ids, **hooks)
    else:
        if config.operation.reads and config.populate:
            populated = await populate_keys(reactor, config)
            failed = populated.overall.requests - populated.overall.succeeded
            print(
                f"populated {populated.overall.succeeded}/{config.keys} keys in {populated.elapsed:.2f}s"
                + (f" ({failed} failed: {populated.overall.outcomes})" if failed else ""),
                file=err,
            )
        run = benchmark_run(reactor, config, **hooks)
    result = await _measured(reactor, run, out)
    costs = servers.costs(result.overall.requests)
    client_cost = next(iter(client.costs(result.overall.requests)), None)
    if as_json:
        print(json.dumps(result_as_json(config, result, costs, client_cost), indent=2), file=out)
    else:
        print(format_report(config, result, costs, client_cost), file=out)
    return 1 if result.all_failed else 0


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``metastore-bench``; exits with its status."""
    options = BenchOptions()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else list(argv))
    except usage.UsageError as e:
        print(f"{options.synopsis}\n{e}\nRun with --help for all options.", file=sys.stderr)
        sys.exit(2)

    async def run(reactor) -> None:
        status = await run_command(reactor, options)
        if status:
            raise SystemExit(status)

    react(run)
