"""The closed-loop load generator: keep-alive HTTP/1.1 connections on Twisted.

``clients`` simulated clients share ``conns`` connections (one each by
default).  Each client has at most one request outstanding and sends its
next request as soon as its answer arrives; clients sharing a connection
pipeline their requests on it, in order, as HTTP/1.1 allows.  Every outcome
(a status code, or a connection error) is tallied in a
:class:`~metastore.bench.stats.RunTally`.

Only the command line touches the global reactor; everything here takes one.
"""

from __future__ import annotations

import enum
import random
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import count
from typing import Callable, Sequence

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet import ssl
from twisted.internet.interfaces import INegotiated
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from metastore.bench.apis import SEED, RequestBuilder, Target, UnsupportedRequest, ValueSource, request_builder
from metastore.bench.pacing import MIN_WAKE_SECONDS, TokenBucket
from metastore.bench.stats import (
    CONNECT_FAILED,
    CONNECTION_LOST,
    GET,
    GET_SERIALIZABLE,
    KEEPALIVE,
    PROTOCOL_ERROR,
    PUT,
    TIMEOUT,
    TXN_PUT,
    TXN_RANGE,
    BenchResult,
    RunTally,
)
from metastore.bench.wire import MalformedResponse, ParsedResponse, ResponseParser

MonotonicClock = Callable[[], float]
"""Returns seconds from an arbitrary origin; never goes backwards."""

ResponseObserver = Callable[[str, int, ParsedResponse], None]
"""Told of every response: its op, its key (or lease) number, the response."""

POPULATE_CLIENTS = 64
"""The fewest clients that write the key space before a reading run."""

RETRY_DELAY_SECONDS = 0.05
"""Pause before reconnecting after a failure, so a dead server is not spun on."""


class Operation(enum.Enum):
    """What a run sends (the subcommands' workloads)."""

    PUT = "put"
    GET = "get"
    GET_SERIALIZABLE = "get-serializable"
    MIXED = "mixed"
    KEEPALIVE = "lease-keepalive"

    @property
    def reads(self) -> bool:
        """Whether this workload reads keys (and so wants them populated)."""
        return self in (Operation.GET, Operation.GET_SERIALIZABLE, Operation.MIXED)

    def ops(self, api: str) -> tuple[str, str | None]:
        """The write (or only) op and the read op of a mix, for ``api``.

        A mix is txn-put / txn-range through the v3 API, as etcd's
        ``txn-mixed``; the seed API has no transactions, so there it is
        PUT / GET, the same single-key work without the txn envelope.
        """
        if self is Operation.MIXED:
            return (PUT, GET) if api == SEED else (TXN_PUT, TXN_RANGE)
        return {
            Operation.PUT: PUT,
            Operation.GET: GET,
            Operation.GET_SERIALIZABLE: GET_SERIALIZABLE,
            Operation.KEEPALIVE: KEEPALIVE,
        }[self], None


class Workload:
    """Chooses each request's kind and key.

    Every request is ``op``, except that with ``read_op`` a fraction
    ``read_ratio`` of them (drawn from ``rng``) is ``read_op``; ``next_key``
    yields key (or lease) numbers.
    """

    def __init__(
        self,
        op: str,
        next_key: Callable[[], int],
        rng: random.Random | None = None,
        read_op: str | None = None,
        read_ratio: float = 0.0,
    ) -> None:
        self._op = op
        self._next_key = next_key
        self._random = (rng or random.Random()).random
        self._read_op = read_op
        self._read_ratio = read_ratio

    def next_request(self) -> tuple[str, int]:
        """The kind and key number to send next."""
        if self._read_op is not None and self._random() < self._read_ratio:
            return self._read_op, self._next_key()
        return self._op, self._next_key()


def key_sequence(keys: int, sequential: bool, rng: random.Random) -> Callable[[], int]:
    """Key numbers in ``[0, keys)``: 0, 1, 2 … wrapping, or uniformly random."""
    if sequential:
        counter = count()
        return lambda: next(counter) % keys
    randrange = rng.randrange
    return lambda: randrange(keys)


