"""Tests for the HTTP benchmark, ``metastore-bench`` (``metastore.bench``).

The parser, the request bytes, the statistics, the report and the client
state machine are tested without sockets; one test class runs short,
bounded benchmarks over real TCP against a tiny in-test HTTP server, because
that is the only way to see the whole client work against a real HTTP
implementation.  ``tests/test_bench_process.py`` runs the tool against a
real member and a real etcd.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
from collections import Counter
from itertools import count
from urllib.parse import unquote

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Site

from metastore.bench.apis import (
    SeedRequests,
    Target,
    UnsupportedRequest,
    V3Requests,
    ValueSource,
    key_bytes,
    lease_id_of,
    request_builder,
)
from metastore.bench.cli import BenchOptions
from metastore.bench.leader import is_leader_document
from metastore.bench.load import (
    BenchConfig,
    LoadRun,
    Operation,
    Workload,
    key_sequence,
    populate_keys,
    run_benchmark,
)
from metastore.bench.proc import CLOCK_TICKS, CostMeter, ProcessSample, ServerCost, parse_stat_cpu, parse_status_rss
from metastore.bench.report import format_report, result_as_json
from metastore.bench.stats import (
    CONNECTION_LOST,
    DELIVERED,
    GET,
    GET_SERIALIZABLE,
    KEEPALIVE,
    LEASE_GRANT,
    PUT,
    TIMEOUT,
    TXN_PUT,
    TXN_RANGE,
    HistogramBucket,
    LatencySummary,
    RunTally,
    histogram,
    percentile,
)
from metastore.bench.watch import TimestampValues, WatchRun, WatchStream, prefix_end
from metastore.bench.wire import MalformedResponse, ParsedResponse, ResponseParser


def feed_bytewise(parser: ResponseParser, data: bytes) -> list[ParsedResponse]:
    """Feed ``data`` one byte at a time; return every completed response."""
    responses: list[ParsedResponse] = []
    for i in range(len(data)):
        responses.extend(parser.feed(data[i : i + 1]))
    return responses


class PercentileTests(SynchronousTestCase):
    """``percentile`` is the nearest-rank percentile."""

    def test_small_lists(self) -> None:
        """p50 of four values is the second; p0 the minimum; p100 the maximum."""
        values = [1.0, 2.0, 3.0, 4.0]
        self.assertEqual(percentile(values, 50), 2.0)
        self.assertEqual(percentile(values, 51), 3.0)
        self.assertEqual(percentile(values, 0), 1.0)
        self.assertEqual(percentile(values, 100), 4.0)

    def test_hundred_values(self) -> None:
        """Over 1..100, the pN percentile is N exactly."""
        values = [float(v) for v in range(1, 101)]
        for p in (1, 50, 90, 99, 100):
            self.assertEqual(percentile(values, p), float(p))

    def test_fractional_percent(self) -> None:
        """p99.9 of 1..1000 is 999 and of 1..10000 is 9990: float error in
        the rank does not move it up a place."""
        self.assertEqual(percentile([float(v) for v in range(1, 1001)], 99.9), 999.0)
        self.assertEqual(percentile([float(v) for v in range(1, 10001)], 99.9), 9990.0)

    def test_single_value(self) -> None:
        """Every percentile of one value is that value."""
        for p in (0, 50, 99, 100):
            self.assertEqual(percentile([7.0], p), 7.0)

    def test_invalid(self) -> None:
        """No values, or a percent outside [0, 100], is an error."""
        self.assertRaises(ValueError, percentile, [], 50)
        self.assertRaises(ValueError, percentile, [1.0], 101)
        self.assertRaises(ValueError, percentile, [1.0], -1)

    def test_summary_sorts(self) -> None:
        """``LatencySummary.of`` sorts its input; it is None for no input."""
        summary = LatencySummary.of([float(v) for v in reversed(range(1, 11))])
        self.assertEqual(
            (summary.p50, summary.p90, summary.p99, summary.p999, summary.max, summary.min, summary.mean),
            (5.0, 9.0, 10.0, 10.0, 10.0, 1.0, 5.5),
        )
        self.assertIsNone(LatencySummary.of([]))


class ResponseParserTests(SynchronousTestCase):
    """``ResponseParser`` frames responses however their bytes are split."""

    def test_content_length_bytewise(self) -> None:
        """A Content-Length body is returned whole, only after its last byte."""
        parser = ResponseParser()
        data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Other: a:b\r\n\r\nhello"
        self.assertEqual(feed_bytewise(parser, data[:-1]), [])
        self.assertEqual(parser.feed(data[-1:]), [ParsedResponse(200, b"hello", True)])

    def test_no_body_statuses(self) -> None:
        """A 204 has no body even without Content-Length; 304 likewise."""
        parser = ResponseParser()
        data = b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n"
        self.assertEqual(
            feed_bytewise(parser, data),
            [ParsedResponse(204, b"", True), ParsedResponse(304, b"", True)],
        )

    def test_chunked_bytewise(self) -> None:
        """Chunked bodies, with extensions and trailers, are reassembled."""
        parser = ResponseParser()
        data = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\n"
        )
        self.assertEqual(
            feed_bytewise(parser, data), [ParsedResponse(200, b"abc0123456789", True)]
        )

    def test_pipelined_in_one_feed(self) -> None:
        """Several responses in one chunk of bytes all come out, in order."""
        parser = ResponseParser()
        data = (
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 2\r\n\r\nno"
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
        )
        self.assertEqual(
            [r.status for r in parser.feed(data)], [404, 503, 200]
        )

    def test_interim_response_skipped(self) -> None:
        """A 100 Continue is not a response to report."""
        parser = ResponseParser()
        data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
        self.assertEqual(feed_bytewise(parser, data), [ParsedResponse(204, b"", True)])

    def test_connection_close(self) -> None:
        """``Connection: close`` and HTTP/1.0 both end keep-alive (each is
        the last response of its connection, so each gets a fresh parser),
        and bytes after a response that ended keep-alive are refused."""
        responses = (
            b"HTTP/1.1 204 No Content\r\nConnection: Close\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        )
        keep_alive = [r.keep_alive for data in responses for r in feed_bytewise(ResponseParser(), data)]
        self.assertEqual(keep_alive, [False, False, True])
        self.assertRaises(MalformedResponse, feed_bytewise, ResponseParser(), responses[0] + responses[1])

    def test_close_delimited_body(self) -> None:
        """Without framing headers the body runs to the close."""
        parser = ResponseParser()
        self.assertEqual(feed_bytewise(parser, b"HTTP/1.1 200 OK\r\n\r\nall of it"), [])
        self.assertEqual(parser.connection_lost(), ParsedResponse(200, b"all of it", False))

    def test_interrupted_response_dropped(self) -> None:
        """A response cut off mid-body is not reported at the close."""
        parser = ResponseParser()
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        self.assertIsNone(parser.connection_lost())

    def test_malformed(self) -> None:
        """Garbage in the status line, headers or chunk sizes raises."""
        for data in (
            b"SPDY/3 200 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxyz",
        ):
            self.assertRaises(MalformedResponse, feed_bytewise, ResponseParser(), data)

    def test_unbounded_head_refused(self) -> None:
        """A head that never ends is refused once past the limit."""
        parser = ResponseParser(max_head_bytes=100)
        self.assertRaises(MalformedResponse, parser.feed, b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20)


class SeedRequestsTests(SynchronousTestCase):
    """``SeedRequests`` sends the REST contract's requests."""

    def test_random_values_differ_and_keep_their_size(self):
        """With random values every PUT carries a different body of the asked size."""
        writer = SeedRequests(Target.from_url("http://db1:8080"), "bench/", ValueSource(b"x" * 64, random_values=True))
        bodies = [writer.request(PUT, 1).split(b"\r\n\r\n", 1)[1] for _ in range(20)]
        self.assertEqual({len(b) for b in bodies}, {64})
        self.assertGreater(len(set(bodies)), 15)

    def test_requests(self) -> None:
        """Keys are one percent-encoded segment under the URL's path."""
        writer = SeedRequests(Target.from_url("http://db1:8080/v1/"), "bench/", ValueSource(b"val"))
        self.assertEqual(
            writer.request(PUT, 7),
            b"PUT /v1/bench%2F7 HTTP/1.1\r\nHost: db1:8080\r\nContent-Length: 3\r\n\r\nval",
        )
        self.assertEqual(
            writer.request(GET, 12), b"GET /v1/bench%2F12 HTTP/1.1\r\nHost: db1:8080\r\n\r\n"
        )
        self.assertEqual(
            writer.request(GET_SERIALIZABLE, 0),
            b"GET /v1/bench%2F0?serializable=true HTTP/1.1\r\nHost: db1:8080\r\n\r\n",
        )

    def test_bad_urls(self) -> None:
        """Only http:// and https:// base URLs with a host are accepted."""
        for url in ("ftp://a:1", "a:1", "http://", "http://a:1/?x=1"):
            self.assertRaises(ValueError, Target.from_url, url)

    def test_https_urls(self) -> None:
        """https:// is a TLS target, on 443 by default."""
        self.assertEqual((Target.from_url("https://a:1").tls, Target.from_url("https://a").port), (True, 443))
        self.assertFalse(Target.from_url("http://a:1").tls)


