"""Load generator for MetaStore's REST API: ``python -m metastore.bench``.

It drives ``--clients`` simulated clients, each owning one keep-alive
HTTP/1.1 connection with one request in flight, against one or more member
URLs, and reports requests/s, latency percentiles and a tally of every
status code and connection error.

The HTTP client is a small Protocol over raw TCP rather than treq: the
benchmark shares a 2-core machine with the server, so every microsecond the
client spends per request is taken from the thing being measured.

Only :func:`main` touches the global reactor; everything else takes one.
"""

from __future__ import annotations

import enum
import json
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import count
from typing import Callable, Iterable, Sequence
from urllib.parse import quote, urlsplit

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    connectProtocol,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall, react
from twisted.python import usage
from twisted.python.failure import Failure

MonotonicClock = Callable[[], float]
"""Returns seconds from an arbitrary origin; never goes backwards."""

CONNECT_FAILED = "connect-failed"
CONNECTION_LOST = "connection-lost"
TIMEOUT = "timeout"
PROTOCOL_ERROR = "protocol-error"
ERROR_KINDS = (CONNECT_FAILED, CONNECTION_LOST, TIMEOUT, PROTOCOL_ERROR)
"""Outcomes without an HTTP status; tallied beside the status codes."""

RETRY_DELAY_SECONDS = 0.05
"""Pause before reconnecting after a failure, so a dead server is not spun on."""


# ---------------------------------------------------------------------------
# Response parsing: bytes in, complete responses out, no I/O.


class MalformedResponse(Exception):
    """The server sent bytes that are not a valid HTTP/1.x response."""


@dataclass(frozen=True, slots=True)
class ParsedResponse:
    """One complete HTTP response.

    ``keep_alive`` is False when the server asked to close the connection
    (``Connection: close``, HTTP/1.0, or a body delimited by the close).
    """

    status: int
    body: bytes
    keep_alive: bool


class _Framing(enum.Enum):
    """Where the parser is inside the current response."""

    HEAD = enum.auto()
    LENGTH_BODY = enum.auto()
    CHUNK_SIZE = enum.auto()
    CHUNK_DATA = enum.auto()
    CHUNK_DATA_END = enum.auto()
    CHUNK_TRAILER = enum.auto()
    UNTIL_CLOSE = enum.auto()


_NO_BODY_STATUSES = frozenset({204, 304})


