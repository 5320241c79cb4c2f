"""How results are shown: the text report, ``--json``, and the progress bar."""

from __future__ import annotations

from typing import TextIO

from twisted.internet.task import LoopingCall

from metastore.bench.load import BenchConfig, LoadRun, Operation
from metastore.bench.proc import ServerCost
from metastore.bench.stats import BenchResult, LatencySummary, OpSummary

HISTOGRAM_WIDTH = 40
"""Characters of the longest histogram bar."""


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def latency_as_json(latency: LatencySummary | None) -> dict | None:
    """Latency percentiles and histogram in milliseconds, or None."""
    if latency is None:
        return None
    return {
        "p50": _ms(latency.p50),
        "p90": _ms(latency.p90),
        "p99": _ms(latency.p99),
        "p99.9": _ms(latency.p999),
        "max": _ms(latency.max),
        "min": _ms(latency.min),
        "mean": _ms(latency.mean),
        "histogram": [{"le_ms": _ms(b.upper), "count": b.count} for b in latency.histogram],
    }


def costs_as_json(costs: list[ServerCost]) -> list[dict]:
    """Server CPU and RSS per process."""
    return [
        {
            "pid": c.pid,
            "cpu_ms": c.cpu_ms,
            "cpu_ms_per_1000_requests": c.cpu_ms_per_1000_requests,
            "rss_before_mb": round(c.rss_before_bytes / 2**20, 1),
            "rss_after_mb": round(c.rss_after_bytes / 2**20, 1),
        }
        for c in costs
    ]


def config_as_json(config: BenchConfig) -> dict:
    """The settings that define a run."""
    return {
        "api": config.api,
        "urls": list(config.urls),
        "clients": config.clients,
        "conns": config.conns or config.clients,
        "op": config.operation.value,
        "read_ratio": config.read_ratio if config.operation is Operation.MIXED else None,
        "value_size": config.value_size,
        "key_size": config.key_size,
        "keys": config.keys,
        "key_prefix": config.key_prefix,
        "sequential_keys": config.sequential_keys,
        "duration": config.duration if config.requests is None else None,
        "requests": config.requests,
        "warmup": config.warmup,
        "rate": config.rate,
    }


def result_as_json(
    config: BenchConfig, result: BenchResult, costs: list[ServerCost] = (), client: ServerCost | None = None
) -> dict:
    """``result`` as plain JSON-ready data, latencies in milliseconds;
    ``costs`` are the servers', ``client`` the load generator's own."""

    def summary(op_summary: OpSummary) -> dict:
        return {
            "requests": op_summary.requests,
            "succeeded": op_summary.succeeded,
            "requests_per_second": round(op_summary.requests / result.elapsed, 1) if result.elapsed else 0.0,
            "latency_ms": latency_as_json(op_summary.latency),
            "outcomes": op_summary.outcomes,
        }

    return {
        "config": config_as_json(config),
        "elapsed_seconds": round(result.elapsed, 6),
        "succeeded_per_second": round(result.succeeded_per_second, 1),
        **summary(result.overall),
        "errors": result.errors(),
        "by_op": {op: summary(s) for op, s in result.by_op.items()},
        "servers": costs_as_json(list(costs)),
        "client": costs_as_json([client])[0] if client is not None else None,
    }


def format_histogram(latency: LatencySummary) -> list[str]:
    """The histogram as text lines: upper bound in ms, count, a bar."""
    most = max(b.count for b in latency.histogram)
    return [
        f"  {b.upper * 1000:10.3f} ms [{b.count:>8}] |" + "∎" * round(b.count / most * HISTOGRAM_WIDTH)
        for b in latency.histogram
    ]


def format_latency(label: str, latency: LatencySummary | None) -> list[str]:
    """One line of percentiles (and the histogram under it), or a note."""
    if latency is None:
        return [f"latency{label}  no successful responses"]
    return [
        f"latency{label}  p50 {latency.p50 * 1000:.3f} ms  p90 {latency.p90 * 1000:.3f} ms  "
        f"p99 {latency.p99 * 1000:.3f} ms  p99.9 {latency.p999 * 1000:.3f} ms  max {latency.max * 1000:.3f} ms"
    ]


def format_costs(costs: list[ServerCost]) -> list[str]:
    """One line per server process."""
    return [
        f"server pid {c.pid}  cpu {c.cpu_ms:.0f} ms"
        + (f" = {c.cpu_ms_per_1000_requests:.1f} ms per 1,000 requests" if c.cpu_ms_per_1000_requests else "")
        + f"  rss {c.rss_before_bytes / 2**20:.1f} -> {c.rss_after_bytes / 2**20:.1f} MB"
        for c in costs
    ]