class OptionsTests(SynchronousTestCase):
    """``BenchOptions`` parses the documented command line."""

    def test_urls_and_defaults(self) -> None:
        """``--url`` repeats and splits on commas; defaults match the brief."""
        options = BenchOptions()
        options.parseOptions(["put", "--url", "http://a:1,http://b:2", "-u", "http://c:3", "--endpoints", "http://d:4"])
        config = options.config
        self.assertEqual(config.urls, ("http://a:1", "http://b:2", "http://c:3", "http://d:4"))
        self.assertEqual(
            (config.clients, config.duration, config.requests, config.value_size, config.keys),
            (64, 10.0, None, 256, 10000),
        )
        self.assertEqual((config.key_prefix, config.operation, config.populate), ("bench/", Operation.PUT, True))
        self.assertEqual((config.api, config.conns, config.key_size, config.sequential_keys), ("seed", None, 0, False))

    def test_subcommands(self) -> None:
        """Each subcommand picks its workload; the common options apply to all."""
        cases = [
            (["range", "-u", "http://a:1"], Operation.GET),
            (["range", "-u", "http://a:1", "--consistency", "s"], Operation.GET_SERIALIZABLE),
            (["txn-mixed", "-u", "http://a:1", "--read-ratio", "0.25"], Operation.MIXED),
            (["lease-keepalive", "--api", "v3", "-u", "http://a:1"], Operation.KEEPALIVE),
            (["watch", "--api", "v3", "-u", "http://a:1", "--watchers", "3"], Operation.PUT),
        ]
        for argv, operation in cases:
            options = BenchOptions()
            options.parseOptions(argv + ["-n", "7", "--conns", "2", "-c", "4", "--sequential-keys", "--key-size", "16"])
            config = options.config
            self.assertEqual(config.operation, operation, argv)
            self.assertEqual(
                (config.requests, config.conns, config.clients, config.sequential_keys, config.key_size),
                (7, 2, 4, True, 16),
            )
        options = BenchOptions()
        options.parseOptions(["watch-memory", "--api", "v3", "-u", "http://a:1", "--pid", str(os.getpid())])
        self.assertEqual((options.subOptions["watchers"], options.subOptions["settle"]), (1000, 2.0))
        options = BenchOptions()
        pid = os.getpid()
        options.parseOptions(["txn-mixed", "-u", "http://a:1", "--read-ratio", "0.25", "--pid", f"{pid},1"])
        self.assertEqual((options.config.read_ratio, options.subOptions["pids"]), (0.25, [pid, 1]))

    def test_invalid(self) -> None:
        """Missing URLs, unknown subcommands, contradictory limits, and what
        the chosen API cannot do are refused."""
        for argv in (
            [],
            ["--url", "http://a:1"],
            ["delete", "--url", "http://a:1"],
            ["put", "--url", "http://a:1", "-d", "1", "-n", "5"],
            ["put", "--url", "http://a:1", "--clients", "0"],
            ["put", "--url", "http://a:1", "--clients", "2", "--conns", "3"],
            ["put", "--url", "ftp://a:1"],
            ["put", "--url", "http://a:1", "--api", "soap"],
            ["range", "--url", "http://a:1", "--consistency", "x"],
            ["txn-mixed", "--url", "http://a:1", "--read-ratio", "2"],
            ["watch", "--url", "http://a:1"],
            ["lease-keepalive", "--url", "http://a:1"],
            ["watch-memory", "--url", "http://a:1", "--pid", str(os.getpid())],
            ["watch-memory", "--api", "v3", "--url", "http://a:1"],
            ["watch-memory", "--api", "v3", "--url", "http://a:1", "--pid", str(os.getpid()), "--watchers", "0"],
            ["put", "--url", "http://a:1", "--pid", "self"],
            ["put", "--url", "http://a:1", "--pid", "99999999"],
        ):
            self.assertRaises(usage.UsageError, BenchOptions().parseOptions, argv)

    def test_grpc_refused_clearly(self) -> None:
        """``--api grpc`` is a reserved name with a message saying what to use."""
        for sub in ("put", "range", "watch", "lease-keepalive"):
            with self.assertRaises(usage.UsageError) as caught:
                BenchOptions().parseOptions([sub, "--api", "grpc", "-u", "http://a:1"])
            self.assertIn("--api grpc is not implemented yet", str(caught.exception))