class ResponseParser:
    """Incremental HTTP/1.1 response parser for responses to GET and PUT.

    Feed it bytes as they arrive, split anywhere; it returns each response
    once its last byte is in.  Understands Content-Length, chunked
    transfer-encoding and close-delimited bodies, and skips 1xx responses.
    Raises :class:`MalformedResponse` on anything else, after which the
    parser must be discarded along with its connection.
    """

    def __init__(self, max_line_bytes: int = 8192, max_head_bytes: int = 65536) -> None:
        self._max_line_bytes = max_line_bytes
        self._max_head_bytes = max_head_bytes
        self._buffer = bytearray()
        self._framing = _Framing.HEAD
        self._status = 0
        self._keep_alive = True
        self._remaining = 0
        self._body_parts: list[bytes] = []

    def feed(self, data: bytes) -> list[ParsedResponse]:
        """Consume ``data``; return the responses it completed, in order."""
        self._buffer += data
        completed: list[ParsedResponse] = []
        # Every step either consumes buffered bytes or returns False, so this
        # loop runs at most once per buffered byte, plus once.
        while self._step(completed):
            pass
        return completed

    def connection_lost(self) -> ParsedResponse | None:
        """Report the end of the stream; returns a close-delimited response
        that it completes, or None.  An interrupted response is dropped."""
        if self._framing is _Framing.UNTIL_CLOSE:
            self._body_parts.append(bytes(self._buffer))
            self._buffer.clear()
            return self._finish()
        return None

    def _step(self, completed: list[ParsedResponse]) -> bool:
        framing = self._framing
        buffer = self._buffer
        if framing is _Framing.HEAD:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self._max_head_bytes:
                    raise MalformedResponse("response head too long")
                return False
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            if self._start_response(head):
                completed.append(self._finish())
            return True
        if framing is _Framing.LENGTH_BODY or framing is _Framing.CHUNK_DATA:
            if not buffer:
                return False
            taken = bytes(buffer[: self._remaining])
            del buffer[: len(taken)]
            self._body_parts.append(taken)
            self._remaining -= len(taken)
            if self._remaining == 0:
                if framing is _Framing.CHUNK_DATA:
                    self._framing = _Framing.CHUNK_DATA_END
                else:
                    completed.append(self._finish())
            return True
        if framing is _Framing.CHUNK_DATA_END:
            if len(buffer) < 2:
                return False
            if buffer[:2] != b"\r\n":
                raise MalformedResponse("chunk not followed by CRLF")
            del buffer[:2]
            self._framing = _Framing.CHUNK_SIZE
            return True
        if framing is _Framing.CHUNK_SIZE or framing is _Framing.CHUNK_TRAILER:
            line = self._take_line()
            if line is None:
                return False
            if framing is _Framing.CHUNK_TRAILER:
                if not line:
                    completed.append(self._finish())
                return True
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise MalformedResponse(f"bad chunk size {size_text!r}") from None
            if size < 0:
                raise MalformedResponse(f"bad chunk size {size_text!r}")
            if size == 0:
                self._framing = _Framing.CHUNK_TRAILER
            else:
                self._remaining = size
                self._framing = _Framing.CHUNK_DATA
            return True
        # UNTIL_CLOSE: the body is whatever arrives before the close.
        if buffer:
            self._body_parts.append(bytes(buffer))
            buffer.clear()
        return False

    def _take_line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > self._max_line_bytes:
                raise MalformedResponse("line too long")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _start_response(self, head: bytes) -> bool:
        """Parse a response head and choose the body framing.

        Returns True when the response has no body and is already complete.
        """
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise MalformedResponse(f"bad status line {lines[0][:80]!r}")
        status_text = parts[1]
        if len(status_text) != 3 or not status_text.isdigit():
            raise MalformedResponse(f"bad status code {status_text!r}")
        status = int(status_text)
        content_length: int | None = None
        chunked = False
        connection_tokens: list[bytes] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise MalformedResponse(f"bad header line {line[:80]!r}")
            name = name.strip().lower()
            value = value.strip()
            if name == b"content-length":
                if not value.isdigit():
                    raise MalformedResponse(f"bad Content-Length {value!r}")
                if content_length is not None and content_length != int(value):
                    raise MalformedResponse("conflicting Content-Length headers")
                content_length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif name == b"connection":
                connection_tokens.extend(t.strip().lower() for t in value.split(b","))

        if 100 <= status < 200:
            return False  # interim response: the real one follows
        self._status = status
        self._body_parts = []
        if parts[0] == b"HTTP/1.0":
            self._keep_alive = b"keep-alive" in connection_tokens
        else:
            self._keep_alive = b"close" not in connection_tokens
        if status in _NO_BODY_STATUSES:
            return True
        if chunked:
            self._framing = _Framing.CHUNK_SIZE
            return False
        if content_length is not None:
            if content_length == 0:
                return True
            self._remaining = content_length
            self._framing = _Framing.LENGTH_BODY
            return False
        self._keep_alive = False
        self._framing = _Framing.UNTIL_CLOSE
        return False

    def _finish(self) -> ParsedResponse:
        response = ParsedResponse(
            status=self._status,
            body=b"".join(self._body_parts),
            keep_alive=self._keep_alive,
        )
        self._framing = _Framing.HEAD
        self._body_parts = []
        return response


# ---------------------------------------------------------------------------
# Statistics.