class BenchConnection(Protocol):
    """One keep-alive HTTP connection; it frames responses and hands them,
    and its loss, to its :class:`Channel`, and holds no benchmark state."""

    def __init__(self, owner: Channel) -> None:
        self._owner = owner
        self._parser = ResponseParser()
        self._socket = None
        self.closed: Deferred[None] = Deferred()
        """Fires once the connection has been lost, for whatever reason."""

    def connectionMade(self) -> None:
        """Register with the run so stopping it can close this connection."""
        self._owner.run.open_connections.add(self)
        get_handle = getattr(self.transport, "getHandle", None)
        # Never under TLS: the handle is the raw socket below the encryption.
        tls = INegotiated.providedBy(self.transport)
        self._socket = get_handle() if get_handle is not None and not tls else None

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
        self._owner.connection_lost(self, self._parser.connection_lost())
        self.closed.callback(None)

    def send(self, data: bytes) -> None:
        """Write one request, in order after any earlier one.

        The socket is written at once while nothing waits in the transport's
        buffer: this saves the reactor a write-readiness round (two epoll
        changes and a callback) per request, about a tenth of the client's
        CPU.  Once anything is left over (a full socket buffer, an error),
        every later write goes through the transport, which keeps the order
        and reports the error.
        """
        if self._socket is not None:
            try:
                sent = self._socket.send(data)
            except OSError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
            self._socket = None
        self.transport.write(data)

    def abort(self) -> None:
        """Drop the connection now, without waiting to flush."""
        self.transport.abortConnection()


@dataclass(slots=True)
class _InFlight:
    """A sent (or about to be sent) request and the tally it counts in."""

    op: str
    key_index: int
    started: float
    tally: RunTally


