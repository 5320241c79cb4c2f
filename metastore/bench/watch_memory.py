"""The idle-watcher memory benchmark: what one open, quiet watch costs the servers.

The resident memory of the server processes (``--pid``) is read, then
``watchers`` watch streams are opened (``POST /v3/watch``, one connection
each, each on its own key under the prefix, round-robin over the
endpoints); once every one is confirmed and ``settle`` seconds have
passed, the memory is read again and the streams are closed.  The growth
over all processes, divided by the watchers created, is the memory per idle
watcher: its connection and its watch together, as a client holding a
watch costs them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from twisted.internet.task import deferLater

from metastore.bench.apis import V3, UnsupportedRequest, key_bytes
from metastore.bench.load import BenchConfig, MonotonicClock
from metastore.bench.proc import sample
from metastore.bench.stats import RunTally
from metastore.bench.watch import open_watch_streams


@dataclass(frozen=True, slots=True)
class IdleWatchResult:
    """RSS (bytes) of each server process before and after the watchers opened."""

    watchers: int
    created: int
    rss_before: dict[int, int]
    rss_after: dict[int, int]
    outcomes: dict[str, int]

    @property
    def growth_bytes(self) -> int:
        """RSS growth over every process sampled both times."""
        return sum(self.rss_after[p] - self.rss_before[p] for p in self.rss_before if p in self.rss_after)

    @property
    def bytes_per_watcher(self) -> float:
        """RSS growth per created watcher (0 when none was created)."""
        return self.growth_bytes / self.created if self.created else 0.0


class IdleWatchers:
    """Opens idle watchers and measures the servers' RSS around them."""

    def __init__(self, reactor, config: BenchConfig, watchers: int, pids: tuple[int, ...], settle: float = 2.0,
                 now: MonotonicClock = time.perf_counter) -> None:
        if config.api != V3:
            raise UnsupportedRequest(f"the {config.api} API has no watch: use --api v3")
        if not pids:
            raise ValueError("give the server processes to measure with --pid")
        self.reactor = reactor
        self.now = now
        self.stopping = False
        self.streams: set = set()
        self.tally = RunTally()
        self._config = config
        self._watchers = watchers
        self._pids = pids
        self._settle = settle

    def delivered(self, latency: float) -> None:
        """Idle watchers get no events; one that does is not idle, and is ignored."""

    def _rss(self) -> dict[int, int]:
        samples = {}
        for pid in self._pids:
            try:
                samples[pid] = sample(pid).rss_bytes
            except OSError:
                pass
        return samples

    async def run(self) -> IdleWatchResult:
        """Measure, open, settle, measure, close; the result."""
        config = self._config
        prefix = config.key_prefix.encode()
        before = self._rss()
        connected, created = await open_watch_streams(
            self, config, self._watchers, lambda i: (key_bytes(prefix + b"idle/", i, config.key_size), b""))
        await deferLater(self.reactor, self._settle, lambda: None)
        after = self._rss()
        self.stopping = True
        for stream in list(self.streams):
            stream.transport.abortConnection()
        for stream in connected:
            await stream.closed
        summary = self.tally.summarise(1.0).overall
        return IdleWatchResult(self._watchers, created, before, after, summary.outcomes)


def format_idle_watch_report(result: IdleWatchResult) -> str:
    """The result as text: per process and per watcher."""
    lines = [f"idle watchers: {result.created}/{result.watchers} created"]
    for pid in sorted(result.rss_before):
        if pid in result.rss_after:
            before, after = result.rss_before[pid], result.rss_after[pid]
            lines.append(f"  pid {pid}: RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB "
                         f"({(after - before) / 2**20:+.1f} MiB)")
    lines.append(f"RSS growth   {result.growth_bytes / 2**20:.1f} MiB in all")
    lines.append(f"per watcher  {result.bytes_per_watcher / 1024:.1f} KiB")
    if result.outcomes:
        lines.append("watch outcomes " + "  ".join(f"{k}: {v}" for k, v in result.outcomes.items()))
    return "\n".join(lines)


def idle_watch_result_as_json(result: IdleWatchResult) -> dict:
    """The result as JSON-ready data."""
    return {
        "watchers": result.watchers,
        "watchers_created": result.created,
        "rss_before_bytes": {str(p): v for p, v in result.rss_before.items()},
        "rss_after_bytes": {str(p): v for p, v in result.rss_after.items()},
        "rss_growth_bytes": result.growth_bytes,
        "bytes_per_watcher": round(result.bytes_per_watcher),
        "watch_outcomes": result.outcomes,
    }