def percentile(sorted_values: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of ``sorted_values`` (ascending, non-empty).

    Returns the smallest value such that at least ``percent`` % of the
    values are less than or equal to it: p50 of [1, 2, 3, 4] is 2, p100 is
    the maximum, p0 the minimum.
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= percent <= 100:
        raise ValueError(f"percent {percent} outside [0, 100]")
    rank = math.ceil(percent / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency percentiles of a set of responses, in seconds."""

    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, latencies: Iterable[float]) -> LatencySummary | None:
        """Summarise ``latencies``; None if there are none."""
        ordered = sorted(latencies)
        if not ordered:
            return None
        return cls(
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            max=ordered[-1],
        )


def is_success(op: str, status: int) -> bool:
    """Whether ``status`` means the server did what ``op`` asked.

    A 404 answers a GET correctly (the key is absent), so it counts.
    """
    return 200 <= status < 300 or (status == 404 and op != PUT)


@dataclass(frozen=True, slots=True)
class OpSummary:
    """Outcome of every request of one kind (or of all kinds) in a run.

    ``outcomes`` maps a status code ("204") or an error kind
    ("connect-failed") to how many requests ended that way; ``latency`` is
    measured over successful responses only (see :func:`is_success`).
    """

    requests: int
    succeeded: int
    outcomes: dict[str, int]
    latency: LatencySummary | None


@dataclass(frozen=True, slots=True)
class BenchResult:
    """What a measured run produced; ``elapsed`` is in seconds."""

    elapsed: float
    overall: OpSummary
    by_op: dict[str, OpSummary]

    @property
    def requests_per_second(self) -> float:
        """Completed requests (any outcome) per second."""
        return self.overall.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def succeeded_per_second(self) -> float:
        """Successful requests per second."""
        return self.overall.succeeded / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def all_failed(self) -> bool:
        """True when not a single request succeeded (including none at all)."""
        return self.overall.succeeded == 0


class RunTally:
    """Mutable record of outcomes and latencies while a run is going."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Counter[str]] = {}
        self.latencies: dict[str, list[float]] = {}

    def record_response(self, op: str, status: int, latency: float) -> None:
        """Count a response; keep its latency if it was a success."""
        self._outcomes_of(op)[str(status)] += 1
        if is_success(op, status):
            self.latencies.setdefault(op, []).append(latency)

    def record_error(self, op: str, kind: str) -> None:
        """Count a request that ended without a response."""
        self._outcomes_of(op)[kind] += 1

    def completed(self) -> int:
        """How many requests have ended, by any outcome."""
        return sum(sum(c.values()) for c in self.outcomes.values())

    def summarise(self, elapsed: float) -> BenchResult:
        """Freeze the tally into a :class:`BenchResult`."""
        by_op = {
            op: self._summarise_ops([op]) for op in sorted(self.outcomes)
        }
        return BenchResult(
            elapsed=elapsed,
            overall=self._summarise_ops(sorted(self.outcomes)),
            by_op=by_op,
        )

    def _summarise_ops(self, ops: list[str]) -> OpSummary:
        outcomes: Counter[str] = Counter()
        latencies: list[float] = []
        for op in ops:
            outcomes.update(self.outcomes[op])
            latencies.extend(self.latencies.get(op, ()))
        return OpSummary(
            requests=sum(outcomes.values()),
            succeeded=len(latencies),
            outcomes=dict(sorted(outcomes.items())),
            latency=LatencySummary.of(latencies),
        )

    def _outcomes_of(self, op: str) -> Counter[str]:
        outcomes = self.outcomes.get(op)
        if outcomes is None:
            outcomes = self.outcomes[op] = Counter()
        return outcomes


# ---------------------------------------------------------------------------
# What to send.

PUT = "PUT"
GET = "GET"
GET_SERIALIZABLE = "GET-serializable"


class Operation(enum.Enum):
    """The ``--op`` choices."""

    PUT = "put"
    GET = "get"
    GET_SERIALIZABLE = "get-serializable"
    MIXED = "mixed"

    @property
    def reads(self) -> bool:
        """Whether this workload reads keys (and so wants them populated)."""
        return self is not Operation.PUT


@dataclass(frozen=True, slots=True)
class Target:
    """One member to send requests to, parsed from a base URL."""

    url: str
    host: str
    port: int
    host_header: bytes
    path_prefix: bytes  # the URL's path without its trailing slash

    @classmethod
    def from_url(cls, url: str) -> Target:
        """Parse ``http://host[:port][/path]``; raises ValueError otherwise."""
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"{url!r}: only http:// URLs are supported")
        if not parts.hostname:
            raise ValueError(f"{url!r}: no host")
        if parts.query or parts.fragment:
            raise ValueError(f"{url!r}: a base URL takes no query or fragment")
        return cls(
            url=url,
            host=parts.hostname,
            port=parts.port or 80,
            host_header=parts.netloc.encode("ascii"),
            path_prefix=parts.path.rstrip("/").encode("ascii"),
        )


class RequestWriter:
    """Builds complete request bytes for one target, from a key index.

    Keys are ``key_prefix`` followed by the index, sent as one
    percent-encoded path segment (so ``bench/7`` is ``/bench%2F7``).
    """

    def __init__(self, target: Target, key_prefix: str, value: bytes, random_values: bool = False) -> None:
        start = target.path_prefix + b"/" + quote(key_prefix, safe="").encode("ascii")
        host = b" HTTP/1.1\r\nHost: " + target.host_header + b"\r\n"
        self._put_start = b"PUT " + start
        self._put_end = (
            host + b"Content-Length: %d\r\n\r\n" % len(value) + value
        )
        self._put_head = host + b"Content-Length: %d\r\n\r\n" % len(value)
        self._value_size = len(value)
        # Distinct, incompressible values: slices of one random buffer at
        # random offsets (cheap per request, never the same twice in a row).
        self._random_pool = os.urandom(len(value) * 256) if random_values else None
        self._get_start = b"GET " + start
        self._get_end = host + b"\r\n"
        self._get_serializable_end = b"?serializable=true" + host + b"\r\n"

    def request(self, op: str, key_index: int) -> bytes:
        """The bytes of an ``op`` request for key number ``key_index``."""
        key = b"%d" % key_index
        if op == PUT:
            if self._random_pool is not None:
                offset = random.randrange(len(self._random_pool) - self._value_size)
                value = self._random_pool[offset:offset + self._value_size]
                return b"".join((self._put_start, key, self._put_head, value))
            return b"".join((self._put_start, key, self._put_end))
        if op == GET:
            return b"".join((self._get_start, key, self._get_end))
        return b"".join((self._get_start, key, self._get_serializable_end))


class Workload:
    """Chooses each request's kind and key.

    ``next_key`` yields key indexes; ``read_ratio`` is only used by
    :attr:`Operation.MIXED`, whose reads are linearizable GETs.
    """

    def __init__(
        self,
        operation: Operation,
        next_key: Callable[[], int],
        rng: random.Random,
        read_ratio: float = 0.0,
    ) -> None:
        self._operation = operation
        self._next_key = next_key
        self._rng = rng
        self._read_ratio = read_ratio
        self._fixed_op = {
            Operation.PUT: PUT,
            Operation.GET: GET,
            Operation.GET_SERIALIZABLE: GET_SERIALIZABLE,
        }.get(operation)

    def next_request(self) -> tuple[str, int]:
        """The kind (PUT, GET, GET-serializable) and key index to send next."""
        op = self._fixed_op
        if op is None:
            op = GET if self._rng.random() < self._read_ratio else PUT
        return op, self._next_key()


# ---------------------------------------------------------------------------
# Connections and simulated clients.


class BenchConnection(Protocol):
    """One keep-alive HTTP connection carrying one client's requests.

    It frames responses and hands them, and its loss, to its owning
    :class:`SimulatedClient`; it holds no benchmark state of its own.
    """

    def __init__(self, owner: SimulatedClient) -> None:
        self._owner = owner
        self._parser = ResponseParser()
        self.closed: Deferred[None] = Deferred()
        """Fires once the connection has been lost, for whatever reason."""

    def connectionMade(self) -> None:
        """Register with the run so stopping it can close this connection."""
        self._owner.run.open_connections.add(self)

    def dataReceived(self, data: bytes) -> None:
        """Parse ``data`` and pass on each complete response."""
        try:
            responses = self._parser.feed(data)
        except MalformedResponse:
            self._owner.protocol_error(self)
            return
        for response in responses:
            self._owner.response_received(self, response)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        """Tell the owner, passing any close-delimited final response."""
        self._owner.run.open_connections.discard(self)
        final = self._parser.connection_lost()
        self._owner.connection_lost(self, final)
        self.closed.callback(None)

    def send(self, data: bytes) -> None:
        """Write one request."""
        self.transport.write(data)

    def abort(self) -> None:
        """Drop the connection now, without waiting to flush."""
        self.transport.abortConnection()


@dataclass(slots=True)
class _InFlight:
    """A sent request awaiting its response, and the tally it counts in."""

    op: str
    started: float
    tally: RunTally


class SimulatedClient:
    """One user of the store: sends a request, waits for it, sends the next.

    It keeps a single connection open, reconnects when the server closes it
    or it fails, and reports every outcome to its :class:`LoadRun`.
    """

    def __init__(self, run: LoadRun, target: Target, writer: RequestWriter) -> None:
        self.run = run
        self._target = target
        self._writer = writer
        self._connection: BenchConnection | None = None
        self._connecting: Deferred[BenchConnection] | None = None
        self._retry_call = None
        self._in_flight: _InFlight | None = None
        self._pending: tuple[str, int, RunTally] | None = None

    def start(self) -> None:
        """Begin sending requests."""
        self._send_next()

    def stop(self) -> None:
        """Abandon any request in flight and close the connection."""
        self._in_flight = None
        self._pending = None
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        if self._connecting is not None:
            self._connecting.cancel()
        if self._connection is not None:
            self._connection.abort()
            self._connection = None

    def check_timeout(self, now: float, timeout: float) -> None:
        """Fail the request in flight if it started more than ``timeout`` ago."""
        in_flight = self._in_flight
        if in_flight is not None and now - in_flight.started > timeout:
            self._fail(in_flight, TIMEOUT)

    def response_received(self, connection: BenchConnection, response: ParsedResponse) -> None:
        """Record a response and send the next request."""
        if connection is not self._connection:
            return
        in_flight = self._in_flight
        if in_flight is None:
            # A response nobody asked for: the stream is out of step.
            self.protocol_error(connection)
            return
        self._in_flight = None
        self.run.response_received(in_flight, response.status, self.run.now() - in_flight.started)
        if self.run.stopping:
            return  # stop() has already closed the connection
        if not response.keep_alive:
            self._connection = None
            connection.abort()
        self._send_next()

    def connection_lost(self, connection: BenchConnection, final: ParsedResponse | None) -> None:
        """Handle the server closing, with a close-delimited response or not."""
        if connection is not self._connection:
            return
        self._connection = None
        in_flight = self._in_flight
        if in_flight is None:
            self._send_next()
        elif final is not None:
            self._in_flight = None
            self.run.response_received(in_flight, final.status, self.run.now() - in_flight.started)
            self._send_next()
        else:
            self._fail(in_flight, CONNECTION_LOST)

    def protocol_error(self, connection: BenchConnection) -> None:
        """Give up on a connection that sent a malformed response."""
        if connection is not self._connection:
            return
        if self._in_flight is not None:
            self._fail(self._in_flight, PROTOCOL_ERROR)
        else:
            self._connection = None
            connection.abort()
            self._retry_later()

    def _fail(self, in_flight: _InFlight, kind: str) -> None:
        self._in_flight = None
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.abort()
        self.run.request_failed(in_flight, kind)
        self._retry_later()

    def _retry_later(self) -> None:
        if not self.run.stopping:
            self._retry_call = self.run.reactor.callLater(RETRY_DELAY_SECONDS, self._send_next)

    def _send_next(self) -> None:
        self._retry_call = None
        planned = self.run.take_request()
        if planned is None:
            return
        if self._connection is None:
            self._pending = planned
            self._connect()
            return
        self._send(*planned)

    def _send(self, op: str, key_index: int, tally: RunTally) -> None:
        assert self._connection is not None and self._in_flight is None
        self._in_flight = _InFlight(op, self.run.now(), tally)
        self._connection.send(self._writer.request(op, key_index))

    def _connect(self) -> None:
        connecting = connectProtocol(self.run.endpoint_for(self._target), BenchConnection(self))
        self._connecting = connecting
        connecting.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, connection: BenchConnection) -> None:
        self._connecting = None
        pending, self._pending = self._pending, None
        if pending is None:  # stopped while connecting
            connection.abort()
            return
        self._connection = connection
        self._send(*pending)

    def _connect_failed(self, reason: Failure) -> None:
        self._connecting = None
        pending, self._pending = self._pending, None
        if pending is None:  # cancelled by stop()
            return
        op, _, tally = pending
        self.run.request_failed(_InFlight(op, self.run.now(), tally), CONNECT_FAILED)
        self._retry_later()