class ScriptedConnectionTests(SynchronousTestCase):
    """A simulated client over in-memory transports, on a fake clock."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.result = self.start_run(clients=1, requests=4)

    def start_run(self, clients: int, requests: int, conns: int | None = None):
        """A PUT run against one fake target; returns its result Deferred."""
        target = Target.from_url("http://127.0.0.1:8080")
        run = LoadRun(
            self.reactor,
            [target],
            clients,
            Workload(PUT, count().__next__, random.Random(0)),
            {target: SeedRequests(target, "k/", ValueSource(b"v"))},
            conns=conns,
            requests=requests,
            request_timeout=5.0,
            now=self.reactor.seconds,
        )
        return run.start()

    def accept(self, index: int):
        """Complete the ``index``-th connection attempt; returns its protocol
        and transport."""
        host, port, factory, _, _ = self.reactor.tcpClients[index]
        self.assertEqual((host, port), ("127.0.0.1", 8080))
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_outcomes(self) -> None:
        """Close, bytewise 503, loss and timeout each end one request, are
        each tallied, and the client reconnects after every one."""
        protocol, transport = self.accept(0)
        self.assertEqual(transport.value(), b"PUT /k%2F0 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: 1\r\n\r\nv")
        self.reactor.advance(0.25)
        protocol.dataReceived(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(None)

        protocol, transport = self.accept(1)
        self.assertIn(b"/k%2F1 ", transport.value())
        for byte in b"HTTP/1.1 503 Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n":
            protocol.dataReceived(bytes([byte]))
        self.assertIn(b"/k%2F2 ", transport.value())
        protocol.connectionLost(None)

        self.reactor.advance(1)  # the retry delay
        protocol, transport = self.accept(2)
        self.assertIn(b"/k%2F3 ", transport.value())
        self.reactor.pump([1.0] * 6)  # past the request timeout
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(self.result)  # waits for the connection to close
        protocol.connectionLost(None)

        result = self.successResultOf(self.result)
        self.assertEqual(
            result.overall.outcomes, {"204": 1, "503": 1, CONNECTION_LOST: 1, TIMEOUT: 1}
        )
        self.assertEqual((result.overall.requests, result.overall.succeeded), (4, 1))
        self.assertEqual(result.overall.latency.p50, 0.25)
        self.assertEqual(len(self.reactor.tcpClients), 3)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class PipelinedConnectionTests(SynchronousTestCase):
    """Several clients on one connection pipeline their requests in order."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        target = Target.from_url("http://127.0.0.1:8080")
        self.run = LoadRun(
            self.reactor,
            [target],
            3,
            Workload(PUT, count().__next__),
            {target: SeedRequests(target, "k/", ValueSource(b"v"))},
            conns=1,
            requests=5,
            request_timeout=5.0,
            now=self.reactor.seconds,
        )
        self.result = self.run.start()
        _, _, factory, _, _ = self.reactor.tcpClients[0]
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def sent_keys(self) -> list[bytes]:
        """The keys of the requests written so far, in order; clears them."""
        data = self.transport.value()
        self.transport.clear()
        return re.findall(rb"PUT (\S+) HTTP/1.1", data)

    def test_closed_loop_in_order(self) -> None:
        """Three requests go out at once; each answer lets exactly one more
        out, until the budget is spent; one connection carries them all."""
        self.assertEqual(self.sent_keys(), [b"/k%2F0", b"/k%2F1", b"/k%2F2"])
        self.protocol.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n" * 2)
        self.assertEqual(self.sent_keys(), [b"/k%2F3", b"/k%2F4"])
        self.protocol.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n" * 2)
        self.assertEqual(self.sent_keys(), [])
        self.assertNoResult(self.result)
        self.protocol.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertTrue(self.transport.disconnecting)
        self.protocol.connectionLost(None)
        result = self.successResultOf(self.result)
        self.assertEqual((result.overall.outcomes, result.overall.requests), ({"204": 5}, 5))
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_loss_fails_every_pipelined_request(self) -> None:
        """A lost connection ends all three requests in flight, each counted,
        and the clients come back on a new connection after the retry delay."""
        self.sent_keys()
        self.protocol.connectionLost(None)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.reactor.advance(1)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        _, _, factory, _, _ = self.reactor.tcpClients[1]
        protocol, transport = factory.buildProtocol(None), StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value().count(b"PUT "), 2)  # the budget's last two
        protocol.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n" * 2)
        protocol.connectionLost(None)
        result = self.successResultOf(self.result)
        self.assertEqual(result.overall.outcomes, {"204": 2, CONNECTION_LOST: 3})


