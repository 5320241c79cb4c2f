"""The watch benchmark: event fan-out to many watchers, and its latency.

``watchers`` streams (one connection each, ``POST /v3/watch``) watch one key
prefix; closed-loop writers PUT keys under it.  Every PUT's value carries
the moment it was sent (this process's monotonic clock, so writer and
watcher read the same clock), so each delivered event gives a delivery
latency.  The result: events delivered per second over all watchers, the
latency percentiles, and how many of the expected ``puts × watchers``
events never arrived.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, replace
from typing import Callable

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater

from metastore.bench.apis import V3, UnsupportedRequest, V3Requests
from metastore.bench.load import BenchConfig, MonotonicClock, Operation, benchmark_run
from metastore.bench.stats import DELIVERED, WATCH_EVENT, BenchResult, LatencySummary, RunTally
from metastore.bench.wire import MalformedResponse, StreamingResponseParser

WATCH_NOT_CREATED = "watch-not-created"
WATCH_ENDED = "watch-ended"
WATCH_LOST = "watch-lost"
BAD_EVENT = "bad-event"


class TimestampValues:
    """PUT values that hold the moment they are made, space-padded to ``size``."""

    random = True  # never the same bytes twice: V3Requests must not cache one

    def __init__(self, size: int, now: MonotonicClock) -> None:
        self._size = size
        self._now = now
        self.value = b""

    def next(self) -> bytes:
        """A value holding ``now()`` as decimal text."""
        return (b"%.6f" % self._now()).ljust(self._size)


def prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with ``prefix`` (non-empty,
    not all 0xff bytes)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise ValueError("a prefix of only 0xff bytes has no range end")
    return stripped[:-1] + bytes([stripped[-1] + 1])


class WatchStream(Protocol):
    """One watch: sends its create request, then turns each newline-framed
    JSON message of the chunked answer into delivered events."""

    def __init__(self, run, request: bytes) -> None:
        self._run = run
        self._request = request
        self._parser = StreamingResponseParser(self._head, self._body, self._end)
        self._buffer = b""
        self.created: Deferred[bool] = Deferred()
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        """Ask for the watch."""
        self._run.streams.add(self)
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        """Parse the answer as it streams in."""
        try:
            self._parser.feed(data)
        except MalformedResponse:
            self._run.tally.record_error(WATCH_EVENT, BAD_EVENT)
            self.transport.abortConnection()

    def connectionLost(self, reason=None) -> None:
        """A watch that ends before the run stops is an error."""
        self._run.streams.discard(self)
        if not self._run.stopping:
            self._run.tally.record_error(WATCH_EVENT, WATCH_LOST)
        if not self.created.called:
            self.created.callback(False)
        self.closed.callback(None)

    def _head(self, status: int) -> None:
        if status != 200:
            self._run.tally.record_error(WATCH_EVENT, f"watch-status-{status}")

    def _end(self) -> None:
        if not self._run.stopping:
            self._run.tally.record_error(WATCH_EVENT, WATCH_ENDED)

    def _body(self, data: bytes) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            if line.strip():
                self._message(line)

    def _message(self, line: bytes) -> None:
        try:
            result = json.loads(line)["result"]
            if result.get("created"):
                if not self.created.called:
                    self.created.callback(True)
                return
            now = self._run.now()
            for event in result.get("events", ()):
                sent = float(base64.b64decode(event["kv"]["value"]))
                self._run.delivered(now - sent)
        except (ValueError, KeyError, TypeError):
            self._run.tally.record_error(WATCH_EVENT, BAD_EVENT)


@dataclass(frozen=True, slots=True)
class WatchResult:
    """What a watch benchmark measured.

    ``puts`` is the writers' own result; ``elapsed`` runs from the first
    PUT to the last delivery (or the end of the wait for stragglers);
    ``expected`` is successful PUTs × watchers that were created.
    """

    watchers: int
    watchers_created: int
    puts: BenchResult
    delivered: int
    expected: int
    elapsed: float
    latency: LatencySummary | None
    outcomes: dict[str, int]

    @property
    def events_per_second(self) -> float:
        """Events delivered per second, over all watchers."""
        return self.delivered / self.elapsed if self.elapsed > 0 else 0.0


async def open_watch_streams(owner, config: BenchConfig, count: int,
                             ranges: Callable[[int], tuple[bytes, bytes]]) -> tuple[list[WatchStream], int]:
    """Open ``count`` watch streams, one connection each, round-robin over
    the targets, watch ``i`` on ``ranges(i)`` (key, range_end); wait until
    each is confirmed (or ``request_timeout`` passes).  ``owner`` is what
    the streams report to (a ``WatchRun`` or alike: ``reactor``,
    ``streams``, ``tally``, ``stopping``, ``now()``, ``delivered()``).  Returns the
    connected streams and how many were confirmed created; failures are
    tallied on ``owner``."""
    streams = []
    for i in range(count):
        target = config.targets[i % len(config.targets)]
        key, range_end = ranges(i)
        request = V3Requests(target, config.key_prefix, TimestampValues(0, owner.now)).watch_request(key, range_end)
        endpoint_type = TCP6ClientEndpoint if ":" in target.host else TCP4ClientEndpoint
        endpoint = endpoint_type(owner.reactor, target.host, target.port, timeout=config.request_timeout)
        streams.append(connectProtocol(endpoint, WatchStream(owner, request)))
    connected = [s for ok, s in await DeferredList(streams, consumeErrors=True) if ok]
    for _ in range(len(streams) - len(connected)):
        owner.tally.record_error(WATCH_EVENT, "connect-failed")
    for stream in connected:  # a watch that is never confirmed must not hang the run
        stream.created.addTimeout(config.request_timeout, owner.reactor)
    created_flags = await DeferredList([s.created for s in connected], consumeErrors=True)
    created = sum(1 for fired, confirmed in created_flags if fired and confirmed)
    for _ in range(len(connected) - created):
        owner.tally.record_error(WATCH_EVENT, WATCH_NOT_CREATED)
    return connected, created


class WatchRun:
    """Opens the watchers, runs the writers, waits for the fan-out to drain."""

    def __init__(self, reactor, config: BenchConfig, watchers: int, now: MonotonicClock = time.perf_counter,
                 drain_timeout: float = 5.0) -> None:
        if config.api != V3:
            raise UnsupportedRequest(f"the {config.api} API has no watch: use --api v3")
        self.reactor = reactor
        self.now = now
        self.stopping = False
        self.streams: set[WatchStream] = set()
        self.tally = RunTally()
        self._config = config
        self._watchers = watchers
        self._drain_timeout = drain_timeout
        self._delivered = 0
        self._last_delivery = 0.0
        self._measuring = False
        self._measure_start = 0.0

    def delivered(self, latency: float) -> None:
        """Count one event that reached its watcher (once writes are measured)."""
        if self._measuring:
            self._delivered += 1
            self._last_delivery = self.now()
            self.tally.record_success(WATCH_EVENT, DELIVERED, latency)

    async def run(self, **hooks) -> WatchResult:
        """Open every watch, write, wait for delivery, close; the result.

        ``hooks`` (``on_measure_start``, ``on_measure_end``) are called when
        the writers' measured phase begins and ends."""
        config = self._config
        prefix = config.key_prefix.encode()
        connected, created = await open_watch_streams(self, config, self._watchers,
                                                      lambda i: (prefix, prefix_end(prefix)))

        values = TimestampValues(max(config.value_size, 20), self.now)
        builders = {t: V3Requests(t, config.key_prefix, values, config.key_size) for t in config.targets}
        writers = benchmark_run(self.reactor, replace(config, operation=Operation.PUT), self.now,
                                builders=builders, on_measure_end=hooks.get("on_measure_end"),
                                on_measure_start=lambda: self._start_measuring(hooks.get("on_measure_start")))
        puts = await writers.start()
        expected = puts.overall.succeeded * created
        deadline = self.now() + self._drain_timeout
        while self._delivered < expected and self.now() < deadline:
            await deferLater(self.reactor, 0.01, lambda: None)
        self.stopping = True
        for stream in list(self.streams):
            stream.transport.abortConnection()
        await DeferredList([s.closed for s in connected])
        elapsed = max(self._last_delivery, self._measure_start + puts.elapsed) - self._measure_start
        summary = self.tally.summarise(elapsed).overall
        return WatchResult(
            watchers=self._watchers,
            watchers_created=created,
            puts=puts,
            delivered=self._delivered,
            expected=expected,
            elapsed=elapsed,
            latency=summary.latency,
            outcomes=summary.outcomes,
        )

    def _start_measuring(self, then=None) -> None:
        if then is not None:
            then()
        self._measuring = True
        self._measure_start = self.now()