# ---------------------------------------------------------------------------
# A run: many clients, one budget, one tally.


class LoadRun:
    """Runs ``clients`` simulated clients until a duration or request budget.

    Exactly one of ``duration`` (seconds) and ``requests`` (total count) is
    given.  During the first ``warmup`` seconds requests are sent but not
    counted.  Measured requests still in flight when a duration ends are
    abandoned, not counted.  A request unanswered after ``request_timeout``
    seconds counts as a timeout (checked by one periodic sweep rather than a
    timer per request, so it fires within 1.5 times that), so a run always
    ends.
    """

    def __init__(
        self,
        reactor,
        targets: Sequence[Target],
        clients: int,
        workload: Workload,
        key_prefix: str,
        value: bytes,
        *,
        duration: float | None = None,
        requests: int | None = None,
        warmup: float = 0.0,
        request_timeout: float = 10.0,
        now: MonotonicClock = time.perf_counter,
        random_values: bool = False,
    ) -> None:
        if (duration is None) == (requests is None):
            raise ValueError("give exactly one of duration and requests")
        if not targets:
            raise ValueError("no targets")
        self.reactor = reactor
        self.now = now
        self.stopping = False
        self.open_connections: set[BenchConnection] = set()
        self._workload = workload
        self._duration = duration
        self._requests = requests
        self._remaining_budget = requests
        self._warmup = warmup
        self._request_timeout = request_timeout
        self._warming_up = warmup > 0
        self._warmup_tally = RunTally()
        self._tally = RunTally()
        self._measured_completed = 0
        self._measure_start = 0.0
        self._measure_end: float | None = None
        self._timers: list = []
        self._timeout_sweep: LoopingCall | None = None
        self._endpoints: dict[Target, object] = {}
        self._finished: Deferred[BenchResult] = Deferred()
        writers = {t: RequestWriter(t, key_prefix, value, random_values) for t in targets}
        self._clients = [
            SimulatedClient(self, targets[i % len(targets)], writers[targets[i % len(targets)]])
            for i in range(clients)
        ]

    def start(self) -> Deferred[BenchResult]:
        """Start every client; the result fires once all connections closed."""
        self._timeout_sweep = LoopingCall(self._sweep_timeouts)
        self._timeout_sweep.clock = self.reactor
        self._timeout_sweep.start(min(1.0, self._request_timeout / 2), now=False)
        if self._warming_up:
            self._timers.append(self.reactor.callLater(self._warmup, self._begin_measuring))
        else:
            self._begin_measuring()
        for client in self._clients:
            client.start()
        if self._requests == 0:
            self._stop()
        return self._finished

    def endpoint_for(self, target: Target):
        """The client endpoint that connects to ``target``."""
        endpoint = self._endpoints.get(target)
        if endpoint is None:
            endpoint_type = TCP6ClientEndpoint if ":" in target.host else TCP4ClientEndpoint
            endpoint = endpoint_type(self.reactor, target.host, target.port, timeout=self._request_timeout)
            self._endpoints[target] = endpoint
        return endpoint

    def take_request(self) -> tuple[str, int, RunTally] | None:
        """The next request to send and the tally it counts toward, or None
        when the run has stopped or its request budget is spent."""
        if self.stopping:
            return None
        if self._warming_up:
            tally = self._warmup_tally
        else:
            if self._remaining_budget is not None:
                if self._remaining_budget == 0:
                    return None
                self._remaining_budget -= 1
            tally = self._tally
        op, key_index = self._workload.next_request()
        return op, key_index, tally

    def response_received(self, in_flight: _InFlight, status: int, latency: float) -> None:
        """Count a response to ``in_flight``."""
        in_flight.tally.record_response(in_flight.op, status, latency)
        self._completed(in_flight)

    def request_failed(self, in_flight: _InFlight, kind: str) -> None:
        """Count ``in_flight`` as ended by error ``kind``."""
        in_flight.tally.record_error(in_flight.op, kind)
        self._completed(in_flight)

    def _completed(self, in_flight: _InFlight) -> None:
        if in_flight.tally is not self._tally:
            return
        self._measured_completed += 1
        if self._requests is not None and self._measured_completed == self._requests:
            self._stop()

    def _begin_measuring(self) -> None:
        self._warming_up = False
        self._measure_start = self.now()
        if self._duration is not None:
            self._timers.append(self.reactor.callLater(self._duration, self._stop))

    def _sweep_timeouts(self) -> None:
        now = self.now()
        for client in self._clients:
            client.check_timeout(now, self._request_timeout)

    def _stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self._measure_end = self._measure_start if self._warming_up else self.now()
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        if self._timeout_sweep is not None and self._timeout_sweep.running:
            self._timeout_sweep.stop()
        for client in self._clients:
            client.stop()
        # Connections a client already let go of may still be closing.
        for connection in list(self.open_connections):
            connection.abort()
        closing = [c.closed for c in self.open_connections]
        DeferredList(closing).addCallback(lambda _: self._finished.callback(self._result()))

    def _result(self) -> BenchResult:
        assert self._measure_end is not None
        elapsed = self._measure_end - self._measure_start
        return self._tally.summarise(elapsed)