class PartialSocket:
    """A socket whose buffer has ``room`` bytes left; records what it took."""

    def __init__(self) -> None:
        self.sent = b""
        self.room = 10**6

    def send(self, data: bytes) -> int:
        """Take what fits."""
        taken = data[: self.room]
        self.sent += taken
        self.room -= len(taken)
        return len(taken)


class SocketTransport(StringTransport):
    """A StringTransport with a socket handle, as a TCP transport has."""

    def __init__(self, handle: PartialSocket) -> None:
        super().__init__()
        self._handle = handle

    def getHandle(self) -> PartialSocket:
        """The socket the client may write directly."""
        return self._handle


class DirectSendTests(SynchronousTestCase):
    """Requests go straight to the socket until one does not fit; from then
    on through the transport, so the byte stream keeps its order."""

    def test_order_kept_after_a_partial_send(self) -> None:
        """The part that did not fit and every later request go through the
        transport, behind what the socket took."""
        reactor = MemoryReactorClock()
        target = Target.from_url("http://127.0.0.1:8080")
        builder = SeedRequests(target, "k/", ValueSource(b"v"))
        run = LoadRun(reactor, [target], 2, Workload(PUT, count().__next__), {target: builder},
                      conns=1, requests=3, now=reactor.seconds)
        result = run.start()
        socket = PartialSocket()
        socket.room = 100  # the first request fits, the second does not
        transport = SocketTransport(socket)
        factory = reactor.tcpClients[0][2]
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(transport)
        first, second, third = (builder.request(PUT, i) for i in range(3))
        split = 100 - len(first)
        self.assertTrue(0 < split < len(second))
        self.assertEqual(socket.sent, first + second[:split])
        self.assertEqual(transport.value(), second[split:])
        socket.room = 10**6
        protocol.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(transport.value(), second[split:] + third)
        protocol.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n" * 2)
        protocol.connectionLost(None)
        self.assertEqual(self.successResultOf(result).overall.outcomes, {"204": 3})