def format_report(
    config: BenchConfig, result: BenchResult, costs: list[ServerCost] = (), client: ServerCost | None = None
) -> str:
    """``result`` as the human-readable text the command prints."""
    limit = f"{config.requests} requests" if config.requests is not None else f"{config.duration:g}s"
    op = config.operation.value
    if config.operation is Operation.MIXED:
        op += f" (read-ratio {config.read_ratio:g})"
    lines = [
        f"{op} via {config.api} API, {config.clients} clients on {config.conns or config.clients} connections, "
        f"{config.value_size}-byte values, {config.keys} keys, {limit}, warmup {config.warmup:g}s"
        + (f", at most {config.rate:g} requests/s" if config.rate is not None else ""),
        f"endpoints {' '.join(config.urls)}",
        f"requests     {result.overall.requests} in {result.elapsed:.3f}s",
        f"throughput   {result.requests_per_second:.1f} requests/s "
        f"({result.succeeded_per_second:.1f} succeeded/s)",
    ]
    sections = [("", result.overall)]
    if len(result.by_op) > 1:
        sections += [(f" [{name}]", s) for name, s in result.by_op.items()]
    for label, summary in sections:
        lines += format_latency(label, summary.latency)
        outcomes = "  ".join(f"{k}: {v}" for k, v in summary.outcomes.items()) or "none"
        lines.append(f"outcomes{label} {outcomes}")
    errors = result.errors()
    lines.append("errors       " + ("  ".join(f"{k}: {v}" for k, v in errors.items()) or "none"))
    lines += format_costs(list(costs))
    if client is not None and client.cpu_ms_per_1000_requests is not None:
        lines.append(f"client       cpu {client.cpu_ms_per_1000_requests:.1f} ms per 1,000 requests "
                     "(this load generator)")
    if result.overall.latency is not None:
        lines.append("response time histogram:")
        lines += format_histogram(result.overall.latency)
    return "\n".join(lines)


class ProgressBar:
    """Redraws one line on a terminal with a run's progress, five times a second."""

    def __init__(self, reactor, run: LoadRun, out: TextIO, width: int = 30) -> None:
        self._run = run
        self._out = out
        self._width = width
        self._loop = LoopingCall(self._draw)
        self._loop.clock = reactor

    def start(self) -> None:
        """Start drawing."""
        self._loop.start(0.2, now=True)

    def stop(self) -> None:
        """Stop and clear the line."""
        if self._loop.running:
            self._loop.stop()
        self._out.write("\r" + " " * (self._width + 50) + "\r")
        self._out.flush()

    def _draw(self) -> None:
        completed, seconds, fraction = self._run.progress()
        filled = round(fraction * self._width)
        rate = completed / seconds if seconds > 0 else 0.0
        self._out.write(f"\r[{'#' * filled}{'.' * (self._width - filled)}] {fraction * 100:5.1f}%  "
                        f"{completed} requests  {rate:,.0f}/s")
        self._out.flush()


def watch_result_as_json(
    config: BenchConfig, watchers: int, result, costs: list[ServerCost] = (), client: ServerCost | None = None
) -> dict:
    """A :class:`~metastore.bench.watch.WatchResult` as JSON-ready data
    (the servers' and client's costs are over the writers' requests)."""
    return {
        "config": {**config_as_json(config), "op": "watch", "watchers": watchers},
        "watchers_created": result.watchers_created,
        "events_delivered": result.delivered,
        "events_expected": result.expected,
        "events_missing": result.expected - result.delivered,
        "elapsed_seconds": round(result.elapsed, 6),
        "events_per_second": round(result.events_per_second, 1),
        "delivery_latency_ms": latency_as_json(result.latency),
        "watch_outcomes": result.outcomes,
        "puts": result_as_json(config, result.puts, costs, client),
    }


def format_watch_report(
    config: BenchConfig, watchers: int, result, costs: list[ServerCost] = (), client: ServerCost | None = None
) -> str:
    """A watch result as text: fan-out rate and delivery latency, then the writers' report."""
    lines = [
        f"watch via {config.api} API: {result.watchers_created}/{watchers} watchers created, "
        f"{config.clients} writers",
        f"events       {result.delivered} delivered of {result.expected} expected in {result.elapsed:.3f}s",
        f"fan-out      {result.events_per_second:.1f} events/s delivered",
    ]
    lines += format_latency(" (delivery)", result.latency)
    lines.append("watch outcomes " + ("  ".join(f"{k}: {v}" for k, v in result.outcomes.items()) or "none"))
    if result.latency is not None:
        lines.append("delivery latency histogram:")
        lines += format_histogram(result.latency)
    lines += ["", "writers:", format_report(config, result.puts, costs, client)]
    return "\n".join(lines)