class Channel:
    """One connection carrying the requests of ``depth`` closed-loop clients.

    Each answer frees its client, which sends its next request at once.
    The channel reconnects when the server closes the connection or it
    fails (after :data:`RETRY_DELAY_SECONDS` when a request failed), and
    reports every outcome to its :class:`LoadRun`.
    """

    def __init__(self, run: LoadRun, target: Target, builder: RequestBuilder, depth: int) -> None:
        self.run = run
        self._target = target
        self._builder = builder
        self._depth = depth
        self._connection: BenchConnection | None = None
        self._connecting: Deferred[BenchConnection] | None = None
        self._retry_call = None
        self._in_flight: deque[_InFlight] = deque()

    def start(self) -> None:
        """Begin sending requests."""
        self._fill()

    def resume(self) -> None:
        """Send what the run now allows (it has tokens again), unless a
        reconnection is already scheduled, which will."""
        if self._retry_call is None:
            self._fill()

    def stop(self) -> None:
        """Abandon every request in flight and close the connection."""
        self._in_flight.clear()
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        if self._connecting is not None:
            self._connecting.cancel()
        if self._connection is not None:
            self._connection.abort()
            self._connection = None

    def check_timeout(self, now: float, timeout: float) -> None:
        """Fail the oldest request if it started more than ``timeout`` ago
        (and the ones pipelined behind it, whose connection is dropped)."""
        in_flight = self._in_flight
        if in_flight and self._connection is not None and now - in_flight[0].started > timeout:
            self._fail_all(TIMEOUT)

    def response_received(self, connection: BenchConnection, response: ParsedResponse) -> None:
        """Record a response and send its client's next request."""
        if connection is not self._connection:
            return
        if not self._in_flight:
            self.protocol_error(connection)  # an answer nobody asked for
            return
        self.run.response_received(self._in_flight.popleft(), response)
        if self.run.stopping:
            return  # stop() has already closed the connection
        if not response.keep_alive:
            self._connection = None
            connection.abort()
            if self._in_flight:
                self._fail_all(CONNECTION_LOST)
                return
        self._fill()

    def connection_lost(self, connection: BenchConnection, final: ParsedResponse | None) -> None:
        """Handle the server closing, with a close-delimited response or not."""
        if connection is not self._connection:
            return
        self._connection = None
        if final is not None and self._in_flight:
            self.run.response_received(self._in_flight.popleft(), final)
        if self._in_flight:
            self._fail_all(CONNECTION_LOST)
        else:
            self._fill()

    def protocol_error(self, connection: BenchConnection) -> None:
        """Give up on a connection that sent a malformed response."""
        if connection is not self._connection:
            return
        if self._in_flight:
            self._fail_all(PROTOCOL_ERROR)
        else:
            self._connection = None
            connection.abort()
            self._retry_later()

    def _fail_all(self, first_kind: str) -> None:
        """Fail every request in flight (the oldest as ``first_kind``, the
        rest as lost with the connection), drop it and retry later."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.abort()
        kind = first_kind
        while self._in_flight:
            self.run.request_failed(self._in_flight.popleft(), kind)
            kind = CONNECTION_LOST
        self._retry_later()

    def _retry_later(self) -> None:
        if not self.run.stopping:
            self._retry_call = self.run.reactor.callLater(RETRY_DELAY_SECONDS, self._fill)

    def _fill(self) -> None:
        """Bring the requests in flight up to ``depth``, connecting first if need be."""
        self._retry_call = None
        if self._connecting is not None:
            return
        while len(self._in_flight) < self._depth:
            planned = self.run.take_request(self)
            if planned is None:
                break
            self._in_flight.append(planned)
            if self._connection is not None:
                self._send(planned)
        if self._connection is None and self._in_flight:
            self._connect()

    def _send(self, planned: _InFlight) -> None:
        planned.started = self.run.now()
        self._connection.send(self._builder.request(planned.op, planned.key_index))

    def _connect(self) -> None:
        connecting = connectProtocol(self.run.endpoint_for(self._target), BenchConnection(self))
        self._connecting = connecting
        connecting.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, connection: BenchConnection) -> None:
        self._connecting = None
        if not self._in_flight:  # stopped while connecting
            connection.abort()
            return
        self._connection = connection
        for planned in self._in_flight:
            self._send(planned)

    def _connect_failed(self, reason: Failure) -> None:
        self._connecting = None
        if not self._in_flight:  # cancelled by stop()
            return
        now = self.run.now()
        while self._in_flight:
            planned = self._in_flight.popleft()
            planned.started = now
            self.run.request_failed(planned, CONNECT_FAILED)
        self._retry_later()


class LoadRun:
    """Runs ``clients`` closed-loop clients on ``conns`` connections until a
    duration or request budget is spent.

    Exactly one of ``duration`` (seconds) and ``requests`` (total count) is
    given.  During the first ``warmup`` seconds requests are sent but not
    counted.  Measured requests still in flight when a duration ends are
    abandoned, not counted.  A request unanswered after ``request_timeout``
    seconds counts as a timeout (checked by one periodic sweep rather than a
    timer per request, so it fires within 1.5 times that), so a run always
    ends.  With ``rate``, the clients together send at most that many
    requests per second (:class:`~metastore.bench.pacing.TokenBucket`).
    ``on_measure_start`` and ``on_measure_end`` are called when the
    measured phase begins and ends (to sample server CPU), ``observe`` with
    every response.
    """

    def __init__(
        self,
        reactor,
        targets: Sequence[Target],
        clients: int,
        workload: Workload,
        builders: dict[Target, RequestBuilder],
        *,
        conns: int | None = None,
        duration: float | None = None,
        requests: int | None = None,
        warmup: float = 0.0,
        request_timeout: float = 10.0,
        now: MonotonicClock = time.perf_counter,
        observe: ResponseObserver | None = None,
        on_measure_start: Callable[[], None] | None = None,
        on_measure_end: Callable[[], None] | None = None,
        tls_for: Callable[[str], object] | None = None,
        rate: float | None = None,
    ) -> None:
        """``tls_for(host)`` gives the TLS options for an https:// target."""
        if (duration is None) == (requests is None):
            raise ValueError("give exactly one of duration and requests")
        if not targets:
            raise ValueError("no targets")
        conns = clients if conns is None else conns
        if not 1 <= conns <= clients:
            raise ValueError("conns must be within [1, clients]")
        self.reactor = reactor
        self.now = now
        self.stopping = False
        self.open_connections: set[BenchConnection] = set()
        self.duration = duration
        self.requests = requests
        self._workload = workload
        self._remaining_budget = requests
        self._warmup = warmup
        self._request_timeout = request_timeout
        self._warming_up = warmup > 0
        self._warmup_tally = RunTally()
        self._tally = RunTally()
        self._observe = observe
        self._on_measure_start = on_measure_start
        self._on_measure_end = on_measure_end
        self._measure_start = 0.0
        self._measure_end: float | None = None
        self._timers: list = []
        self._timeout_sweep: LoopingCall | None = None
        self._endpoints: dict[Target, object] = {}
        self._tls_for = tls_for
        self._finished: Deferred[BenchResult] = Deferred()
        self._bucket = TokenBucket(rate, now()) if rate is not None else None
        self._waiting: dict[Channel, None] = {}
        self._wake = None
        depths = [clients // conns + (1 if i < clients % conns else 0) for i in range(conns)]
        self._channels = [
            Channel(self, targets[i % len(targets)], builders[targets[i % len(targets)]], depth)
            for i, depth in enumerate(depths)
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
        if self.requests == 0:
            self._stop()
        for channel in self._channels:
            channel.start()
        return self._finished

    def progress(self) -> tuple[int, float, float]:
        """Measured requests completed so far, seconds measured so far, and
        the fraction of the run done (by budget or by time)."""
        completed = self._tally.completed
        if self._warming_up:
            return 0, 0.0, 0.0
        measured = (self._measure_end if self._measure_end is not None else self.now()) - self._measure_start
        if self.requests:
            return completed, measured, completed / self.requests
        return completed, measured, min(measured / self.duration, 1.0)

    def endpoint_for(self, target: Target):
        """The client endpoint that connects to ``target``."""
        endpoint = self._endpoints.get(target)
        if endpoint is None:
            endpoint_type = TCP6ClientEndpoint if ":" in target.host else TCP4ClientEndpoint
            endpoint = endpoint_type(self.reactor, target.host, target.port, timeout=self._request_timeout)
            if target.tls:
                if self._tls_for is None:
                    raise ValueError(f"{target.url}: an https:// target needs TLS options")
                endpoint = wrapClientTLS(self._tls_for(target.host), endpoint)
            self._endpoints[target] = endpoint
        return endpoint

    def take_request(self, channel: Channel | None = None) -> _InFlight | None:
        """The next request to send, or None when the run has stopped, its
        request budget is spent, or (with a rate) no token is there yet:
        ``channel`` is then resumed once one is."""
        if self.stopping:
            return None
        measured = not self._warming_up
        if measured and self._remaining_budget == 0:
            return None
        if self._bucket is not None and not self._bucket.take(self.now()):
            if channel is not None:
                self._wait_for_token(channel)
            return None
        if measured:
            if self._remaining_budget is not None:
                self._remaining_budget -= 1
            tally = self._tally
        else:
            tally = self._warmup_tally
        op, key_index = self._workload.next_request()
        return _InFlight(op, key_index, 0.0, tally)

    def _wait_for_token(self, channel: Channel) -> None:
        self._waiting[channel] = None
        self._wake_when_tokens()

    def _wake_when_tokens(self) -> None:
        if self._wake is None and self._waiting and not self.stopping:
            delay = max(MIN_WAKE_SECONDS, self._bucket.wait(self.now()))
            self._wake = self.reactor.callLater(delay, self._hand_out_tokens)

    def _hand_out_tokens(self) -> None:
        """Resume waiting channels, oldest first, while tokens are there."""
        self._wake = None
        for channel in list(self._waiting):
            if self.stopping or not self._bucket.available(self.now()):
                break
            del self._waiting[channel]
            channel.resume()
        self._wake_when_tokens()

    def response_received(self, in_flight: _InFlight, response: ParsedResponse) -> None:
        """Count a response to ``in_flight``."""
        in_flight.tally.record_response(in_flight.op, response.status, self.now() - in_flight.started)
        if self._observe is not None:
            self._observe(in_flight.op, in_flight.key_index, response)
        self._completed(in_flight)

    def request_failed(self, in_flight: _InFlight, kind: str) -> None:
        """Count ``in_flight`` as ended by error ``kind``."""
        in_flight.tally.record_error(in_flight.op, kind)
        self._completed(in_flight)

    def _completed(self, in_flight: _InFlight) -> None:
        if in_flight.tally is self._tally and self._tally.completed == self.requests:
            self._stop()

    def _begin_measuring(self) -> None:
        self._warming_up = False
        if self._on_measure_start is not None:
            self._on_measure_start()
        self._measure_start = self.now()
        if self.duration is not None:
            self._timers.append(self.reactor.callLater(self.duration, self._stop))

    def _sweep_timeouts(self) -> None:
        now = self.now()
        for channel in self._channels:
            channel.check_timeout(now, self._request_timeout)

    def _stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self._measure_end = self._measure_start if self._warming_up else self.now()
        if self._on_measure_end is not None and not self._warming_up:
            self._on_measure_end()
        for timer in self._timers + ([self._wake] if self._wake is not None else []):
            if timer.active():
                timer.cancel()
        self._waiting.clear()
        if self._timeout_sweep is not None and self._timeout_sweep.running:
            self._timeout_sweep.stop()
        for channel in self._channels:
            channel.stop()
        # Connections a channel already let go of may still be closing.
        for connection in list(self.open_connections):
            connection.abort()
        closing = [c.closed for c in self.open_connections]
        DeferredList(closing).addCallback(lambda _: self._finished.callback(self._result()))

    def _result(self) -> BenchResult:
        assert self._measure_end is not None
        return self._tally.summarise(self._measure_end - self._measure_start)


def client_tls_options(host: str, config: "BenchConfig"):
    """TLS options for ``host``: trust ``config.cacert`` (else the system's
    roots), present ``config.cert``/``config.key`` when given."""
    trust = None
    if config.cacert:
        with open(config.cacert, "rb") as f:
            trust = ssl.Certificate.loadPEM(f.read())
    client = None
    if config.cert:
        with open(config.cert, "rb") as f:
            cert = f.read()
        with open(config.key or config.cert, "rb") as f:
            key = f.read()
        client = ssl.PrivateCertificate.loadPEM(cert + b"\n" + key)
    return ssl.optionsForClientTLS(host, trustRoot=trust, clientCertificate=client)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Everything that defines a request/response run; see ``--help``."""

    urls: tuple[str, ...]
    api: str = SEED
    clients: int = 64
    conns: int | None = None
    operation: Operation = Operation.PUT
    read_ratio: float = 0.9
    value_size: int = 256
    key_size: int = 0
    keys: int = 10000
    key_prefix: str = "bench/"
    sequential_keys: bool = False
    duration: float | None = 10.0
    requests: int | None = None
    warmup: float = 0.0
    populate: bool = True
    random_values: bool = False
    request_timeout: float = 10.0
    seed: int | None = None
    lease_ttl: int = 60
    rate: float | None = None
    """Total requests per second the clients may send (None: closed loop, as fast as answered)."""
    cacert: str = ""
    """CA file (PEM) that https:// endpoints' certificates chain to (empty: the system's)."""
    cert: str = ""
    key: str = ""
    """Client certificate and key (PEM) for endpoints that ask for one."""
    targets: tuple[Target, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(Target.from_url(u) for u in self.urls))

    def tls_for(self, host: str):
        """TLS options for an https:// target on ``host``."""
        return client_tls_options(host, self)

    def builders(self, rng: random.Random) -> dict[Target, RequestBuilder]:
        """One request builder per target (raises UnsupportedRequest for an
        API this tool cannot drive, or an op the API cannot express)."""
        values = ValueSource(rng.randbytes(self.value_size), self.random_values)
        builders = {
            t: request_builder(self.api, t, self.key_prefix, values, self.key_size, self.lease_ttl)
            for t in self.targets
        }
        ops = self.operation.ops(self.api)
        for builder in builders.values():
            missing = {op for op in ops if op is not None} - builder.ops
            if missing:
                raise UnsupportedRequest(f"the {self.api} API cannot send {', '.join(sorted(missing))}")
        return builders


def populate_keys(reactor, config: BenchConfig, now: MonotonicClock = time.perf_counter) -> Deferred[BenchResult]:
    """PUT every key of the key space once, spread over the config's
    clients but at least :data:`POPULATE_CLIENTS` (it is not measured, and
    one client writing 10,000 keys one fsync at a time takes minutes on a
    loaded machine).

    Fires with the result of that run, so failures can be reported.
    """
    rng = random.Random(config.seed)
    run = LoadRun(
        reactor,
        config.targets,
        min(max(config.clients, POPULATE_CLIENTS), config.keys),
        Workload(PUT, count().__next__),
        config.builders(rng),
        requests=config.keys,
        request_timeout=config.request_timeout,
        now=now,
        tls_for=config.tls_for,
    )
    return run.start()


def benchmark_run(
    reactor,
    config: BenchConfig,
    now: MonotonicClock = time.perf_counter,
    next_key: Callable[[], int] | None = None,
    builders: dict[Target, RequestBuilder] | None = None,
    **hooks,
) -> LoadRun:
    """The measured phase of ``config`` (no population), not yet started.

    ``next_key`` overrides the key numbers (the lease benchmark passes its
    lease IDs), ``builders`` the requests (the watch benchmark's writers
    stamp their values); ``hooks`` go to :class:`LoadRun`.
    """
    rng = random.Random(config.seed)
    op, read_op = config.operation.ops(config.api)
    workload = Workload(
        op, next_key or key_sequence(config.keys, config.sequential_keys, rng), rng, read_op, config.read_ratio
    )
    return LoadRun(
        reactor,
        config.targets,
        config.clients,
        workload,
        builders or config.builders(rng),
        conns=config.conns,
        duration=config.duration if config.requests is None else None,
        requests=config.requests,
        warmup=config.warmup,
        request_timeout=config.request_timeout,
        now=now,
        tls_for=config.tls_for,
        rate=config.rate,
        **hooks,
    )


def run_benchmark(reactor, config: BenchConfig, now: MonotonicClock = time.perf_counter) -> Deferred[BenchResult]:
    """Run the measured phase of ``config`` (no population); fires with its result."""
    return benchmark_run(reactor, config, now).start()