class KeyValueResource(Resource):
    """A stand-in for the store: PUT/GET/DELETE on a dict, with 503 for
    every key whose number is a multiple of 7, tallying what it answered."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, bytes] = {}
        self.answered: Counter[str] = Counter()

    def render(self, request) -> bytes:
        """Answer as the REST contract says, or 503 for the unlucky keys."""
        key = unquote(request.path.decode("ascii")[1:])
        status, body = self._answer(request, key)
        request.setResponseCode(status)
        self.answered[str(status)] += 1
        return body

    def _answer(self, request, key: str) -> tuple[int, bytes]:
        if int(key.rsplit("/", 1)[1]) % 7 == 0:
            request.setHeader(b"retry-after", b"1")
            return 503, b"no leader"
        if request.method == b"PUT":
            self.values[key] = request.content.read()
            return 204, b""
        if request.method == b"GET":
            if key in self.values:
                return 200, self.values[key]
            return 404, b""
        return 405, b""


class TrackedChannel(HTTPChannel):
    """An HTTPChannel that tells its site when it closes."""

    def connectionMade(self) -> None:
        """Count the connection as open."""
        super().connectionMade()
        self.site.open_channels.add(self)

    def connectionLost(self, reason) -> None:
        """Count it as closed, and wake whoever waits for none to be open."""
        super().connectionLost(reason)
        self.site.open_channels.discard(self)
        if not self.site.open_channels:
            waiting, self.site.all_closed = self.site.all_closed, []
            for d in waiting:
                d.callback(None)


class TrackedSite(Site):
    """A Site that can wait for its connections to close and logs nothing."""

    protocol = TrackedChannel

    def __init__(self, resource) -> None:
        super().__init__(resource)
        self.open_channels: set[TrackedChannel] = set()
        self.all_closed: list[Deferred] = []

    def buildProtocol(self, addr):
        """Build a channel that knows its site."""
        channel = super().buildProtocol(addr)
        channel.site = self
        return channel

    def wait_closed(self) -> Deferred:
        """Fires once no connection to this site is open."""
        if not self.open_channels:
            return succeed(None)
        d: Deferred = Deferred()
        self.all_closed.append(d)
        return d


class RealServerTests(TestCase):
    """Short benchmarks over real TCP against ``KeyValueResource``.

    Bounded by request counts and by trial's timeout; no sleeps.
    """

    timeout = 30

    def setUp(self) -> None:
        self.store = KeyValueResource()
        self.site = TrackedSite(self.store)
        self.port = global_reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.addCleanup(self.site.wait_closed)  # runs before stopListening
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"

    def config(self, **overrides) -> BenchConfig:
        """A small bounded run against the in-test server."""
        settings = dict(urls=(self.url,), clients=8, keys=50, requests=200, seed=1)
        settings.update(overrides)
        return BenchConfig(**settings)

    async def test_put_counts_every_status(self) -> None:
        """Exactly the requested number of PUTs are made, and the tally per
        status is exactly what the server answered, 503s included."""
        config = self.config()
        result = await run_benchmark(global_reactor, config)
        self.assertEqual(result.overall.requests, 200)
        self.assertEqual(result.overall.outcomes, dict(self.store.answered))
        self.assertEqual(set(result.overall.outcomes), {"204", "503"})
        self.assertEqual(result.overall.succeeded, self.store.answered["204"])
        self.assertGreater(result.elapsed, 0)
        self.assertFalse(result.all_failed)
        report = format_report(config, result)
        self.assertIn("requests/s", report)
        self.assertIn(f"503: {self.store.answered['503']}", report)
        self.assertEqual(result_as_json(config, result)["outcomes"], dict(self.store.answered))

    async def test_populate_then_get(self) -> None:
        """Population PUTs each key once; then GETs find every key except the
        unavailable ones, spread over two URLs of the same server."""
        config = self.config(operation=Operation.GET_SERIALIZABLE, urls=(self.url, self.url + "/"))
        populated = await populate_keys(global_reactor, config)
        self.assertEqual(populated.overall.outcomes, {"204": 42, "503": 8})
        self.assertEqual(len(self.store.values), 42)
        self.store.answered.clear()
        result = await run_benchmark(global_reactor, config)
        self.assertEqual(result.overall.requests, 200)
        self.assertEqual(result.overall.outcomes, dict(self.store.answered))
        self.assertNotIn("404", result.overall.outcomes)
        self.assertEqual(list(result.by_op), [GET_SERIALIZABLE])

    async def test_mixed_by_duration(self) -> None:
        """A timed mixed run splits its tally by operation, and the parts add
        up to the whole."""
        config = self.config(
            operation=Operation.MIXED, read_ratio=0.5, requests=None, duration=0.2, warmup=0.05
        )
        result = await run_benchmark(global_reactor, config)
        self.assertEqual(set(result.by_op), {PUT, GET})
        self.assertEqual(
            sum(s.requests for s in result.by_op.values()), result.overall.requests
        )
        self.assertGreater(result.overall.requests, 0)
        # The deadline never fires early; a loaded machine may fire it late.
        self.assertTrue(0.19 <= result.elapsed < 5, result.elapsed)

    async def test_nothing_listening(self) -> None:
        """Against a closed port every request is a counted connect failure."""
        closed = global_reactor.listenTCP(0, self.site, interface="127.0.0.1")
        url = f"http://127.0.0.1:{closed.getHost().port}"
        await closed.stopListening()
        result = await run_benchmark(global_reactor, self.config(urls=(url,), requests=20))
        self.assertEqual(result.overall.outcomes, {"connect-failed": 20})
        self.assertTrue(result.all_failed)


class V3RequestsTests(SynchronousTestCase):
    """``V3Requests`` sends etcd's JSON gateway shapes."""

    def setUp(self) -> None:
        self.builder = V3Requests(Target.from_url("http://e:2379"), "b/", ValueSource(b"val"), key_size=6, lease_ttl=9)

    def parse(self, request: bytes) -> tuple[bytes, dict]:
        """The request line and the JSON body; checks Content-Length."""
        head, body = request.split(b"\r\n\r\n", 1)
        self.assertIn(b"\r\nContent-Length: %d\r\n" % len(body), head + b"\r\n")
        self.assertIn(b"\r\nHost: e:2379\r\n", head + b"\r\n")
        return head.split(b"\r\n", 1)[0], json.loads(body)

    def test_shapes(self) -> None:
        """Keys and values are base64 (keys padded to key_size), lease IDs numbers."""
        key = base64.b64encode(b"b/0042").decode()
        value = base64.b64encode(b"val").decode()
        cases = [
            (PUT, 42, b"POST /v3/kv/put HTTP/1.1", {"key": key, "value": value}),
            (GET, 42, b"POST /v3/kv/range HTTP/1.1", {"key": key}),
            (GET_SERIALIZABLE, 42, b"POST /v3/kv/range HTTP/1.1", {"key": key, "serializable": True}),
            (TXN_PUT, 42, b"POST /v3/kv/txn HTTP/1.1", {"success": [{"request_put": {"key": key, "value": value}}]}),
            (TXN_RANGE, 42, b"POST /v3/kv/txn HTTP/1.1", {"success": [{"request_range": {"key": key}}]}),
            (LEASE_GRANT, 0, b"POST /v3/lease/grant HTTP/1.1", {"TTL": 9}),
            (KEEPALIVE, 2**62 + 5, b"POST /v3/lease/keepalive HTTP/1.1", {"ID": 2**62 + 5}),
        ]
        for op, index, line, body in cases:
            self.assertEqual(self.parse(self.builder.request(op, index)), (line, body), op)

    def test_watch_request(self) -> None:
        """A watch create request names the key range in base64."""
        line, body = self.parse(self.builder.watch_request(b"b/", prefix_end(b"b/")))
        self.assertEqual(line, b"POST /v3/watch HTTP/1.1")
        self.assertEqual(body, {"create_request": {"key": "Yi8=", "range_end": "YjA="}})

    def test_lease_id_of(self) -> None:
        """The lease ID comes out exact, beyond 2**53; a body without one is refused."""
        self.assertEqual(lease_id_of(b'{"header":{},"ID":"7587869034393510155","TTL":"9"}'), 7587869034393510155)
        self.assertRaises(ValueError, lease_id_of, b'{"error":"x"}')
        self.assertRaises(ValueError, lease_id_of, b"not json")

    def test_grpc_and_unknown_refused(self) -> None:
        """``grpc`` has a reserved, clear refusal; the seed API has no txn."""
        target = Target.from_url("http://e:1")
        with self.assertRaises(UnsupportedRequest) as caught:
            request_builder("grpc", target, "k/", ValueSource(b""))
        self.assertIn("not implemented yet", str(caught.exception))
        self.assertRaises(UnsupportedRequest, request_builder, "soap", target, "k/", ValueSource(b""))
        seed = request_builder("seed", target, "k/", ValueSource(b""))
        self.assertRaises(UnsupportedRequest, seed.request, TXN_PUT, 1)