# ---------------------------------------------------------------------------
# Configuration, the two phases, and the report.


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Everything that defines a benchmark run; see ``--help``."""

    urls: tuple[str, ...]
    clients: int = 64
    operation: Operation = Operation.PUT
    read_ratio: float = 0.9
    value_size: int = 256
    keys: int = 10000
    key_prefix: str = "bench/"
    duration: float | None = 10.0
    requests: int | None = None
    warmup: float = 0.0
    populate: bool = True
    random_values: bool = False
    request_timeout: float = 10.0
    seed: int | None = None
    targets: tuple[Target, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(Target.from_url(u) for u in self.urls))


def populate_keys(reactor, config: BenchConfig, now: MonotonicClock = time.perf_counter) -> Deferred[BenchResult]:
    """PUT every key of the key space once, spread over the config's clients.

    Fires with the result of that run, so failures can be reported.
    """
    rng = random.Random(config.seed)
    value = rng.randbytes(config.value_size)
    workload = Workload(Operation.PUT, count().__next__, rng)
    run = LoadRun(
        reactor,
        config.targets,
        min(config.clients, config.keys),
        workload,
        config.key_prefix,
        value,
        requests=config.keys,
        request_timeout=config.request_timeout,
        now=now,
        random_values=config.random_values,
    )
    return run.start()


def run_benchmark(reactor, config: BenchConfig, now: MonotonicClock = time.perf_counter) -> Deferred[BenchResult]:
    """Run the measured phase of ``config`` (no population); fires with its result."""
    rng = random.Random(config.seed)
    value = rng.randbytes(config.value_size)
    keys = config.keys
    randrange = rng.randrange
    workload = Workload(config.operation, lambda: randrange(keys), rng, config.read_ratio)
    run = LoadRun(
        reactor,
        config.targets,
        config.clients,
        workload,
        config.key_prefix,
        value,
        duration=config.duration if config.requests is None else None,
        requests=config.requests,
        warmup=config.warmup,
        request_timeout=config.request_timeout,
        now=now,
        random_values=config.random_values,
    )
    return run.start()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def result_as_json(config: BenchConfig, result: BenchResult) -> dict:
    """``result`` as plain JSON-ready data, latencies in milliseconds."""

    def summary(op_summary: OpSummary) -> dict:
        latency = op_summary.latency
        return {
            "requests": op_summary.requests,
            "succeeded": op_summary.succeeded,
            "requests_per_second": round(op_summary.requests / result.elapsed, 1) if result.elapsed else 0.0,
            "latency_ms": None
            if latency is None
            else {"p50": _ms(latency.p50), "p90": _ms(latency.p90), "p99": _ms(latency.p99), "max": _ms(latency.max)},
            "outcomes": op_summary.outcomes,
        }

    return {
        "config": {
            "urls": list(config.urls),
            "clients": config.clients,
            "op": config.operation.value,
            "read_ratio": config.read_ratio if config.operation is Operation.MIXED else None,
            "value_size": config.value_size,
            "keys": config.keys,
            "key_prefix": config.key_prefix,
            "duration": config.duration if config.requests is None else None,
            "requests": config.requests,
            "warmup": config.warmup,
        },
        "elapsed_seconds": round(result.elapsed, 6),
        "succeeded_per_second": round(result.succeeded_per_second, 1),
        **summary(result.overall),
        "by_op": {op: summary(s) for op, s in result.by_op.items()},
    }


def format_report(config: BenchConfig, result: BenchResult) -> str:
    """``result`` as the human-readable text the command prints."""
    limit = f"{config.requests} requests" if config.requests is not None else f"{config.duration:g}s"
    op = config.operation.value
    if config.operation is Operation.MIXED:
        op += f" (read-ratio {config.read_ratio:g})"
    lines = [
        f"op {op}, {config.clients} clients, {config.value_size}-byte values, "
        f"{config.keys} keys, {limit}, warmup {config.warmup:g}s",
        f"urls {' '.join(config.urls)}",
        f"requests     {result.overall.requests} in {result.elapsed:.3f}s",
        f"throughput   {result.requests_per_second:.1f} requests/s "
        f"({result.succeeded_per_second:.1f} succeeded/s)",
    ]
    sections = [("", result.overall)]
    if len(result.by_op) > 1:
        sections += [(f" [{name}]", s) for name, s in result.by_op.items()]
    for label, summary in sections:
        latency = summary.latency
        if latency is None:
            lines.append(f"latency{label}  no successful responses")
        else:
            lines.append(
                f"latency{label}  p50 {latency.p50 * 1000:.3f} ms  p90 {latency.p90 * 1000:.3f} ms  "
                f"p99 {latency.p99 * 1000:.3f} ms  max {latency.max * 1000:.3f} ms"
            )
        outcomes = "  ".join(f"{k}: {v}" for k, v in summary.outcomes.items()) or "none"
        lines.append(f"outcomes{label} {outcomes}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Command line.


class BenchOptions(usage.Options):
    """Command-line options of ``python -m metastore.bench``."""

    synopsis = "python -m metastore.bench --url http://127.0.0.1:8080 [options]"
    longdesc = (
        "Drive --clients keep-alive HTTP clients with PUT/GET against the --url "
        "members and print requests/s, p50/p90/p99/max latency and every "
        "status code or error.  Exits 1 if no request succeeded."
    )

    optParameters = [
        ["clients", "c", 64, "Concurrent keep-alive clients.", int],
        ["duration", "d", None, "Measured seconds (default 10 unless --requests).", float],
        ["requests", "n", None, "Total measured requests, instead of --duration.", int],
        ["op", "o", "put", "put | get | get-serializable | mixed."],
        ["read-ratio", None, 0.9, "Fraction of GETs in --op mixed.", float],
        ["value-size", None, 256, "Bytes per PUT value.", int],
        ["keys", "k", 10000, "Size of the key space.", int],
        ["key-prefix", None, "bench/", "Prefix of every key."],
        ["warmup", "w", 0.0, "Seconds of unmeasured load first.", float],
        ["timeout", None, 10.0, "Seconds before a request counts as timed out.", float],
        ["seed", None, None, "Random seed, for a repeatable key sequence.", int],
    ]
    optFlags = [
        ["no-populate", None, "Do not PUT every key before a reading run."],
        ["random-values", None, "Send a different, incompressible value with every PUT."],
        ["json", None, "Print the result as JSON."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["urls"] = []

    def opt_url(self, value: str) -> None:
        """Member base URL (repeatable or comma-separated; round-robin)."""
        self["urls"].extend(u.strip() for u in value.split(",") if u.strip())

    opt_u = opt_url

    def postOptions(self) -> None:
        """Validate, and build ``self.config``."""
        if not self["urls"]:
            raise usage.UsageError("at least one --url is required")
        try:
            operation = Operation(self["op"])
        except ValueError:
            raise usage.UsageError(f"--op must be one of {', '.join(o.value for o in Operation)}") from None
        if self["duration"] is not None and self["requests"] is not None:
            raise usage.UsageError("give --duration or --requests, not both")
        duration = self["duration"] if self["duration"] is not None else 10.0
        checks = [
            (self["clients"] >= 1, "--clients must be at least 1"),
            (duration > 0, "--duration must be positive"),
            (self["requests"] is None or self["requests"] >= 1, "--requests must be at least 1"),
            (0 <= self["read-ratio"] <= 1, "--read-ratio must be within [0, 1]"),
            (self["value-size"] >= 0, "--value-size must not be negative"),
            (self["keys"] >= 1, "--keys must be at least 1"),
            (self["warmup"] >= 0, "--warmup must not be negative"),
            (self["timeout"] > 0, "--timeout must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise usage.UsageError(message)
        try:
            self.config = BenchConfig(
                urls=tuple(self["urls"]),
                clients=self["clients"],
                operation=operation,
                read_ratio=self["read-ratio"],
                value_size=self["value-size"],
                keys=self["keys"],
                key_prefix=self["key-prefix"],
                duration=duration,
                requests=self["requests"],
                warmup=self["warmup"],
                populate=not self["no-populate"],
                random_values=bool(self["random-values"]),
                request_timeout=self["timeout"],
                seed=self["seed"],
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None


async def run_command(reactor, config: BenchConfig, as_json: bool, out=sys.stdout, err=sys.stderr) -> int:
    """Populate if the run reads, run, print the report; returns the exit
    status (1 if no measured request succeeded)."""
    if config.operation.reads and config.populate:
        populated = await populate_keys(reactor, config)
        failed = populated.overall.requests - populated.overall.succeeded
        print(
            f"populated {populated.overall.succeeded}/{config.keys} keys in {populated.elapsed:.2f}s"
            + (f" ({failed} failed: {populated.overall.outcomes})" if failed else ""),
            file=err,
        )
    result = await run_benchmark(reactor, config)
    if as_json:
        print(json.dumps(result_as_json(config, result), indent=2), file=out)
    else:
        print(format_report(config, result), file=out)
    return 1 if result.all_failed else 0


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m metastore.bench``; exits with its status."""
    options = BenchOptions()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else list(argv))
    except usage.UsageError as e:
        print(f"{options.synopsis}\n{e}\nRun with --help for all options.", file=sys.stderr)
        sys.exit(2)

    async def run(reactor) -> None:
        status = await run_command(reactor, options.config, options["json"])
        if status:
            raise SystemExit(status)

    react(run)