class KeysTests(SynchronousTestCase):
    """Key bytes, key sequences and prefix ranges."""

    def test_key_bytes(self) -> None:
        """Numbers are zero-padded to the key size, never cut."""
        self.assertEqual(key_bytes(b"k/", 7), b"k/7")
        self.assertEqual(key_bytes(b"k/", 7, 8), b"k/000007")
        self.assertEqual(key_bytes(b"k/", 123456789, 4), b"k/123456789")

    def test_sequences(self) -> None:
        """Sequential keys wrap at the key space; random ones stay inside it."""
        sequential = key_sequence(3, True, random.Random(1))
        self.assertEqual([sequential() for _ in range(7)], [0, 1, 2, 0, 1, 2, 0])
        chosen = key_sequence(5, False, random.Random(1))
        drawn = [chosen() for _ in range(200)]
        self.assertEqual(set(drawn), {0, 1, 2, 3, 4})

    def test_prefix_end(self) -> None:
        """The range end is the prefix with its last non-0xff byte raised."""
        self.assertEqual(prefix_end(b"bench/"), b"bench0")
        self.assertEqual(prefix_end(b"a\xff\xff"), b"b")
        self.assertRaises(ValueError, prefix_end, b"\xff")


class HistogramTests(SynchronousTestCase):
    """``histogram`` puts every value in exactly one bucket."""

    def test_buckets(self) -> None:
        """Over 0..100 the first bucket holds the minimum, then ten of width 10."""
        buckets = histogram([float(v) for v in range(101)], 10)
        self.assertEqual([b.upper for b in buckets], [0.0] + [float(v) for v in range(10, 101, 10)])
        self.assertEqual([b.count for b in buckets], [1] + [10] * 10)

    def test_equal_values(self) -> None:
        """All-equal latencies make one bucket."""
        self.assertEqual(histogram([2.0, 2.0, 2.0]), (HistogramBucket(2.0, 3),))

    def test_counts_add_up(self) -> None:
        """For random data the buckets' counts add up and bounds ascend."""
        rng = random.Random(5)
        values = sorted(rng.expovariate(1.0) for _ in range(1000))
        buckets = histogram(values)
        self.assertEqual(sum(b.count for b in buckets), 1000)
        self.assertEqual(buckets[-1].upper, values[-1])
        self.assertEqual([b.upper for b in buckets], sorted(b.upper for b in buckets))


class ErrorsTests(SynchronousTestCase):
    """A result's errors are the outcomes that are not successes for their op."""

    def test_errors_by_kind(self) -> None:
        """A 404 is an error for a PUT but not for a GET; 2xx never is."""
        tally = RunTally()
        tally.record_response(PUT, 204, 0.1)
        tally.record_response(PUT, 404, 0.1)
        tally.record_response(GET, 404, 0.1)
        tally.record_response(GET, 503, 0.1)
        tally.record_error(GET, TIMEOUT)
        result = tally.summarise(1.0)
        self.assertEqual(result.errors(), {"404": 1, "503": 1, TIMEOUT: 1})
        self.assertEqual((result.overall.requests, result.overall.succeeded), (5, 2))


class ReportTests(SynchronousTestCase):
    """The text and JSON reports show what the brief asks for."""

    def setUp(self) -> None:
        tally = RunTally()
        for i in range(1, 1001):
            tally.record_response(PUT, 204, i / 1000)
        tally.record_error(PUT, TIMEOUT)
        self.result = tally.summarise(2.0)
        self.config = BenchConfig(urls=("http://a:1",), requests=1001)
        self.costs = [ServerCost.between(ProcessSample(9, 1.0, 10 * 2**20), ProcessSample(9, 1.5, 12 * 2**20), 1001)]

    def test_text(self) -> None:
        """Throughput, p99.9, errors, server CPU per 1,000 requests and a histogram."""
        text = format_report(self.config, self.result, self.costs)
        self.assertIn("throughput   500.5 requests/s (500.0 succeeded/s)", text)
        self.assertIn("p99 990.000 ms  p99.9 999.000 ms  max 1000.000 ms", text)
        self.assertIn("errors       timeout: 1", text)
        self.assertIn("server pid 9  cpu 500 ms = 499.5 ms per 1,000 requests  rss 10.0 -> 12.0 MB", text)
        bars = [line for line in text.splitlines() if " ms [" in line]
        self.assertEqual(len(bars), 11)
        self.assertTrue(bars[-1].endswith("|" + "∎" * 40), bars[-1])

    def test_json(self) -> None:
        """The JSON has the same figures, in milliseconds."""
        document = json.loads(json.dumps(result_as_json(self.config, self.result, self.costs)))
        self.assertEqual(document["latency_ms"]["p99.9"], 999.0)
        self.assertEqual(document["errors"], {"timeout": 1})
        self.assertEqual(document["servers"][0]["cpu_ms_per_1000_requests"], 499.5)
        self.assertEqual(sum(b["count"] for b in document["latency_ms"]["histogram"]), 1000)
        self.assertEqual(document["config"]["api"], "seed")


class ProcTests(SynchronousTestCase):
    """``/proc`` parsing for server CPU and RSS."""

    def test_stat_with_awkward_name(self) -> None:
        """Fields are counted after the last ')', so a name with spaces and
        parentheses does not shift utime and stime."""
        fields = ["S"] + ["0"] * 10 + ["250", "150"] + ["0"] * 30
        text = "4242 (tw (x) istd) " + " ".join(fields)
        self.assertEqual(parse_stat_cpu(text), 400 / CLOCK_TICKS)

    def test_status_rss(self) -> None:
        """VmRSS in kB becomes bytes; no VmRSS (a zombie) is 0."""
        self.assertEqual(parse_status_rss("Name:\tx\nVmRSS:\t  2048 kB\nThreads:\t1\n"), 2048 * 1024)
        self.assertEqual(parse_status_rss("Name:\tx\n"), 0)

    def test_vanished_process(self) -> None:
        """A process that does not exist (or exits mid-run) has no cost, and no error."""
        meter = CostMeter((99999999,))
        meter.start()
        meter.stop()
        self.assertEqual(meter.costs(10), [])

    def test_this_process(self) -> None:
        """Sampling this very process works, and CPU time never decreases."""
        meter = CostMeter((os.getpid(),))
        meter.start()
        sum(range(200000))
        meter.stop()
        (cost,) = meter.costs(1000)
        self.assertGreaterEqual(cost.cpu_ms, 0)
        self.assertGreater(cost.rss_after_bytes, 0)


class WatchStreamTests(SynchronousTestCase):
    """``WatchStream`` turns etcd's newline-framed chunks into deliveries."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        config = BenchConfig(urls=("http://a:1",), api="v3")
        self.run = WatchRun(self.clock, config, 1, now=self.clock.seconds)
        self.stream = WatchStream(self.run, b"POST /v3/watch ...")
        self.transport = StringTransport()
        self.stream.makeConnection(self.transport)

    def chunk(self, message: dict) -> bytes:
        """One chunk holding one JSON message and its newline, as etcd sends it."""
        data = json.dumps(message).encode() + b"\n"
        return b"%x\r\n%s\r\n" % (len(data), data)

    def test_created_then_events(self) -> None:
        """The created message fires ``created``; each event's latency is
        now minus the time stamped in its value, even split bytewise."""
        self.assertEqual(self.transport.value(), b"POST /v3/watch ...")
        self.stream.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.stream.dataReceived(self.chunk({"result": {"header": {}, "created": True}}))
        self.assertTrue(self.successResultOf(self.stream.created))
        self.run._start_measuring()
        self.clock.advance(10.5)
        values = [TimestampValues(24, lambda: t).next() for t in (10.0, 10.25)]
        events = [{"kv": {"key": "YQ==", "value": base64.b64encode(v).decode()}} for v in values]
        data = self.chunk({"result": {"header": {}, "events": events}})
        for i in range(len(data)):
            self.stream.dataReceived(data[i : i + 1])
        summary = self.run.tally.summarise(1.0).overall
        self.assertEqual(summary.outcomes, {DELIVERED: 2})
        self.assertEqual((summary.latency.min, summary.latency.max), (0.25, 0.5))

    def test_bad_stream(self) -> None:
        """A non-200 answer, a message that is not JSON and an early end are
        each counted."""
        self.stream.dataReceived(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.stream.dataReceived(b"4\r\nxyz\n\r\n0\r\n\r\n")
        self.stream.connectionLost(None)
        self.assertFalse(self.successResultOf(self.stream.created))
        self.assertEqual(
            self.run.tally.summarise(1.0).overall.outcomes,
            {"watch-status-404": 1, "bad-event": 1, "watch-ended": 1, "watch-lost": 1},
        )

    def test_seed_refused(self) -> None:
        """The seed API has no watch."""
        self.assertRaises(UnsupportedRequest, WatchRun, self.clock, BenchConfig(urls=("http://a:1",)), 1)


class LeaderTests(SynchronousTestCase):
    """Which status documents name their writer as the leader."""

    def test_documents(self) -> None:
        """Seed: leader == member_id; v3: leader == header.member_id (strings)."""
        self.assertTrue(is_leader_document("seed", {"member_id": 2, "leader": 2}))
        self.assertFalse(is_leader_document("seed", {"member_id": 2, "leader": 1}))
        self.assertFalse(is_leader_document("seed", {"member_id": 2, "leader": None}))
        self.assertTrue(is_leader_document("v3", {"header": {"member_id": "77"}, "leader": "77"}))
        self.assertFalse(is_leader_document("v3", {"header": {"member_id": "77"}, "leader": "78"}))
        self.assertFalse(is_leader_document("v3", {"error": "x"}))


class PopulateClientsTests(SynchronousTestCase):
    """Population is not measured, so it never runs with fewer than 64 clients."""

    def test_at_least_64_clients_but_no_more_than_keys(self) -> None:
        """One measured client still populates over 64 connections; 10 keys over 10."""
        for clients, keys, expected in ((1, 1000, 64), (128, 1000, 128), (1, 10, 10)):
            reactor = MemoryReactorClock()
            populate_keys(reactor, BenchConfig(urls=("http://127.0.0.1:8080",), clients=clients, keys=keys),
                          now=reactor.seconds)
            self.assertEqual(len(reactor.tcpClients), expected, (clients, keys))
